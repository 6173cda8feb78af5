"""The tiled geometry: native-scale square crops whose raw maps are stitched onto one grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt import AttnPromptError, Prompter
from attnprompt.geometry import make_tiled_view, tile_offsets
from attnprompt.maps import minmax, stitch


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("cells,tile,overlap,want", [
    (8, 8, 0.5, [0]),
    (16, 8, 0.5, [0, 4, 8]),
    (20, 8, 0.5, [0, 4, 8, 12]),
    (17, 8, 0.5, [0, 3, 6, 9]),
    (16, 8, 0.0, [0, 8]),
    (32, 24, 0.5, [0, 8]),
])
def test_tile_offsets_cover_with_overlap(cells, tile, overlap, want):
    got = tile_offsets(cells, tile, overlap)
    assert got == want
    covered = np.zeros(cells, bool)
    for o in got:
        covered[o:o + tile] = True
    assert covered.all() and got[-1] + tile == max(cells, tile)
    for a, b in zip(got, got[1:]):
        assert tile - (b - a) >= overlap * tile - 1e-9


def test_tiled_view_of_wide_and_tall_images():
    view = make_tiled_view(_noise(128, 64), side=64, grid=8, pad_color=(1, 2, 3))
    assert view.grid == (8, 16) and view.frame_size == (128, 64) and view.box == (0, 0, 128, 64)
    assert [t.cell for t in view.tiles] == [(0, 0), (0, 4), (0, 8)]
    assert [t.box for t in view.tiles] == [(0, 0, 64, 64), (32, 0, 96, 64), (64, 0, 128, 64)]
    assert all(c.size == (64, 64) for c in view.crops())

    tall = make_tiled_view(_noise(40, 100), side=64, grid=8)  # resized to 64 x 160
    assert tall.image.size == (64, 160) and tall.grid == (20, 8)
    assert [t.cell for t in tall.tiles] == [(0, 0), (4, 0), (8, 0), (12, 0)]
    assert tall.frame_size == (40, 100)


def test_tiled_view_pads_less_than_one_token():
    view = make_tiled_view(_noise(130, 64), side=64, grid=8, pad_color=(9, 9, 9))
    assert view.image.size == (136, 64) and view.grid == (8, 17)  # 130 px -> 17 tokens of 8 px
    assert np.asarray(view.image)[:, 130:].tolist() == [[[9, 9, 9]] * 6] * 64
    assert view.frame_size == (136, 64) and view.box == (0, 0, 130, 64)


def test_square_image_is_not_tiled():
    image = _noise(50, 50)
    view = make_tiled_view(image, side=64, grid=8)
    assert view.tiles == () and view.image is image and view.crops() == [image]


def test_stitch_averages_overlaps_and_checks_cover():
    a = torch.ones(1, 2, 2)
    b = torch.full((1, 2, 2), 3.0)
    got = stitch(torch.cat([a, b]), [(0, 0), (0, 1)], (2, 3))
    assert got.tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    with pytest.raises(ValueError, match="uncovered"):
        stitch(torch.cat([a, b]), [(0, 0), (0, 2)], (2, 5))
    with pytest.raises(ValueError, match="does not fit"):
        stitch(a, [(0, 2)], (2, 3))


def test_tiled_maps_are_the_crops_maps_stitched(tiny_clip_dir):
    prompter = Prompter(str(tiny_clip_dir), device="cpu", geometry="tiled", layers=(0, 1, 2, 3))
    aux = prompter.auxiliary
    image = _noise(64, 32, seed=3)  # tiny model: 32 px input, 4 x 4 grid -> 3 crops of 16 px stride
    [ann] = prompter.annotate(image, "a red circle")
    assert ann.psi_cls.shape == (4, 8) and ann.psi_comp.shape == (4, 8) and ann.mask.shape == (4, 8)
    assert ann.pixel_mask.shape == (32, 64) and ann.image.size == (64, 32)

    view = aux.view(image, "tiled")
    crops = view.crops()
    assert len(crops) == 3
    tm = aux.token_maps(crops, ["a red circle"] * 3, (0, 1, 2, 3), -2)
    want = stitch(tm.psi_cls, [t.cell for t in view.tiles], view.grid).numpy()
    np.testing.assert_allclose(ann.psi_cls, want, atol=1e-5)
    # columns seen by the first crop only are its own map, untouched by the others
    np.testing.assert_allclose(ann.psi_cls[:, :2], tm.psi_cls[0, :, :2].numpy(), atol=1e-5)
    # one normalisation over the stitched map, not per crop
    merged = prompter.auxiliary.merge(
        type(tm)(torch.from_numpy(ann.psi_cls)[None], torch.from_numpy(ann.psi_comp)[None], tm.layers, tm.comp_layer),
        prompter.config)
    np.testing.assert_allclose(ann.mask, merged[0].numpy(), atol=1e-6)
    assert float(minmax(torch.from_numpy(ann.mask)[None]).max()) == pytest.approx(1.0)


def test_tiled_equals_stretch_on_square_images(tiny_clip_dir):
    image = _noise(48, 48, seed=4)
    [tiled] = Prompter(str(tiny_clip_dir), device="cpu", geometry="tiled").annotate(image, "a blue square")
    [plain] = Prompter(str(tiny_clip_dir), device="cpu", geometry="stretch").annotate(image, "a blue square")
    np.testing.assert_array_equal(np.asarray(tiled.image), np.asarray(plain.image))


def test_tiled_batches_mix_square_and_wide_images(tiny_clip_dir):
    prompter = Prompter(str(tiny_clip_dir), device="cpu", geometry="tiled")
    images = [_noise(64, 32, 1), _noise(32, 32, 2), _noise(32, 80, 5)]
    out = prompter.annotate(images, ["a", "b", "c"])
    assert [a.mask.shape for a in out] == [(4, 8), (4, 4), (10, 4)]
    alone = [prompter.annotate(im, q)[0] for im, q in zip(images, ["a", "b", "c"])]
    for x, y in zip(out, alone):
        np.testing.assert_allclose(x.psi_cls, y.psi_cls, atol=1e-5)
        assert x.pixel_mask.shape == (x.original.size[1], x.original.size[0])


def test_tiled_is_refused_for_lvlm_auxiliaries(tmp_path):
    from attnprompt.testing_lvlm import make_tiny_llava_dir

    folder = make_tiny_llava_dir(tmp_path / "llava")
    with pytest.raises(AttnPromptError, match="tiled geometry is for CLIP"):
        Prompter(str(folder), device="cpu", geometry="tiled")


def test_cli_tiled_geometry(tiny_clip_dir, tmp_path):
    from attnprompt.cli import main

    src = tmp_path / "wide.png"
    _noise(96, 32, seed=7).save(src)
    out = tmp_path / "out.png"
    assert main(["annotate", str(src), "-q", "a red circle", "-o", str(out), "--model", str(tiny_clip_dir),
                 "--device", "cpu", "--geometry", "tiled", "--save-maps"]) == 0
    assert Image.open(out).size == (96, 32)
    maps = np.load(tmp_path / "out.npz")
    assert maps["psi_cls"].shape == (4, 12) and maps["pixel_mask"].shape == (32, 96)


@pytest.mark.parametrize("size, want", [((64, 64), "aligned"), ((80, 64), "aligned"), ((64, 80), "aligned"),
                                        ((81, 64), "tiled"), ((128, 64), "tiled"), ((64, 128), "tiled")])
def test_auto_geometry_letterboxes_near_square_images_and_tiles_elongated_ones(size, want):
    from attnprompt.geometry import resolve_geometry

    assert resolve_geometry("auto", size) == want
    assert resolve_geometry("stretch", size) == "stretch"


def test_auto_cost_in_forwards():
    from attnprompt.geometry import auto_forwards

    assert [auto_forwards(a) for a in (1.0, 1.25, 4 / 3, 1.5, 16 / 9, 2.0, 3.0)] == [1, 1, 2, 2, 3, 3, 5]


def test_auto_geometry_through_the_pipeline_is_aligned_or_tiled(tiny_clip_dir):
    from attnprompt import Prompter

    p = Prompter(str(tiny_clip_dir), device="cpu")
    assert p.config.geometry == "auto"
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8))
    square = wide.crop((0, 0, 32, 32))
    for image, geometry in ((wide, "tiled"), (square, "aligned")):
        [auto] = p.annotate(image, "a red circle")
        [fixed] = p.annotate(image, "a red circle", geometry=geometry)
        assert np.array_equal(auto.pixel_mask, fixed.pixel_mask) and auto.mask.shape == fixed.mask.shape
