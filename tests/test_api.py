"""The Python API: one-call annotate(), the reusable Prompter, inputs, geometry, batching."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt import AttnPromptError, Prompter, annotate
from attnprompt.geometry import make_view


def scene(size=(48, 32), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_annotate_accepts_paths_pil_and_arrays(tmp_path, tiny_clip_dir):
    path = tmp_path / "a.png"
    scene((40, 30), 1).save(path)
    images = [str(path), scene((50, 20), 2), np.asarray(scene((24, 36), 3))]
    out = annotate(images, ["red?", "blue?", "green?"], model=str(tiny_clip_dir), device="cpu")
    assert [im.size for im in out] == [(40, 30), (50, 20), (24, 36)]
    assert all(im.mode == "RGB" for im in out)
    rgba = annotate(images[:1], ["red?"], model=str(tiny_clip_dir), device="cpu", format="rgba")
    assert rgba[0].mode == "RGBA"
    with pytest.raises(AttnPromptError, match="one query per image"):
        annotate(images, ["only one"], model=str(tiny_clip_dir), device="cpu")
    with pytest.raises(AttnPromptError, match="format"):
        annotate(images[:1], ["x"], model=str(tiny_clip_dir), device="cpu", format="jpeg")


def test_prompter_returns_maps_masks_and_pixels(tiny_prompter):
    [res] = tiny_prompter.annotate(scene(), "what is it?", geometry="aligned")
    assert res.psi_cls.shape == res.psi_comp.shape == res.mask.shape == (4, 4)
    assert res.mask.min() == 0.0 and res.mask.max() == 1.0
    assert res.pixel_mask.shape == (32, 48) and res.pixel_mask.dtype == np.uint8
    assert res.image.size == res.original.size == (48, 32)
    assert set(res.arrays()) == {"psi_cls", "psi_comp", "mask", "pixel_mask"}
    # black background: the annotated image never exceeds the original
    assert (np.asarray(res.image).astype(int) <= np.asarray(res.original).astype(int)).all()
    [no_comp] = tiny_prompter.annotate(scene(), "what is it?", comp_layer=None, geometry="aligned")
    assert no_comp.psi_comp is None and "psi_comp" not in no_comp.arrays()
    assert np.allclose(no_comp.psi_cls, res.psi_cls, atol=1e-6)


def test_batch_equals_one_by_one(tiny_prompter):
    images = [scene((48, 32), i) for i in range(3)]
    queries = ["a red circle", "is there a square?", "describe"]
    batch = tiny_prompter.annotate(images, queries)
    for im, q, b in zip(images, queries, batch):
        [one] = tiny_prompter.annotate([im], [q])
        assert np.abs(one.mask - b.mask).max() < 1e-5
    chunked = tiny_prompter.annotate(images, queries, batch_size=2)
    assert all(np.abs(a.mask - b.mask).max() < 1e-5 for a, b in zip(chunked, batch))


def test_aligned_geometry_is_stretch_on_the_letterboxed_image(tiny_prompter):
    image = scene((64, 32), 5)
    [aligned] = tiny_prompter.annotate(image, "where?", geometry="aligned")
    view = make_view(image, "aligned", tiny_prompter.auxiliary.pad_color)
    [square] = tiny_prompter.annotate(view.image, "where?", geometry="stretch")
    left, top, right, bottom = view.box
    assert np.array_equal(aligned.pixel_mask, square.pixel_mask[top:bottom, left:right])
    assert np.allclose(aligned.mask, square.mask)
    [stretched] = tiny_prompter.annotate(image, "where?", geometry="stretch")
    assert not np.allclose(stretched.mask, aligned.mask)  # CLIP saw a different picture


def test_square_images_identical_under_default_and_official(tiny_clip_dir):
    # on square images the default differs from official only by its scale-aware knobs
    image = scene((40, 40), 7)
    default = Prompter(str(tiny_clip_dir), device="cpu", kernel_grid=None, strict_order=False)
    official = Prompter(str(tiny_clip_dir), device="cpu", preset="official")
    [a], [b] = default.annotate(image, "what?"), official.annotate(image, "what?")
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_overrides_are_validated_against_the_tower(tiny_prompter):
    with pytest.raises(AttnPromptError, match="out of range"):
        tiny_prompter.annotate(scene(), "x", layers=(7,))
    with pytest.raises(AttnPromptError, match="unknown mask option"):
        tiny_prompter.annotate(scene(), "x", kernal=3)
    with pytest.raises(AttnPromptError, match="out of range"):
        Prompter(auxiliary=tiny_prompter.auxiliary, layers=(-9,))
