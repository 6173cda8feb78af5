"""Prompt styles: every style from the same pixel mask, with the geometry users rely on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from attnprompt import AttnPromptError, get_preset
from attnprompt.overlay import blend
from attnprompt.styles import STYLES, attended_region, components, region_box, render


def _scene(h: int = 90, w: int = 120) -> tuple[Image.Image, np.ndarray]:
    """A textured image (so blurring changes pixels) and a mask with a bright disc and a dim ramp."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")
    yy, xx = np.mgrid[:h, :w]
    mask = (xx * 100 // w).astype(np.uint8)  # a dim ramp: below half of the maximum everywhere
    disc = (yy - 30) ** 2 + (xx - 80) ** 2 <= 12 ** 2
    mask[disc] = 255
    return image, mask


def _config(style: str, **params):
    return get_preset("default", style=style, style_params=params)


def test_registry_lists_every_style_and_alpha_is_the_default():
    assert list(STYLES)[:1] == ["alpha"]
    assert {"alpha", "soft", "crop", "vicrop", "blur", "outline", "box", "marks"} <= set(STYLES)
    assert get_preset("default").style == "alpha" and get_preset("official").style == "alpha"


def test_alpha_is_the_official_blend_bit_for_bit():
    image, mask = _scene()
    for gray in (0, 200):
        out = render(image, mask, get_preset("official", gray=gray))
        assert out.boxes == [] and len(out.images) == 1
        assert np.array_equal(np.asarray(out.images[0]), np.asarray(blend(image, mask, gray)))


def test_soft_keeps_a_floor_of_visibility_and_floor_zero_is_alpha():
    image, mask = _scene()
    white = Image.new("RGB", image.size, (255, 255, 255))
    out = np.asarray(render(white, np.zeros_like(mask), _config("soft", floor=0.4)).images[0])
    assert out.min() >= int(0.4 * 255) - 1 and out.max() <= int(0.4 * 255) + 1  # black mask: floor only
    zero = render(image, mask, _config("soft", floor=0.0)).images[0]
    assert np.array_equal(np.asarray(zero), np.asarray(blend(image, mask, 0)))


def test_attended_region_and_its_box():
    _, mask = _scene()
    region = attended_region(mask, 0.5)
    assert region.sum() == (mask == 255).sum()  # the ramp stays below half of the maximum
    assert region_box(region) == (68, 18, 93, 43)  # the disc of radius 12 around (80, 30)
    assert attended_region(np.zeros((4, 4), np.uint8)).all()  # nothing kept: the whole image


def test_crop_box_covers_the_region_with_a_margin_and_replaces_the_image():
    image, mask = _scene()
    out = render(image, mask, _config("crop", margin=0.5))
    [box] = out.boxes
    left, top, right, bottom = box
    rl, rt, rr, rb = region_box(attended_region(mask))
    assert left <= rl and top <= rt and right >= rr and bottom >= rb
    assert (rl - left) >= 0.5 * (rr - rl) - 1 and (right - rr) >= 0.5 * (rr - rl) - 1  # 50% context each side
    assert len(out.images) == 1 and out.images[0].size == (right - left, bottom - top)
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(image.crop(box)))
    # a crop never leaves the image, and a tiny region still gets min_size of the short side
    tiny = np.zeros_like(mask)
    tiny[0, 0] = 255
    [(l, t, r, b)] = render(image, tiny, _config("crop", min_size=0.5)).boxes
    assert (l, t) == (0, 0) and r - l >= 45 and b - t >= 45 and r <= image.width and b <= image.height


def test_vicrop_gives_the_original_and_the_crop():
    image, mask = _scene()
    out = render(image, mask, _config("vicrop"))
    assert len(out.images) == 2 and STYLES["vicrop"].images == 2
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(image))
    assert np.array_equal(np.asarray(out.images[1]), np.asarray(image.crop(out.boxes[0])))


def test_blur_keeps_the_region_untouched_and_blurs_outside():
    image, mask = _scene()
    out = np.asarray(render(image, mask, _config("blur")).images[0]).astype(int)
    src = np.asarray(image).astype(int)
    region = attended_region(mask)
    assert np.array_equal(out[region], src[region])
    outside = ~region
    assert np.abs(out[outside] - src[outside]).mean() > 30  # random texture blurred towards its mean
    assert out[outside].std() < src[outside].std() / 2


