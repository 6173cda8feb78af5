"""How the auxiliary model saw an image, and the exact map <-> pixel correspondence.

A token map covers a square *frame*. :class:`View` records that frame in original-image pixel
coordinates: the map is resized onto the frame and the original image is cut out of it.

- ``stretch`` (official): the frame is the whole image, whatever the aspect ratio. CLIP itself
  only saw the centre crop, so on non-square images the map is misaligned and stretched.
- ``aligned``: the image is letterboxed to a square (padded with the model's mean colour, as
  LLaVA's ``expand2square``) before the auxiliary model, so CLIP sees all of it undistorted; the
  frame is that square and the crop removes the padding again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import AttnPromptError

__all__ = ["View", "make_view", "place_mask", "mean_color", "PIL_FILTERS", "OPENAI_MEAN", "OPENAI_STD"]

# The normalisation of OpenAI's CLIP preprocessing, which LLaVA and most CLIPs reuse.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def mean_color(mean: "Sequence[float] | None" = None) -> tuple[int, int, int]:
    """A processor's mean colour in 0-255 (OpenAI's when unknown): padding that normalises to ~0."""
    r, g, b = (int(round(m * 255)) for m in (mean or OPENAI_MEAN))
    return r, g, b

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class View:
    """What the auxiliary model is given for one image, and where the original sits in its frame.

    Attributes:
        image: the image handed to the auxiliary model's preprocessing.
        frame_size: ``(width, height)`` in original pixels of the region the token grid covers.
        box: ``(left, top, right, bottom)`` of the original image inside the frame.
    """

    image: Image.Image
    frame_size: tuple[int, int]
    box: tuple[int, int, int, int]


def make_view(image: Image.Image, geometry: str, pad_color: tuple[int, int, int] = (0, 0, 0)) -> View:
    """Build the auxiliary model's view of ``image`` under ``geometry``."""
    w, h = image.size
    if geometry == "stretch":
        return View(image=image, frame_size=(w, h), box=(0, 0, w, h))
    if geometry == "aligned":
        side = max(w, h)
        if w == h:
            return View(image=image, frame_size=(w, h), box=(0, 0, w, h))
        left, top = (side - w) // 2, (side - h) // 2
        canvas = Image.new("RGB", (side, side), tuple(int(c) for c in pad_color))
        canvas.paste(image, (left, top))
        return View(image=canvas, frame_size=(side, side), box=(left, top, left + w, top + h))
    raise AttnPromptError(f"unknown geometry {geometry!r}")


def place_mask(mask_u8: np.ndarray, view: View, interpolation: str) -> np.ndarray:
    """Resize an 8-bit token-grid mask onto the view's frame and cut out the original image.

    ``mask_u8``: ``[P, P]`` uint8. Returns ``[H, W]`` uint8 for the original image. The resize is
    PIL's on the 8-bit image, exactly as the official ``invtrans``.
    """
    if mask_u8.dtype != np.uint8 or mask_u8.ndim != 2:
        raise ValueError("mask_u8 must be a 2-D uint8 array")
    try:
        resample = PIL_FILTERS[interpolation]
    except KeyError:
        raise AttnPromptError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(PIL_FILTERS)}") from None
    resized = Image.fromarray(mask_u8, mode="L").resize(view.frame_size, resample)
    if view.box != (0, 0, *view.frame_size):
        resized = resized.crop(view.box)
    return np.asarray(resized, dtype=np.uint8)
