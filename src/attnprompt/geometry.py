"""How the auxiliary model saw an image, and the exact map <-> pixel correspondence.

A token map covers a square *frame*. :class:`View` records that frame in original-image pixel
coordinates: the map is resized onto the frame and the original image is cut out of it.

- ``stretch`` (official): the frame is the whole image, whatever the aspect ratio. CLIP itself
  only saw the centre crop, so on non-square images the map is misaligned and stretched.
- ``aligned``: the image is letterboxed to a square (padded with the model's mean colour, as
  LLaVA's ``expand2square``) before the auxiliary model, so CLIP sees all of it undistorted; the
  frame is that square and the crop removes the padding again.
- ``tiled`` (CLIP): the image is resized so its short side is the model's input size, and
  overlapping square crops at that native resolution cover all of it. Each crop gets its own
  token map; the maps are stitched onto one grid over the whole image (:class:`Tile` records where
  each crop's grid lands) before any normalisation, so all crops share one min-max. Cost: one
  forward per crop (3 for a 2:1 image with the default half-crop overlap; 1 for a square one).
- ``auto`` (the CLIP default): ``aligned`` while the long side is at most :data:`AUTO_MAX_ASPECT`
  (5:4) times the short side, ``tiled`` beyond. Letterboxing costs a CLIP resolution on the short
  side in proportion to the aspect (a 5:4 image keeps 80% of it), while tiles keep the native
  scale for the price of extra forwards (:func:`auto_forwards`: 1 up to 5:4, 2 for 4:3 and 3:2,
  3 for 16:9 and 2:1, 5 for 3:1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import AttnPromptError

__all__ = ["View", "Tile", "SquareResize", "AUTO_MAX_ASPECT", "resolve_geometry", "auto_forwards", "make_view",
           "letterbox", "letterbox_resized", "make_tiled_view", "tile_offsets", "place_mask", "mean_color",
           "PIL_FILTERS", "OPENAI_MEAN", "OPENAI_STD"]

# The normalisation of OpenAI's CLIP preprocessing, which LLaVA and most CLIPs reuse.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def mean_color(mean: "Sequence[float] | None" = None) -> tuple[int, int, int]:
    """A processor's mean colour in 0-255 (OpenAI's when unknown): padding that normalises to ~0."""
    r, g, b = (int(round(m * 255)) for m in (mean or OPENAI_MEAN))
    return r, g, b

AUTO_MAX_ASPECT = 1.25
"""``geometry="auto"`` letterboxes images up to this aspect ratio (long / short side) and tiles
longer ones: beyond 5:4 letterboxing gives up more than a fifth of the model's resolution."""


def resolve_geometry(geometry: str, size: tuple[int, int]) -> str:
    """The geometry a CLIP uses for an image of ``size = (width, height)``: ``auto`` resolved."""
    if geometry != "auto":
        return geometry
    w, h = size
    return "aligned" if max(w, h) <= AUTO_MAX_ASPECT * min(w, h) else "tiled"


def auto_forwards(aspect: float, grid: int = 24, overlap: float = 0.5) -> int:
    """CLIP forwards per image under ``auto`` for a long / short side ratio ``aspect`` (>= 1)."""
    if aspect <= AUTO_MAX_ASPECT:
        return 1
    return len(tile_offsets(math.ceil(grid * aspect - 1e-6), grid, overlap))


PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Tile:
    """One square crop of a tiled view.

    Attributes:
        box: ``(left, top, right, bottom)`` of the crop in the view's image.
        cell: ``(row, col)`` of the crop's top-left token in the stitched grid.
    """

    box: tuple[int, int, int, int]
    cell: tuple[int, int]


@dataclass(frozen=True)
class View:
    """What the auxiliary model is given for one image, and where the original sits in its frame.

    Attributes:
        image: the image handed to the auxiliary model's preprocessing.
        frame_size: ``(width, height)`` in original pixels of the region the token grid covers.
        box: ``(left, top, right, bottom)`` of the original image inside the frame.
        tiles: tiled geometry only: the crops of ``image`` the model sees, one forward each.
        grid: tiled geometry only: ``(rows, cols)`` of the stitched token grid over the frame.
    """

    image: Image.Image
    frame_size: tuple[int, int]
    box: tuple[int, int, int, int]
    tiles: tuple[Tile, ...] = ()
    grid: tuple[int, int] | None = None

    def crops(self) -> list[Image.Image]:
        """The images the model sees: the tiles' crops, or the view's image when not tiled."""
        return [self.image.crop(t.box) for t in self.tiles] if self.tiles else [self.image]


SquareResize = tuple[int, int]  # (side, PIL filter): a preprocessing that starts by resizing a square to side x side