@pytest.mark.parametrize("style", ["outline", "box"])
def test_outline_encloses_the_region_and_leaves_it_untouched(style):
    image, mask = _scene()
    out = render(image, mask, _config(style, color="#00ff00"))
    [(l, t, r, b)] = out.boxes
    rl, rt, rr, rb = region_box(attended_region(mask))
    assert l < rl and t < rt and r > rr and b > rb
    got, src = np.asarray(out.images[0]), np.asarray(image)
    region = attended_region(mask)
    assert np.array_equal(got[region], src[region])
    changed = (got != src).any(axis=2)
    assert changed.sum() > 0 and (got[changed] == [0, 255, 0]).all()  # only the line is drawn
    ys, xs = np.nonzero(changed)
    assert xs.min() >= max(0, l) and ys.min() >= max(0, t) and xs.max() < r and ys.max() < b


def test_marks_number_each_component_strongest_first():
    image = Image.new("RGB", (160, 100), (40, 40, 40))
    mask = np.zeros((100, 160), np.uint8)
    mask[10:30, 10:40] = 200  # weaker, smaller blob
    mask[50:90, 90:150] = 255  # stronger, larger blob
    mask[0, 159] = 255  # a speck below min_area: no mark
    out = render(image, mask, _config("marks"))
    assert out.boxes == [(90, 50, 150, 90), (10, 10, 40, 30)]
    got = np.asarray(out.images[0])
    assert (got != 40).any(axis=2)[50:90, 90:150].any() and (got != 40).any(axis=2)[10:30, 10:40].any()
    assert not (got != 40).any(axis=2)[:, :5].any()  # nothing drawn away from the components
    assert len(render(image, mask, _config("marks", max_marks=1)).boxes) == 1


def test_components_are_eight_connected():
    region = np.zeros((20, 20), bool)
    region[2, 2] = region[3, 3] = True  # diagonal neighbours: one component
    region[10:12, 10:12] = True
    parts = components(region)
    assert len(parts) == 2 and sorted(int(p.sum()) for p in parts) == [2, 4]


def test_style_through_the_pipeline_and_the_manifest(tiny_prompter, tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    [alpha] = tiny_prompter.annotate(image, "a red circle")
    [crop] = tiny_prompter.annotate(image, "a red circle", style="crop")
    assert np.array_equal(crop.pixel_mask, alpha.pixel_mask)  # the same mask, another rendering
    assert np.array_equal(np.asarray(crop.image), np.asarray(image.crop(crop.boxes[0])))
    assert alpha.boxes == [] and alpha.images == [alpha.image]
    from attnprompt.io import ManifestRow
    from attnprompt.jobs import run_manifest

    src = tmp_path / "in.png"
    image.save(src)
    prompter = type(tiny_prompter)(tiny_prompter.auxiliary.name, device="cpu", auxiliary=tiny_prompter.auxiliary,
                                   style="vicrop")
    run_manifest(prompter, [ManifestRow(id="a", image=str(src), question="a red circle", line=1)], tmp_path / "out",
                 progress=False)
    [rec] = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok" and rec["style"] == "vicrop" and len(rec["boxes"]) == 1
    assert rec["extra_outputs"] == ["a_2.png"] and (tmp_path / "out" / "a_2.png").is_file()
    l, t, r, b = rec["boxes"][0]
    assert Image.open(tmp_path / "out" / "a_2.png").size == (r - l, b - t)


def test_bad_style_options_are_clear_errors(tiny_prompter):
    with pytest.raises(AttnPromptError, match="unknown style 'sparkle'"):
        tiny_prompter.annotate(Image.new("RGB", (32, 32)), "x", style="sparkle")
    with pytest.raises(AttnPromptError, match="colour"):
        get_preset("default", style="outline", style_params={"color": "notacolour"})
    with pytest.raises(AttnPromptError, match="integer"):
        get_preset("default", style="marks", style_params={"max_marks": 2.5})
