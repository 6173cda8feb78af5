"""Rasterisation for the shapes world: exact object masks, muted textured backgrounds, clutter, noise.

Everything here is a pure function of a ``numpy.random.Generator`` and plain numbers, so a scene is
reproducible from its seed. Object masks are drawn without antialiasing: a pixel either belongs to
an object or it does not, which is what makes the masks exact ground truth.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
"""Shape names, in the order used for sampling."""

COLORS: dict[str, tuple[int, int, int]] = {
    # Saturated hues with every channel in [25, 235], so Gaussian pixel noise is rarely clipped (a
    # clipped channel would bias the mean colour of an object) and every colour has a channel spread
    # >= 130, far from the muted background (spread <= MUTED_MAX_SPREAD).
    "red": (220, 40, 40),
    "orange": (235, 130, 25),
    "yellow": (230, 215, 30),
    "green": (40, 170, 60),
    "cyan": (30, 190, 210),
    "blue": (40, 70, 220),
    "purple": (130, 50, 200),
    "pink": (235, 90, 170),
}
"""Object colour names -> nominal RGB."""

COLOR_JITTER = 10
"""Per-channel uniform jitter (+-) applied to each object's nominal colour."""

MUTED_SATURATION = (0.04, 0.26)
MUTED_VALUE = (0.3, 0.85)
MUTED_MAX_SPREAD = int(math.ceil(MUTED_SATURATION[1] * MUTED_VALUE[1] * 255))
"""Upper bound on max(rgb) - min(rgb) for any background or clutter pixel before noise.

A convex mix of colours has a spread at most the mix of their spreads, so the bound survives the
background blending and holds for every non-object pixel."""

STAR_INNER = 0.45  # inner/outer radius; chunkier than a regular pentagram (0.38) so small stars read
CROSS_HALF_WIDTH = 0.34  # arm half-width relative to the circumradius


def muted_color(rng: np.random.Generator) -> np.ndarray:
    """A random low-saturation colour (float RGB in [0, 255]) for backgrounds and clutter."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*MUTED_SATURATION)
    v = rng.uniform(*MUTED_VALUE)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def jitter_color(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The nominal colour moved by up to COLOR_JITTER per channel."""
    d = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    r, g, b = (int(np.clip(c + x, 0, 255)) for c, x in zip(rgb, d))
    return (r, g, b)


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth textured background, float32 [H, W, 3].

    Two muted colours are blended by a field made of a linear gradient, smooth blobs (a coarse random
    grid upsampled bicubically) and an optional fine texture (stripes or checks). The field is
    normalised to [0, 1] so every pixel is a convex mix of the two colours and stays muted.
    """
    c0, c1 = muted_color(rng), muted_color(rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / float(max(width, height))
    theta = rng.uniform(0.0, 2.0 * math.pi)
    gradient = _normalise(math.cos(theta) * xx + math.sin(theta) * yy)

    gw, gh = (int(v) for v in rng.integers(2, 7, size=2))
    coarse = rng.random((gh, gw)).astype(np.float32)
    blobs = _normalise(np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)))

    texture_kind = int(rng.integers(3))
    if texture_kind == 1:  # stripes at a random angle and period
        phi = rng.uniform(0.0, math.pi)
        period = rng.uniform(4.0, 12.0)
        u = (math.cos(phi) * xx + math.sin(phi) * yy) * max(width, height)
        texture = 0.5 + 0.5 * np.sin(2.0 * math.pi * u / period)
    elif texture_kind == 2:  # checks
        cell = int(rng.integers(3, 9))
        iy, ix = np.mgrid[0:height, 0:width]
        texture = ((ix // cell + iy // cell) % 2).astype(np.float32)
    else:
        texture = np.zeros_like(gradient)

    w_grad, w_blob, w_tex = rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0), rng.uniform(0.1, 0.35)
    t = _normalise(w_grad * gradient + w_blob * blobs + w_tex * texture)[..., None]
    return ((1.0 - t) * c0 + t * c1).astype(np.float32)


def draw_clutter(rng: np.random.Generator, canvas: np.ndarray, amount: float) -> np.ndarray:
    """Thin lines and small dots in muted colours, drawn onto (a copy of) ``canvas``.

    Clutter is part of the background: it is drawn before the objects and never enters a mask.
    ``amount`` scales the expected counts (1.0 ~ 3 lines and 8 dots per 64x64 pixels).
    """
    height, width = canvas.shape[:2]
    scale = amount * (width * height) / (64.0 * 64.0)
    n_lines = int(rng.poisson(3.0 * scale)) if scale > 0 else 0
    n_dots = int(rng.poisson(8.0 * scale)) if scale > 0 else 0
    img = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(n_lines):
        x0, x1 = rng.uniform(-0.2, 1.2, size=2) * width
        y0, y1 = rng.uniform(-0.2, 1.2, size=2) * height
        color = tuple(int(c) for c in np.rint(muted_color(rng)))
        draw.line([(x0, y0), (x1, y1)], fill=color, width=int(rng.integers(1, 3)))
    for _ in range(n_dots):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.6, 2.0)
        color = tuple(int(c) for c in np.rint(muted_color(rng)))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    return np.asarray(img).astype(np.float32)


def shape_polygon(
    shape: str, center: tuple[float, float], size: float, angle: float
) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape whose circumscribed circle has diameter ``size``.

    ``angle`` is in degrees. Circles have no polygon; use :func:`rasterize`.
    """
    cx, cy = center
    r = size / 2.0
    a0 = math.radians(angle)

    def ring(radii: list[float], start: float) -> list[tuple[float, float]]:
        phis = [start + a0 + 2 * math.pi * k / len(radii) for k in range(len(radii))]
        return [(cx + rad * math.cos(p), cy + rad * math.sin(p)) for rad, p in zip(radii, phis)]

    up = -math.pi / 2  # image y grows downwards; "up" points to smaller y
    if shape == "square":
        return ring([r] * 4, math.pi / 4)
    if shape == "triangle":
        return ring([r] * 3, up)
    if shape == "star":
        return ring([r, r * STAR_INNER] * 5, up)
    if shape == "cross":
        w = CROSS_HALF_WIDTH * r
        ln = math.sqrt(r * r - w * w)  # arm ends' corners lie on the circumscribed circle
        local = [(-w, -ln), (w, -ln), (w, -w), (ln, -w), (ln, w), (w, w),
                 (w, ln), (-w, ln), (-w, w), (-ln, w), (-ln, -w), (-w, -w)]  # fmt: skip
        c, s = math.cos(a0), math.sin(a0)
        return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in local]
    raise ValueError(f"unknown polygonal shape {shape!r}; known: {SHAPES}")


def rasterize(
    shape: str, center: tuple[float, float], size: float, angle: float, width: int, height: int
) -> np.ndarray:
    """The full (unoccluded) footprint of one object as a bool [H, W] mask, no antialiasing."""
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    if shape == "circle":
        cx, cy = center
        r = size / 2.0
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(shape_polygon(shape, center, size, angle), fill=1)
    return np.asarray(layer) > 0


def add_noise(rng: np.random.Generator, canvas: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian pixel noise, clipped and rounded to uint8 [H, W, 3]."""
    out = canvas if sigma <= 0 else canvas + rng.normal(0.0, sigma, size=canvas.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
