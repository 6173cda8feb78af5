"""Presets as data, overrides, validation with clear messages, layer specs."""

from __future__ import annotations

import pytest

from attnprompt import PRESETS, AttnPromptError, MaskConfig, get_preset
from attnprompt.config import parse_layers, resolve_layer


def test_official_preset_is_the_official_script_defaults():
    cfg = PRESETS["official"]
    assert cfg.layers == (-2,) and cfg.comp_layer == -2  # 22 of 24 = second to last, any depth
    assert (cfg.enhance, cfg.kernel, cfg.interpolation, cfg.gray, cfg.geometry) == (5.0, 3, "lanczos", 0, "stretch")
    assert resolve_layer(cfg.layers[0], 24) == 22


def test_default_preset_differs_from_official_only_in_geometry():
    default, official = get_preset(None).to_dict(), PRESETS["official"].to_dict()
    assert default.pop("geometry") == "aligned" and official.pop("geometry") == "stretch"
    assert default == official


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
