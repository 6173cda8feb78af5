"""The fast pixel stage equals the full-size computation it replaces, bit for bit: the blend as a
lookup table, and the aligned view letterboxed and resized at the model's input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.geometry import letterbox, letterbox_resized, make_view
from attnprompt.overlay import blend, blend_table

from .conftest import requires_open_clip

FILTERS = [Image.Resampling.NEAREST, Image.Resampling.BOX, Image.Resampling.BILINEAR,
           Image.Resampling.HAMMING, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS]


def official_blend(pixels: np.ndarray, mask: np.ndarray, gray: int) -> np.ndarray:
    """``blend_mask``'s arithmetic, written out elementwise (float32 product, float64 gray term)."""
    img = pixels.astype(np.float32)
    m = mask.astype(np.float32) / np.float32(255.0)
    kept = img * m[..., None]
    faded = (np.float32(1.0) - m[..., None]) * np.full(img.shape, float(gray), dtype=np.float64)
    return (kept + faded).astype(np.uint8)


def test_blend_table_equals_the_official_arithmetic_on_every_pair_for_every_gray():
    masks, pixels = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    image = np.repeat(pixels[..., None], 3, axis=2)  # [256 masks, 256 pixels, 3]
    for gray in range(256):
        expected = official_blend(image, masks, gray)
        got = np.asarray(blend(Image.fromarray(image), masks, gray))
        assert np.array_equal(got, expected), gray
    assert blend_table(200).take(255 * 256 + 17) == 17 and blend_table(200).take(17) == 200


def test_blend_of_a_photo_sized_image():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)
    mask = rng.integers(0, 256, (123, 77), dtype=np.uint8)
    assert np.array_equal(np.asarray(blend(Image.fromarray(pixels), mask, 37)), official_blend(pixels, mask, 37))
    with pytest.raises(ValueError):
        blend(Image.fromarray(pixels), mask[:, :10], 0)


def sizes() -> list[tuple[int, int]]:
    rng = np.random.default_rng(2)
    fixed = [(2, 1), (3, 2), (9, 1), (33, 32), (64, 32), (333, 211), (640, 480), (1000, 17), (17, 1000), (40, 80)]
    random = [tuple(int(v) for v in sorted(rng.integers(1, 700, 2))[::-1]) for _ in range(30)]
    return fixed + random + [(w, h) for h, w in random[:10]]  # wide, square-ish and tall


def test_letterbox_resized_equals_resizing_the_full_canvas():
    rng = np.random.default_rng(3)
    pad = (122, 116, 104)
    checked = 0
    for w, h in sizes():
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        canvas = letterbox(image, pad)
        for resample in FILTERS:
            for side in (7, 32, 224):
                expected = np.asarray(canvas.resize((side, side), resample))
                assert np.array_equal(np.asarray(letterbox_resized(image, side, resample, pad)), expected), (w, h, resample, side)
                checked += 1
    assert checked == 50 * len(FILTERS) * 3


def check_processor_equality(aux) -> None:
    """The model's input from the fast aligned view equals the one from the full letterboxed canvas."""
    assert aux.square_resize is not None
    rng = np.random.default_rng(4)
    for w, h in [(64, 32), (333, 211), (1600, 1200), (101, 100), (40, 80), (48, 48)]:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        fast, full = aux.view(image, "aligned"), make_view(image, "aligned", aux.pad_color)
        assert (fast.frame_size, fast.box) == (full.frame_size, full.box)
        assert torch.equal(aux.preprocess([fast.image]), aux.preprocess([full.image])), (w, h)


def test_hf_clip_sees_the_same_pixels_through_the_fast_view(tiny_prompter):
    check_processor_equality(tiny_prompter.auxiliary)


@requires_open_clip
def test_open_clip_sees_the_same_pixels_through_the_fast_view(golden):
    from attnprompt import Prompter

    cfg = golden / "open_clip" / "model_cfg.json"
    prompter = Prompter("tiny-fast-view", model_config=str(cfg), pretrained=str(golden / "open_clip" / "open_clip_model.safetensors"),
                        device="cpu")
    check_processor_equality(prompter.auxiliary)
