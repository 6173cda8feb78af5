"""The pixel stage: float mask -> 8-bit mask -> annotated image, RGBA image or heatmap.

Arithmetic follows the official ``blend_mask`` bit for bit: the mask is truncated to 8 bits as
torchvision's ``ToPILImage`` does, and the blend truncates
``img_f32 * m + (1 - m) * gray_f64`` to uint8 (float64 in ``img * m`` would flip truncation at
exact integers, e.g. ``255 * 0.2``).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

__all__ = ["mask_to_u8", "blend", "blend_table", "to_rgba", "heatmap", "colorize"]


def mask_to_u8(mask: np.ndarray) -> np.ndarray:
    """``uint8(mask * 255)`` with truncation, in float32 like ``ToPILImage``. ``[P, P]`` -> uint8."""
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    return (m * np.float32(255.0)).astype(np.uint8)


def blend(image: Image.Image, pixel_mask: np.ndarray, gray: int) -> Image.Image:
    """``I * m + g * (1 - m)`` with ``m = pixel_mask / 255``: regions the mask rejects fade to gray.

    ``pixel_mask`` is ``[H, W]`` uint8 with the image's size. Each output value depends only on
    its (mask, pixel) pair, so the blend is a lookup in a 256 x 256 table computed with exactly
    the official arithmetic (:func:`blend_table`).
    """
    img = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))  # [H, W, 3] uint8
    if pixel_mask.shape != img.shape[:2]:
        raise ValueError(f"mask {pixel_mask.shape} does not match image {img.shape[:2]}")
    table = blend_table(gray)
    out = np.empty_like(img)
    for top in range(0, img.shape[0], _ROWS):  # in strips, so the int64 index stays in cache
        rows = slice(top, top + _ROWS)
        index = (pixel_mask[rows].astype(np.intp) << 8)[:, :, None] | img[rows]  # mask * 256 + pixel
        np.take(table, index, out=out[rows])
    return Image.fromarray(out, mode="RGB")


_ROWS = 32


@functools.lru_cache(maxsize=None)
def blend_table(gray: int) -> np.ndarray:
    """``[65536]`` uint8: the official blend of pixel ``p`` under mask ``m`` at index ``m * 256 + p``.

    ``uint8(img_f32 * m + (1 - m) * gray_f64)`` with ``m = mask_f32 / 255``, element for element
    as in ``blend_mask`` (float32 product, float64 gray term, truncation).
    """
    if not 0 <= int(gray) <= 255:
        raise ValueError(f"gray must be in 0..255, got {gray}")
    m = (np.arange(256, dtype=np.float32) / np.float32(255.0))[:, None]  # [256 masks, 1]
    pixels = np.arange(256, dtype=np.float32)[None, :]  # [1, 256 pixels]
    kept = pixels * m  # float32
    faded = (np.float32(1.0) - m) * np.full((256, 1), float(gray), dtype=np.float64)
    table = (kept + faded).astype(np.uint8).ravel()
    table.flags.writeable = False
    return table


def to_rgba(image: Image.Image, pixel_mask: np.ndarray) -> Image.Image:
    """The original pixels with the mask as alpha channel, for compositing elsewhere."""
    rgba = image.convert("RGB").copy()
    rgba.putalpha(Image.fromarray(np.ascontiguousarray(pixel_mask, dtype=np.uint8), mode="L"))
    return rgba


def colorize(values: np.ndarray) -> np.ndarray:
    """The classic "jet" colormap: ``[H, W]`` values in [0, 1] -> ``[H, W, 3]`` uint8."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def heatmap(image: Image.Image, pixel_mask: np.ndarray, opacity: float = 0.5) -> Image.Image:
    """The mask as a jet colormap laid over the image, for people to look at."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError("opacity must be in [0, 1]")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    colors = colorize(pixel_mask.astype(np.float32) / 255.0).astype(np.float32)
    out = base * (1.0 - opacity) + colors * opacity
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), mode="RGB")
