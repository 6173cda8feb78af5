"""Pixel stage and geometry: official 8-bit arithmetic, alignment, output formats."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt.geometry import make_view, place_mask
from attnprompt.overlay import blend, colorize, heatmap, mask_to_u8, to_rgba


def test_mask_to_u8_truncates_like_to_pil_image():
    mask = np.array([[0.0, 0.2, 1.0], [0.999, 0.5, 1 / 255]], dtype=np.float32)
    got = mask_to_u8(mask)
    assert got.dtype == np.uint8
    assert got.tolist() == [[0, 51, 255], [254, 127, 1]]


def test_blend_matches_official_formula_and_gray():
    image = Image.fromarray(np.array([[[200, 100, 50], [10, 20, 30]]], dtype=np.uint8))
    pixel_mask = np.array([[255, 51]], dtype=np.uint8)
    out = np.asarray(blend(image, pixel_mask, gray=0))
    assert out[0, 0].tolist() == [200, 100, 50]  # kept
    # official: uint8(img_f32 * m + (1 - m) * gray_f64) with m = 51 / 255 = 0.2
    m = np.float32(51) / np.float32(255)
    want = ((np.array([10, 20, 30], np.float32) * m).astype(np.float64) + (np.float32(1) - m) * 0.0).astype(np.uint8)
    assert out[0, 1].tolist() == want.tolist()
    out_gray = np.asarray(blend(image, np.zeros((1, 2), np.uint8), gray=200))
    assert (out_gray == 200).all()


def test_rgba_and_heatmap_outputs():
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    pixel_mask = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgba = to_rgba(image, pixel_mask)
    assert rgba.mode == "RGBA" and np.array_equal(np.asarray(rgba)[..., 3], pixel_mask)
    assert np.asarray(rgba)[..., :3].tolist() == np.asarray(image).tolist()
    hm = heatmap(image, pixel_mask)
    assert hm.size == image.size and hm.mode == "RGB"
    cold, hot = colorize(np.array([[0.0, 1.0]]))[0]
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue for low, red for high


def test_stretch_view_spreads_the_grid_over_the_whole_image():
    image = Image.new("RGB", (40, 20))
    view = make_view(image, "stretch")
    assert view.image is image and view.frame_size == (40, 20) and view.box == (0, 0, 40, 20)
    grid = np.zeros((2, 2), np.uint8)
    grid[0, 1] = 255  # top-right cell
    placed = place_mask(grid, view, "nearest")
    assert placed.shape == (20, 40)
    assert placed[:10, 20:].min() == 255 and placed[10:, :].max() == 0 and placed[:, :20].max() == 0


@pytest.mark.parametrize("size", [(40, 20), (20, 40), (33, 17)])
def test_aligned_view_maps_the_grid_back_exactly(size):
    w, h = size
    image = Image.new("RGB", size, (255, 0, 0))
    view = make_view(image, "aligned", pad_color=(122, 116, 104))
    side = max(w, h)
    assert view.image.size == (side, side) and view.frame_size == (side, side)
    left, top, right, bottom = view.box
    assert (right - left, bottom - top) == size
    # the original sits in the centre of the letterbox, padding has the mean colour
    canvas = np.asarray(view.image)
    assert (canvas[top:bottom, left:right] == [255, 0, 0]).all()
    if w != h:
        assert (canvas[0, 0] == [122, 116, 104]).all()
    # a grid cell covering the canvas centre lands in the centre of the original image
    grid = np.zeros((side, side), np.uint8)
    grid[side // 2, side // 2] = 255
    placed = place_mask(grid, view, "nearest")
    assert placed.shape == (h, w)
    ys, xs = np.nonzero(placed)
    assert (ys[0], xs[0]) == (side // 2 - top, side // 2 - left)


def test_square_image_aligned_equals_stretch():
    image = Image.new("RGB", (30, 30))
    assert make_view(image, "aligned").box == make_view(image, "stretch").box
    grid = (np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)
    assert np.array_equal(place_mask(grid, make_view(image, "aligned"), "lanczos"),
                          place_mask(grid, make_view(image, "stretch"), "lanczos"))


@pytest.mark.parametrize("interp", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_every_interpolation_resizes_to_image_size(interp):
    grid = np.random.default_rng(0).integers(0, 256, (6, 6), dtype=np.uint8)
    out = place_mask(grid, make_view(Image.new("RGB", (50, 31)), "stretch"), interp)
    assert out.shape == (31, 50) and out.dtype == np.uint8