def make_view(image: Image.Image, geometry: str, pad_color: tuple[int, int, int] = (0, 0, 0),
              resize: SquareResize | None = None) -> View:
    """Build the auxiliary model's view of ``image`` under ``geometry``.

    ``resize``: when the model's preprocessing starts by resizing a square image to
    ``side x side`` with a PIL filter, the ``aligned`` view's image is that small square
    (:func:`letterbox_resized`, equal pixel for pixel to resizing the full letterboxed canvas),
    so the full-size canvas is neither built nor resized; the frame stays in original pixels.
    """
    w, h = image.size
    if geometry == "stretch":
        return View(image=image, frame_size=(w, h), box=(0, 0, w, h))
    if geometry == "aligned":
        side = max(w, h)
        if w == h:
            return View(image=image, frame_size=(w, h), box=(0, 0, w, h))
        left, top = (side - w) // 2, (side - h) // 2
        box = (left, top, left + w, top + h)
        if resize is not None:
            return View(image=letterbox_resized(image, resize[0], resize[1], pad_color), frame_size=(side, side), box=box)
        return View(image=letterbox(image, pad_color), frame_size=(side, side), box=box)
    if geometry in ("tiled", "auto"):
        raise AttnPromptError(f"the {geometry} geometry needs the model's input and grid size: use make_tiled_view")
    raise AttnPromptError(f"unknown geometry {geometry!r}")


def letterbox(image: Image.Image, pad_color: tuple[int, int, int]) -> Image.Image:
    """``image`` centred on a square canvas of ``pad_color`` (LLaVA's ``expand2square``)."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), tuple(int(c) for c in pad_color))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def letterbox_resized(image: Image.Image, size: int, resample: int, pad_color: tuple[int, int, int]) -> Image.Image:
    """``letterbox(image, pad_color).resize((size, size), resample)``, without the big canvas when exact.

    Pillow resizes in two separable passes, horizontal first, rounding to 8 bits in between. For a
    wide image (pad rows above and below) the horizontal pass of the canvas is the horizontal
    pass of the image's rows plus that of one pad row, repeated; the vertical pass then runs on
    those rows as it would inside the full resize. Tall images (pad columns enter the horizontal
    pass) and square ones take the plain path. Tested equal over many sizes and every filter.
    """
    w, h = image.size
    if w <= h:
        return letterbox(image, pad_color).resize((size, size), resample)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    top = (w - h) // 2
    rows = np.asarray(rgb.resize((size, h), resample))  # [h, size, 3]: horizontal pass only
    pad_row = np.asarray(Image.new("RGB", (w, 1), tuple(int(c) for c in pad_color)).resize((size, 1), resample))
    strip = np.empty((w, size, 3), dtype=np.uint8)  # the canvas after the horizontal pass
    strip[:top] = pad_row
    strip[top:top + h] = rows
    strip[top + h:] = pad_row
    return Image.fromarray(strip, mode="RGB").resize((size, size), resample)  # vertical pass only


def tile_offsets(cells: int, tile: int, overlap: float) -> list[int]:
    """Start cells of tiles of ``tile`` cells covering ``cells`` cells, evenly spread.

    Neighbouring tiles share at least ``overlap`` of a tile (0 <= overlap < 1), so every object
    away from the image border is seen whole by some tile.
    """
    if cells <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    count = math.ceil((cells - tile) / stride) + 1
    return [round(i * (cells - tile) / (count - 1)) for i in range(count)]


def make_tiled_view(
    image: Image.Image,
    side: int,
    grid: int,
    pad_color: tuple[int, int, int] = (0, 0, 0),
    overlap: float = 0.5,
) -> View:
    """The ``tiled`` view: ``side``-pixel square crops at the model's native scale, ``grid`` tokens a side.

    The image is resized (bicubic) so its short side is ``side``; the long side is padded with
    ``pad_color`` to a whole number of tokens (less than one token of padding), and crops start
    on token boundaries so their grids line up cell for cell. A square image gives the plain view.
    """
    if not 0.0 <= overlap < 1.0:
        raise AttnPromptError(f"tile overlap must be in [0, 1), got {overlap}")
    w, h = image.size
    if w == h:
        return View(image=image, frame_size=(w, h), box=(0, 0, w, h))
    scale = side / min(w, h)
    rw, rh = max(side, round(w * scale)), max(side, round(h * scale))
    resized = image.resize((rw, rh), Image.Resampling.BICUBIC)
    cell = side / grid  # pixels per token at the model's scale
    cols, rows = math.ceil(rw / cell - 1e-6), math.ceil(rh / cell - 1e-6)
    canvas_size = (round(cols * cell), round(rows * cell))
    canvas = Image.new("RGB", canvas_size, tuple(int(c) for c in pad_color))
    canvas.paste(resized, (0, 0))
    tiles = tuple(
        Tile(box=(round(c * cell), round(r * cell), round(c * cell) + side, round(r * cell) + side), cell=(r, c))
        for r in tile_offsets(rows, grid, overlap)
        for c in tile_offsets(cols, grid, overlap)
    )
    # The frame is the canvas in original pixels; the original image sits at its top-left corner.
    frame = (max(w, round(canvas_size[0] / scale)), max(h, round(canvas_size[1] / scale)))
    return View(image=canvas, frame_size=frame, box=(0, 0, w, h), tiles=tiles, grid=(rows, cols))


def place_mask(mask_u8: np.ndarray, view: View, interpolation: str) -> np.ndarray:
    """Resize an 8-bit token-grid mask onto the view's frame and cut out the original image.

    ``mask_u8``: ``[P, P]`` uint8 (``[rows, cols]`` for a tiled view). Returns ``[H, W]`` uint8 for the original image. The resize is
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
