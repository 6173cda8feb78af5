"""Localisation scores (pointing, mass ratio, rank-1) and the paired bootstrap, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt.bench.stats import paired_bootstrap
from attnprompt.geometry import make_tiled_view, make_view
from attnprompt.shapes.metrics import cell_layout, centre_map, score_map, uniform_scores


def _masks(h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    out = np.zeros((len(boxes), h, w), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, y0:y1, x0:x1] = True
    return out


def test_layout_of_square_stretch_and_letterbox():
    image = Image.new("RGB", (8, 4))
    stretch = cell_layout(make_view(image, "stretch"), (2, 2), image.size)
    assert stretch.cols.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and stretch.rows.tolist() == [0, 0, 1, 1]
    assert stretch.visible.all()
    boxed = cell_layout(make_view(image, "aligned"), (4, 4), image.size)  # frame 8x8, image rows 2..5
    assert boxed.rows.tolist() == [1, 1, 2, 2]
    assert boxed.visible.tolist() == [[False] * 4, [True] * 4, [True] * 4, [False] * 4]


def test_layout_of_tiled_view():
    image = Image.new("RGB", (128, 64))
    view = make_tiled_view(image, 64, 8)
    lay = cell_layout(view, view.grid, image.size)
    assert lay.shape == (8, 16) and lay.visible.all()
    assert lay.cols[:8].tolist() == [0] * 8 and lay.cols[-1] == 15


def test_pointing_mass_and_rank1():
    masks = _masks(4, 4, [(0, 0, 2, 2), (2, 2, 4, 4)])  # two 2x2 objects in opposite corners
    lay = cell_layout(make_view(Image.new("RGB", (4, 4)), "stretch"), (2, 2), (4, 4))
    m = np.array([[1.0, 0.0], [0.0, 0.5]])
    s0 = score_map(m, lay, masks, 0)
    assert s0.pointing == 1.0 and s0.rank1 == 1.0
    assert s0.mass_ratio == pytest.approx((1.0 / 1.5) / 0.25)  # mass 4/(4+2) on a quarter of the image
    s1 = score_map(m, lay, masks, 1)
    assert s1.pointing == 0.0 and s1.rank1 == 0.0
    assert s1.mass_ratio == pytest.approx((0.5 / 1.5) / 0.25)
    flat = score_map(np.ones((2, 2)), lay, masks, 1)
    assert flat.mass_ratio == pytest.approx(1.0) and flat.rank1 == pytest.approx(0.5)  # a tie shares credit
    assert uniform_scores(lay, masks, 0).pointing == pytest.approx(0.25)


def test_pointing_needs_the_overlap_share():
    masks = _masks(4, 4, [(0, 0, 1, 2)])  # covers 2 of the 4 pixels of cell (0, 0)
    lay = cell_layout(make_view(Image.new("RGB", (4, 4)), "stretch"), (2, 2), (4, 4))
    m = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert score_map(m, lay, masks, 0, overlap=0.5).pointing == 1.0
    assert score_map(m, lay, masks, 0, overlap=0.75).pointing == 0.0


def test_padding_cells_never_win():
    image = Image.new("RGB", (8, 4))
    lay = cell_layout(make_view(image, "aligned"), (4, 4), image.size)
    masks = _masks(4, 8, [(0, 0, 2, 2)])
    m = np.zeros((4, 4))
    m[0, :] = 10.0  # padding row: ignored
    m[1, 0] = 1.0
    assert score_map(m, lay, masks, 0).pointing == 1.0


def test_centre_map_points_at_the_middle():
    lay = cell_layout(make_view(Image.new("RGB", (6, 6)), "stretch"), (3, 3), (6, 6))
    c = centre_map(lay, (6, 6))
    assert np.unravel_index(np.argmax(c), c.shape) == (1, 1)


def test_paired_bootstrap_counts_and_interval():
    base = np.array([1, 0, 1, 0, 1, 1, 0, 0] * 10, float)
    other = base.copy()
    other[:8] = 1  # the 4 wrong items among the first 8 become right
    r = paired_bootstrap(base, other, n_boot=1000, seed=1)
    assert r["n"] == 80 and r["changed"] == 4 and r["better"] == 4 and r["worse"] == 0
    assert r["diff"] == pytest.approx(4 / 80)
    lo, hi = r["ci"]
    assert 0.0 <= lo < r["diff"] < hi
    same = paired_bootstrap(base, base, n_boot=200)
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0] and same["changed"] == 0
    assert paired_bootstrap(base, other, n_boot=500, seed=3) == paired_bootstrap(base, other, n_boot=500, seed=3)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])
