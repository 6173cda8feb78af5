"""Localisation scores of a token-space map against a scene's exact object masks (pure NumPy).

A map is ``[R, C]`` over a view's frame (see :mod:`attnprompt.geometry`): cell ``(r, c)`` covers
the frame rectangle ``[c * Fw / C, (c + 1) * Fw / C) x [r * Fh / R, (r + 1) * Fh / R)``, and the
image sits at the view's ``box`` inside the frame. Every score is computed on the image's own
pixels, so maps made under different geometries (stretch, aligned, tiled) are compared on the
same ground truth. Cells that fall entirely outside the image (letterbox padding) are ignored.

- pointing: the map's highest cell on the image "points" at the object when at least
  ``overlap`` of that cell's image pixels are the object's visible pixels;
- mass ratio: the share of the (min-max normalised) map's mass on the object's pixels divided by
  the object's share of the image (1 = no better than a uniform map);
- rank-1: the object has the highest mean map value among the scene's objects.

The shapes CLIP trainer's probe (:func:`attnprompt.shapes.train_clip.pointing_accuracy`) scores
its maps with the same layout (:func:`pointing_cells`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import View

__all__ = ["CellLayout", "cell_layout", "Scores", "score_map", "centre_map", "uniform_scores", "pointing_cells"]


@dataclass(frozen=True)
class CellLayout:
    """Which map cell every image pixel falls in, for one view and map shape.

    Attributes:
        rows: ``[H]`` cell row of each image pixel row.
        cols: ``[W]`` cell column of each image pixel column.
        shape: ``(R, C)`` of the map.
        visible: ``[R, C]`` bool, cells holding at least one image pixel.
    """

    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]
    visible: np.ndarray

    def to_pixels(self, m: np.ndarray) -> np.ndarray:
        """``[R, C]`` map -> ``[H, W]`` (nearest: each pixel takes its cell's value)."""
        return m[np.ix_(self.rows, self.cols)]

    def cell_means(self, pixel_values: np.ndarray) -> np.ndarray:
        """``[H, W]`` values -> ``[R, C]`` mean over each cell's image pixels (0 outside the image)."""
        total = np.zeros(self.shape, np.float64)
        count = np.zeros(self.shape, np.float64)
        np.add.at(total, (self.rows[:, None], self.cols[None, :]), pixel_values)
        np.add.at(count, (self.rows[:, None], self.cols[None, :]), 1.0)
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)

    def cell_centres(self, pixel_values: np.ndarray) -> np.ndarray:
        """``[H, W]`` values -> ``[R, C]`` value at each cell's middle image pixel (cells must be visible)."""
        def middles(index: np.ndarray, n: int) -> np.ndarray:
            first = np.searchsorted(index, np.arange(n))  # index is sorted: pixels in cell order
            counts = np.bincount(index, minlength=n)
            return first + counts // 2

        rows_n, cols_n = self.shape
        return pixel_values[np.ix_(middles(self.rows, rows_n), middles(self.cols, cols_n))]


def cell_layout(view: View, shape: tuple[int, int], image_size: tuple[int, int]) -> CellLayout:
    """The :class:`CellLayout` of an ``[R, C]`` map made for ``view`` of an image of ``(W, H)``."""
    rows_n, cols_n = shape
    fw, fh = view.frame_size
    left, top = view.box[:2]
    w, h = image_size
    # pixel centres in frame coordinates -> cell index
    cols = np.minimum(((np.arange(w) + left + 0.5) * cols_n / fw).astype(int), cols_n - 1)
    rows = np.minimum(((np.arange(h) + top + 0.5) * rows_n / fh).astype(int), rows_n - 1)
    visible = np.zeros(shape, bool)
    visible[np.ix_(np.unique(rows), np.unique(cols))] = True
    return CellLayout(rows, cols, (rows_n, cols_n), visible)


@dataclass(frozen=True)
class Scores:
    """Scores of one map for one target object."""

    pointing: float
    mass_ratio: float
    rank1: float


def score_map(m: np.ndarray, layout: CellLayout, masks: np.ndarray, target: int, overlap: float = 0.5) -> Scores:
    """Pointing, mass ratio and rank-1 of map ``m`` ``[R, C]`` for object ``target`` of ``masks`` ``[N, H, W]``."""
    m = np.asarray(m, np.float64)
    if m.shape != layout.shape:
        raise ValueError(f"map shape {m.shape} does not match the layout {layout.shape}")
    target_mask = masks[target]
    cover = layout.cell_means(target_mask.astype(np.float64))
    shown = np.where(layout.visible, m, -np.inf)
    r, c = np.unravel_index(int(np.argmax(shown)), m.shape)
    pointing = float(cover[r, c] >= overlap)

    lo, hi = float(m[layout.visible].min()), float(m[layout.visible].max())
    norm = (m - lo) / (hi - lo) if hi > lo else np.ones_like(m)
    pixels = layout.to_pixels(norm)
    total = float(pixels.sum())
    share = float(target_mask.mean())
    mass_ratio = (float(pixels[target_mask].sum()) / total) / share if total > 0 and share > 0 else 1.0

    raw = layout.to_pixels(m)
    means = np.array([raw[k].mean() if k.any() else -np.inf for k in masks])
    best = np.flatnonzero(means == means.max())
    rank1 = float(target in best) / len(best)  # ties share the credit
    return Scores(pointing, mass_ratio, rank1)


def uniform_scores(layout: CellLayout, masks: np.ndarray, target: int, overlap: float = 0.5) -> Scores:
    """The expected scores of a map with no information (a random visible cell; ties everywhere)."""
    cover = layout.cell_means(masks[target].astype(np.float64))
    hits = (cover >= overlap) & layout.visible
    return Scores(float(hits.sum() / layout.visible.sum()), 1.0, 1.0 / len(masks))


def centre_map(layout: CellLayout, image_size: tuple[int, int]) -> np.ndarray:
    """The centre prior: minus each cell's distance from the image centre (in image pixels)."""
    w, h = image_size
    ys = np.arange(h) + 0.5 - h / 2.0
    xs = np.arange(w) + 0.5 - w / 2.0
    dist = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    mean_dist = layout.cell_means(dist)
    return np.where(layout.visible, -mean_dist, -np.inf)


def pointing_cells(layout: CellLayout, mask: np.ndarray, overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of an ``[R, C]`` map: would its argmax there point at ``mask`` ``[H, W]``?

    Returns ``(hit, centre)``, ``[R, C]`` bool each: ``hit`` when at least ``overlap`` of the
    cell's image pixels are the object's (the pointing rule of :func:`score_map`), ``centre``
    when the cell's middle pixel is.
    """
    hit = layout.cell_means(mask.astype(np.float64)) >= overlap
    return hit, layout.cell_centres(mask).astype(bool)
