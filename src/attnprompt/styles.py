"""Visual prompt styles, as data: from one pixel mask to the image(s) the target model sees.

Every style starts from the same ``[H, W]`` uint8 pixel mask (the alpha of the official blend) and
the original image, and returns a :class:`Prompt`: the prompt image(s) and the boxes it drew or
cut (``(left, top, right, bottom)`` in original pixels, right and bottom exclusive, as PIL's crop).
The region-based styles share one definition of the *attended region*: the pixels whose mask value
is at least ``threshold`` times the mask's maximum (default 0.5).

- ``alpha``: the official blend ``I * m + gray * (1 - m)`` (bit for bit; the default).
- ``soft``: the same blend with a floor, ``m' = floor + (1 - floor) * m``: nothing goes fully dark.
- ``crop``: the attended region's box with a context margin, replacing the image.
- ``vicrop``: the original and that crop, two images for targets that take several (ViCrop).
- ``blur``: the image outside the attended region Gaussian-blurred, the region untouched (FGVP's
  blur reverse).
- ``outline``: a red ellipse around the attended region, pixels untouched (RedCircle); ``box``: the
  same with a rectangle.
- ``marks``: a numbered mark on each connected component of the attended region, largest
  attention first (Set-of-Mark, with the mask's components in place of a segmenter).

Spatial parameters are fractions of the image's short side (or of its area), so a style means
the same on any image size. A new style is one :func:`register_style` call; user interfaces list
:data:`STYLES`, never a copy of the names.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

from .errors import AttnPromptError
from .overlay import blend

if TYPE_CHECKING:
    from .config import MaskConfig

__all__ = ["Prompt", "Param", "Style", "STYLES", "register_style", "check_style", "render", "attended_region",
           "region_box", "components", "Box"]

Box = tuple[int, int, int, int]


@dataclass
class Prompt:
    """What a style makes of one image.

    Attributes:
        images: the prompt image(s) for the target, in order (one for every style but ``vicrop``).
        boxes: the boxes the style cut or drew, ``(left, top, right, bottom)`` in original pixels.
    """

    images: list[Image.Image]
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class Param:
    """One style parameter: its default and what values it takes (a number range or choices)."""

    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    color: bool = False
    help: str = ""

    def check(self, name: str, value: Any) -> Any:
        if isinstance(self.default, str):
            text = str(value).strip().lower()
            if self.choices is not None and text not in self.choices:
                raise AttnPromptError(f"style parameter {name} must be one of {', '.join(self.choices)}, got {value!r}")
            if self.color:
                try:
                    ImageColor.getrgb(text)
                except ValueError:
                    raise AttnPromptError(f"style parameter {name}: unknown colour {value!r}") from None
            return text
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise AttnPromptError(f"style parameter {name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or number != number or (self.low is not None and number < self.low) or (
                self.high is not None and number > self.high):
            raise AttnPromptError(f"style parameter {name} must be in [{self.low}, {self.high}], got {value!r}")
        if isinstance(self.default, int):
            if number != int(number):
                raise AttnPromptError(f"style parameter {name} must be an integer, got {value!r}")
            return int(number)
        return number


Renderer = Callable[[Image.Image, np.ndarray, Mapping[str, Any], int], Prompt]


@dataclass(frozen=True)
class Style:
    """A prompt style: a renderer ``(image, pixel_mask, params, gray) -> Prompt`` and its parameters."""

    name: str
    renderer: Renderer
    params: Mapping[str, Param] = field(default_factory=dict)
    description: str = ""
    images: int = 1  # how many images the target is given

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The style's parameters: its defaults overridden by ``given`` (already checked)."""
        return {**{k: p.default for k, p in self.params.items()}, **dict(given)}


STYLES: dict[str, Style] = {}
"""Every prompt style by name, in registration order."""


def register_style(style: Style) -> Style:
    """Add (or replace) a style in :data:`STYLES`."""
    STYLES[style.name] = style
    return style


def check_style(name: str, params: Any = ()) -> tuple[str, dict[str, Any]]:
    """Validate a style name and its parameters (a mapping or ``(name, value)`` pairs).

    Returns the name and the checked parameters (coerced to the defaults' types)."""
    if name not in STYLES:
        raise AttnPromptError(f"unknown style {name!r}; choose one of {', '.join(STYLES)}")
    style = STYLES[name]
    try:
        items = dict(params.items() if isinstance(params, Mapping) else params or ())
    except (TypeError, ValueError):
        raise AttnPromptError(f"style parameters must be a mapping of names to values, got {params!r}") from None
    out: dict[str, Any] = {}
    for key, value in items.items():
        if key not in style.params:
            known = ", ".join(style.params) or "none"
            raise AttnPromptError(f"style {name!r} has no parameter {key!r} (its parameters: {known})")
        out[key] = style.params[key].check(key, value)
    return name, out


