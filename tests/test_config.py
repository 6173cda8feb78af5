"""Presets as data, overrides, validation with clear messages, layer specs."""

from __future__ import annotations

import pytest

from attnprompt import PRESETS, AttnPromptError, MaskConfig, get_preset
from attnprompt.config import (
    MODEL_PRESET_FILE,
    load_preset_file,
    parse_layers,
    resolve_layer,
    resolve_preset,
    write_preset_file,
)


def test_official_preset_is_the_official_script_defaults():
    cfg = PRESETS["official"]
    assert cfg.layers == (-2,) and cfg.comp_layer == -2  # 22 of 24 = second to last, any depth
    assert (cfg.enhance, cfg.kernel, cfg.interpolation, cfg.gray, cfg.geometry) == (5.0, 3, "lanczos", 0, "stretch")
    assert resolve_layer(cfg.layers[0], 24) == 22


def test_default_preset_differs_from_official_only_in_geometry_and_scale_knobs():
    default, official = get_preset(None).to_dict(), PRESETS["official"].to_dict()
    assert default.pop("geometry") == "auto" and official.pop("geometry") == "stretch"
    assert default.pop("kernel_grid") == 24 and official.pop("kernel_grid") is None
    assert default.pop("strict_order") is True and official.pop("strict_order") is False
    assert default == official
    for kind in ("clip", "lvlm"):  # official presets keep the official computation
        cfg = get_preset("official", kind=kind)
        assert (cfg.kernel_grid, cfg.strict_order, cfg.style) == (None, False, "alpha")


def test_overrides_apply_and_presets_stay_untouched():
    cfg = get_preset("official", enhance=1, kernel=5, interpolation="BICUBIC", gray=200, layers=(20, 21))
    assert (cfg.enhance, cfg.kernel, cfg.interpolation, cfg.gray, cfg.layers) == (1.0, 5, "bicubic", 200, (20, 21))
    assert PRESETS["official"].enhance == 5.0
    assert get_preset("official", comp_layer=None).comp_layer is None


@pytest.mark.parametrize("kwargs, match", [
    ({"kernel": 2}, "odd"), ({"kernel": 0}, "odd"), ({"kernel": 3.5}, "odd"),
    ({"gray": 256}, "0-255"), ({"gray": -1}, "0-255"),
    ({"interpolation": "cubicspline"}, "interpolation"), ({"geometry": "crop"}, "geometry"),
    ({"layers": ()}, "layer"), ({"layers": (1, 1)}, "repeated"), ({"enhance": float("nan")}, "finite"),
    ({"kernel_grid": 0}, "kernel_grid"), ({"strict_order": "yes"}, "strict_order"),
    ({"style": "sparkle"}, "unknown style"), ({"style": "soft", "style_params": {"radius": 1}}, "no parameter"),
    ({"style": "soft", "style_params": {"floor": 2}}, "floor"),
])
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(AttnPromptError, match=match):
        MaskConfig(**kwargs)


def test_unknown_preset_and_option():
    with pytest.raises(AttnPromptError, match="unknown clip preset"):
        get_preset("fastest")
    with pytest.raises(AttnPromptError, match="unknown mask option"):
        get_preset("official", enhanse=3)


def test_layer_resolution_and_parsing():
    assert resolve_layer(-1, 12) == 11 and resolve_layer(0, 12) == 0
    for bad in (12, -13):
        with pytest.raises(AttnPromptError, match="out of range.*12 blocks"):
            resolve_layer(bad, 12)
    assert parse_layers(["22"]) == (22,)
    assert parse_layers(["20..23"]) == (20, 21, 22, 23)
    assert parse_layers(["-4..-1"]) == (-4, -3, -2, -1)
    assert parse_layers(["-2", "5,6"]) == (-2, 5, 6)
    for bad in ("a", "3..1", "-1..2", "1..x"):
        with pytest.raises(AttnPromptError, match="bad layer spec"):
            parse_layers([bad])


def test_preset_file_round_trip_and_use_by_path(tmp_path):
    cfg = get_preset("default", kernel=1, layers=(0, 1, 2), comp_layer=None, style="soft",
                     style_params={"floor": 0.2})
    path = write_preset_file(tmp_path / "best.json", cfg, "clip", benchmark="pope", source="tune on validation")
    loaded = load_preset_file(path)
    assert (loaded.kind, loaded.config, loaded.benchmark, loaded.source) == ("clip", cfg, "pope", "tune on validation")
    assert get_preset(str(path), kind="clip") == cfg
    assert get_preset(str(path), kind="clip", gray=9).gray == 9
    with pytest.raises(AttnPromptError, match="is for a clip auxiliary"):
        get_preset(str(path), kind="lvlm")


def test_preset_file_fields_left_out_take_the_default_preset(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"format": "attnprompt-preset", "version": 1, "kind": "lvlm", "settings": {"kernel": 1}}')
    assert load_preset_file(path).config == get_preset("default", kind="lvlm", kernel=1)


@pytest.mark.parametrize("text, match", [
    ("{", "not valid JSON"), ('{"format": "x"}', "not an attnprompt preset"),
    ('{"format": "attnprompt-preset", "version": 2, "kind": "clip"}', "version"),
    ('{"format": "attnprompt-preset", "version": 1, "kind": "vit"}', "kind"),
    ('{"format": "attnprompt-preset", "version": 1, "kind": "clip", "settings": {"kernel": 2}}', "odd"),
    ('{"format": "attnprompt-preset", "version": 1, "kind": "clip", "settings": {"kernal": 3}}', "unknown mask option"),
])
def test_bad_preset_files_fail_with_one_clear_line(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(AttnPromptError, match=match):
        load_preset_file(path)
    with pytest.raises(AttnPromptError, match="does not exist"):
        get_preset(str(tmp_path / "missing.json"))


def test_a_model_folders_preset_is_its_default(tmp_path):
    write_preset_file(tmp_path / MODEL_PRESET_FILE, get_preset("default", kernel=5), "clip")
    assert resolve_preset(None, kind="clip", model=str(tmp_path)).kernel == 5
    assert resolve_preset("default", kind="clip", model=str(tmp_path), gray=3).gray == 3
    assert resolve_preset("official", kind="clip", model=str(tmp_path)) == PRESETS["official"]
    assert resolve_preset(None, kind="clip", model=str(tmp_path / "elsewhere")) == get_preset(None)
    with pytest.raises(AttnPromptError, match="clip preset, but the model is a lvlm"):
        resolve_preset(None, kind="lvlm", model=str(tmp_path))
