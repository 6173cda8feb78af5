"""The shipped shapes models do what the shapes world promises (deterministic: fixed weights and seeds).

These are the issue's required results, measured on fresh evaluation scenes (seeds the training
never used: training draws scene seeds from ``scene_seed(seed + 1000, i)`` and its own pools).
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from attnprompt.auxiliary.base import shipped_model  # noqa: E402
from attnprompt.shapes.benchmarks import geometry_table, localization  # noqa: E402

N_SCENES = 200  # the benchmark's default: these are the README's numbers


@pytest.fixture(scope="module")
def loc():
    # geometry rows: only what is asserted (all-layer psi_cls everywhere, the model's default mask
    # under the default geometry); the benchmark script scores every map under every geometry
    return localization("shapes-clip", "shapes-llava", n_scenes=N_SCENES, seed=12345,
                        geometry_maps={"psi_cls all layers": ("stretch", "aligned", "tiled", "auto"),
                                       "mask model default": ("auto",)})


def _pointing(result, name, kind="all"):
    return result["square"][name][kind]["pointing"]


def test_models_are_shipped_and_small():
    total = 0
    for name in ("shapes-clip", "shapes-llava"):
        folder = shipped_model(name)
        assert folder is not None, name
        from pathlib import Path

        total += sum(p.stat().st_size for p in Path(folder).iterdir())
    assert total <= 12 * 1024 * 1024


@pytest.mark.parametrize("kind", ["color+shape", "color"])
def test_clip_psi_cls_points_at_the_named_object(loc, kind):
    score = _pointing(loc, "psi_cls all layers", kind)
    assert score >= 0.45
    assert score >= 2 * _pointing(loc, "baseline: query-agnostic", kind)


def test_complementary_map_is_background_unless_inverted(loc):
    raw = _pointing(loc, "psi_comp not inverted")
    assert raw <= 0.10
    assert raw < _pointing(loc, "baseline: query-agnostic") and raw < _pointing(loc, "psi_comp inverted")
    assert loc["square"]["psi_comp not inverted"]["all"]["mass_ratio"] < 1.0  # less mass on objects than uniform
    assert _pointing(loc, "psi_comp inverted") > _pointing(loc, "baseline: uniform")


def test_best_non_stretch_geometry_keeps_80_percent_off_square(loc):
    table = geometry_table(loc)
    for aspect in ("wide", "tall"):
        best = max(table[g][f"{aspect} / square"] for g in ("aligned", "tiled"))
        assert best >= 0.80, (aspect, table)
    # the official stretch is what breaks on non-square scenes
    assert table["stretch"]["wide / square"] < table["tiled"]["wide / square"]


def test_default_geometry_keeps_80_percent_off_square(loc):
    from attnprompt import get_preset

    assert get_preset("default", kind="clip").geometry == "auto"
    assert loc["settings"]["clip_default"]["geometry"] == "auto"  # the shipped model's own preset too
    for map_name in ("psi_cls all layers", "mask model default"):
        table = geometry_table(loc, map_name)
        for aspect in ("wide", "tall"):
            assert table["auto"][f"{aspect} / square"] >= 0.80, (map_name, aspect, table)


def test_default_final_mask_points_as_well_as_all_layer_psi_cls(loc):
    # the bar: all-layer psi_cls through the pipeline pointed at 0.65 on these scenes
    assert _pointing(loc, "mask model default") >= _pointing(loc, "psi_cls all layers")
    assert _pointing(loc, "mask model default") >= 0.65


def test_lvlm_default_mask_keeps_80_percent_of_its_raw_attention(loc):
    assert _pointing(loc, "lvlm mask") >= 0.80 * _pointing(loc, "lvlm attention")
    # the official post-processing is what lost it (a 3 x 3 filter on 8 x 8, a saturated enhance)
    assert _pointing(loc, "lvlm mask official preset") < _pointing(loc, "lvlm mask")


def test_lvlm_map_beats_uniform_and_centre(loc):
    lvlm = _pointing(loc, "lvlm attention")
    assert lvlm > _pointing(loc, "baseline: uniform")
    assert lvlm > _pointing(loc, "baseline: centre")


@pytest.fixture(scope="module")
def vlm_accuracy():
    from attnprompt.shapes.train_llava import answer_accuracy

    return answer_accuracy(shipped_model("shapes-llava"), n_scenes=150, seed=4242, n_objects=(1, 2))


def test_shipped_vlm_meets_the_required_colour_accuracy(vlm_accuracy):
    # "what color is the <shape>?" on 1-2 objects: guessing among the 8 colours gives 0.125 and
    # naming the colour of a random object of the scene about 0.75, so 0.85 needs the shape read.
    assert vlm_accuracy["shape"]["accuracy"] >= 0.85
    # and it does read shapes: "what shape is the <colour> object?" is above chance (0.2)
    assert vlm_accuracy["color"]["accuracy"] >= 0.4


def test_clip_scores_is_localization_in_one_pass():
    # the sweep ranks runs with clip_scores: it must give exactly localization's square-scene rows
    from attnprompt.shapes.benchmarks import clip_scores

    full = localization("shapes-clip", None, n_scenes=12, seed=5, aspects=("square",), geometries=("aligned",))
    quick = clip_scores("shapes-clip", n_scenes=12, seed=5)
    assert set(quick) == {"psi_cls all layers", "psi_comp inverted", "psi_comp not inverted",
                          "baseline: query-agnostic", "baseline: uniform"}
    for name, per_kind in quick.items():
        assert per_kind == full["square"][name], name