def render(image: Image.Image, pixel_mask: np.ndarray, config: "MaskConfig") -> Prompt:
    """The prompt image(s) of ``config.style`` for ``image`` and its ``[H, W]`` uint8 pixel mask."""
    if pixel_mask.dtype != np.uint8 or pixel_mask.shape != (image.height, image.width):
        raise ValueError(f"pixel mask {pixel_mask.shape} {pixel_mask.dtype} does not match image "
                         f"{(image.height, image.width)} (uint8 expected)")
    style = STYLES[config.style]
    return style.renderer(image.convert("RGB"), pixel_mask, style.options(config.style_options), config.gray)


# --- the attended region ----------------------------------------------------------------------------


def attended_region(pixel_mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``[H, W]`` bool: pixels whose mask is at least ``threshold`` x the mask's maximum (never empty)."""
    top = int(pixel_mask.max())
    if top == 0:  # a mask that keeps nothing has no region: the whole image is the region
        return np.ones(pixel_mask.shape, dtype=bool)
    return pixel_mask >= max(1, int(np.ceil(threshold * top)))


def region_box(region: np.ndarray) -> Box:
    """Bounding box of the True pixels of ``region`` ``(left, top, right, bottom)``, exclusive."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return (0, 0, region.shape[1], region.shape[0])
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _expand(box: Box, size: tuple[int, int], margin: float, min_side: float) -> Box:
    """``box`` grown by ``margin`` x its side on every side, at least ``min_side`` pixels a side,
    clipped to the image (``size = (width, height)``)."""
    w, h = size
    left, top, right, bottom = box
    out: list[int] = []
    for lo, hi, limit in ((left, right, w), (top, bottom, h)):
        side = hi - lo
        grow = side * margin
        want = max(side + 2 * grow, min(min_side, limit))
        centre = (lo + hi) / 2
        a = int(np.floor(centre - want / 2))
        b = int(np.ceil(centre + want / 2))
        if a < 0:
            a, b = 0, min(limit, b - a)
        if b > limit:
            a, b = max(0, a - (b - limit)), limit
        out += [a, b]
    return out[0], out[2], out[1], out[3]


def components(region: np.ndarray, max_side: int = 128) -> list[np.ndarray]:
    """The 8-connected components of ``region`` as ``[H, W]`` bool masks.

    Labelled on a copy at most ``max_side`` pixels a side (a pixel there is set when any pixel it
    covers is), so two parts closer than one such pixel count as one component."""
    h, w = region.shape
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    sh, sw = -(-h // step), -(-w // step)
    padded = np.zeros((sh * step, sw * step), dtype=bool)
    padded[:h, :w] = region
    small = np.asarray(padded.reshape(sh, step, sw, step).any(axis=(1, 3)), dtype=bool)
    labels = np.zeros(small.shape, dtype=np.int32)
    count = 0
    for r0, c0 in zip(*np.nonzero(small)):
        if labels[r0, c0]:
            continue
        count += 1
        labels[r0, c0] = count
        queue = deque([(r0, c0)])
        while queue:
            r, c = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < sh and 0 <= cc < sw and small[rr, cc] and not labels[rr, cc]:
                        labels[rr, cc] = count
                        queue.append((rr, cc))
    full = np.repeat(np.repeat(labels, step, axis=0), step, axis=1)[:h, :w]
    return [(full == k) & region for k in range(1, count + 1)]


# --- the styles -------------------------------------------------------------------------------------


def _short(image: Image.Image) -> int:
    return min(image.size)


def _alpha(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    return Prompt([blend(image, mask, gray)])


def _soft(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    floor = float(p["floor"])
    lifted = np.floor(floor * 255.0 + (1.0 - floor) * mask.astype(np.float64) + 0.5)
    return Prompt([blend(image, np.clip(lifted, 0, 255).astype(np.uint8), gray)])


def _crop_box(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any]) -> Box:
    box = region_box(attended_region(mask, float(p["threshold"])))
    return _expand(box, image.size, float(p["margin"]), float(p["min_size"]) * _short(image))


def _crop(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    box = _crop_box(image, mask, p)
    return Prompt([image.crop(box)], [box])


def _vicrop(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    box = _crop_box(image, mask, p)
    return Prompt([image.copy(), image.crop(box)], [box])


def _blur(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    region = attended_region(mask, float(p["threshold"]))
    radius = max(0.5, float(p["radius"]) * _short(image))
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)))
    out = np.where(region[:, :, None], np.asarray(image), blurred)
    return Prompt([Image.fromarray(out.astype(np.uint8), mode="RGB")], [region_box(region)])


def _line_width(image: Image.Image, p: Mapping[str, Any]) -> int:
    return max(2, int(round(float(p["width"]) * _short(image))))


def _outline(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    box = region_box(attended_region(mask, float(p["threshold"])))
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # the ellipse through the box's corners has semi-axes sqrt(2) x the half sides: it encloses the box
    grow = (np.sqrt(2.0) if p["shape"] == "ellipse" else 1.0) * (1.0 + float(p["margin"]))
    hw, hh = (right - left) / 2 * grow, (bottom - top) / 2 * grow
    width = _line_width(image, p)
    drawn = (int(np.floor(cx - hw)) - width, int(np.floor(cy - hh)) - width,
             int(np.ceil(cx + hw)) + width, int(np.ceil(cy + hh)) + width)
    out = image.copy()
    draw = ImageDraw.Draw(out)
    shape = draw.ellipse if p["shape"] == "ellipse" else draw.rectangle
    shape((drawn[0], drawn[1], drawn[2] - 1, drawn[3] - 1), outline=ImageColor.getrgb(p["color"]), width=width)
    return Prompt([out], [drawn])


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        return ImageFont.load_default()


def _label_point(part: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """Where a component's mark goes: the centre of its strongest pixels (the part the map points
    at), or the strongest pixel nearest to it when that centre falls outside them."""
    values = np.where(part, mask.astype(np.int32), -1)
    ys, xs = np.nonzero(values == values.max())
    cy, cx = float(ys.mean()), float(xs.mean())
    nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    y, x = int(round(cy)), int(round(cx))
    return (y, x) if values[y, x] == values.max() else (int(ys[nearest]), int(xs[nearest]))


def _marks(image: Image.Image, mask: np.ndarray, p: Mapping[str, Any], gray: int) -> Prompt:
    region = attended_region(mask, float(p["threshold"]))
    min_pixels = float(p["min_area"]) * region.size
    parts = [c for c in components(region) if c.sum() >= min_pixels] or [region]
    # strongest attention first: mark 1 is the component the map values most
    parts.sort(key=lambda c: -float(mask[c].astype(np.float64).sum()))
    parts = parts[: int(p["max_marks"])]
    out = image.copy()
    draw = ImageDraw.Draw(out)
    color = ImageColor.getrgb(p["color"])
    size = max(10, int(round(float(p["size"]) * _short(image))))
    font = _font(size)
    width = _line_width(image, p)
    boxes: list[Box] = []
    for number, part in enumerate(parts, start=1):
        box = region_box(part)
        boxes.append(box)
        if int(p["outline"]):
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=color, width=width)
        y, x = _label_point(part, mask)
        text = str(number)
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l, b - t
        pad = max(1, size // 6)
        x0 = min(max(0, x - tw // 2 - pad), max(0, image.width - tw - 2 * pad))
        y0 = min(max(0, y - th // 2 - pad), max(0, image.height - th - 2 * pad))
        draw.rectangle((x0, y0, x0 + tw + 2 * pad, y0 + th + 2 * pad), fill=color)
        draw.text((x0 + pad - l, y0 + pad - t), text, fill=(255, 255, 255), font=font)
    return Prompt([out], boxes)


_THRESHOLD = Param(0.5, 0.0, 1.0, help="attended region: mask >= threshold x the mask's maximum")
_CROP = {"threshold": _THRESHOLD,
         "margin": Param(0.25, 0.0, 10.0, help="context added on every side, as a share of the box's side"),
         "min_size": Param(0.25, 0.0, 1.0, help="smallest crop side, as a share of the image's short side")}
_LINE = {"threshold": _THRESHOLD,
         "color": Param("red", color=True, help="line colour (a PIL colour name or #rrggbb)"),
         "width": Param(0.01, 0.0, 0.5, help="line width, as a share of the image's short side (at least 2 px)"),
         "margin": Param(0.0, 0.0, 10.0, help="extra room around the region, as a share of its size")}

for _style in (
    Style("alpha", _alpha, {}, "the official blend: I * m + gray * (1 - m)"),
    Style("soft", _soft, {"floor": Param(0.3, 0.0, 1.0, help="the least visibility anywhere")},
          "the blend with a floor: m' = floor + (1 - floor) * m"),
    Style("crop", _crop, _CROP, "the attended region's box with a context margin, replacing the image"),
    Style("vicrop", _vicrop, _CROP, "the original and the crop as two images (ViCrop)", images=2),
    Style("blur", _blur, {"threshold": _THRESHOLD,
                          "radius": Param(0.03, 0.0, 1.0, help="Gaussian radius, as a share of the short side")},
          "outside the attended region blurred, inside untouched (FGVP blur reverse)"),
    Style("outline", _outline, {**_LINE, "shape": Param("ellipse", choices=("ellipse", "box"))},
          "an ellipse drawn around the attended region (RedCircle)"),
    Style("box", _outline, {**_LINE, "shape": Param("box", choices=("ellipse", "box"))},
          "a rectangle drawn around the attended region"),
    Style("marks", _marks, {"threshold": _THRESHOLD,
                            "min_area": Param(0.002, 0.0, 1.0, help="smallest component, as a share of the image"),
                            "max_marks": Param(9, 1, 99),
                            "color": Param("red", color=True),
                            "size": Param(0.08, 0.0, 0.5, help="mark height, as a share of the short side"),
                            "width": Param(0.006, 0.0, 0.5),
                            "outline": Param(1, 0, 1, help="1: also draw each component's box")},
          "a numbered mark on each connected part of the attended region (Set-of-Mark)"),
):
    register_style(_style)
