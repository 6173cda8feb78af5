"""Extending attnprompt without editing it: a backend, an LVLM family, a benchmark, a condition.

The backend is defined here, in the test file: a "brightness" auxiliary whose token map is the
mean brightness of each cell. It is registered at run time and loaded through ``Prompter`` and the
command line, and installed as a package's entry point (a fake distribution on ``sys.path``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt import AttnPromptError, Prompter
from attnprompt.auxiliary.dispatch import BACKENDS, register_backend
from attnprompt.auxiliary.families import FAMILIES, Family, Grid, family_for, register_family
from attnprompt.auxiliary.protocol import Auxiliary, MapBatch
from attnprompt.cli import main
from attnprompt.config import AuxiliarySettings
from attnprompt.geometry import View, make_view

GRID = 4


class Brightness(Auxiliary):
    """A toy auxiliary model: the map of a cell is its mean brightness (the query is ignored)."""

    kind = "clip"
    backend = "brightness"

    def view(self, image: Image.Image, geometry: str) -> View:
        return make_view(image, "stretch")

    def check_settings(self, settings: AuxiliarySettings) -> None:
        if settings.comp_layer is not None and settings.comp_layer > 0:
            raise AttnPromptError("the brightness model has no layers")

    def map_batches(self, images: Sequence[Image.Image], queries: Sequence[str],
                    settings: AuxiliarySettings) -> list[MapBatch]:
        cells = [np.asarray(im.convert("L").resize((GRID, GRID), Image.BOX), dtype=np.float32) for im in images]
        return [MapBatch({"psi_cls": torch.from_numpy(np.stack(cells))}, [None] * len(images))]


def load_brightness(model: str, *, device: torch.device, dtype: torch.dtype, **_: object) -> Brightness:
    return Brightness(model, device, dtype)


def half_bright(path: Path | None = None) -> Image.Image:
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, 16:] = 255  # the right half is bright
    image = Image.fromarray(pixels)
    if path is not None:
        image.save(path)
    return image


@pytest.fixture
def brightness_backend():
    register_backend("brightness")(load_brightness)
    yield
    BACKENDS.unregister("brightness")


def test_a_backend_defined_outside_the_package_loads_through_prompter(brightness_backend):
    prompter = Prompter("any-name", backend="brightness", device="cpu", comp_layer=None)
    assert isinstance(prompter.auxiliary, Brightness) and prompter.kind == "clip"
    [result] = prompter.annotate(half_bright(), "the bright half")
    assert result.mask.shape == (GRID, GRID)
    assert result.mask[:, 2:].min() > result.mask[:, :2].max()  # the pipeline's mask follows the map
    right, left = np.asarray(result.image)[:, 24:], np.asarray(result.image)[:, :8]
    assert right.mean() > 200 and left.mean() == 0  # kept where bright, faded to black elsewhere


def test_a_registered_backend_loads_through_the_cli(brightness_backend, tmp_path, capsys):
    half_bright(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code = main(["annotate", str(tmp_path / "in.png"), "-q", "the bright half", "-o", str(out),
                 "--model", "any-name", "--backend", "brightness", "--device", "cpu", "--no-comp"])
    assert code == 0, capsys.readouterr().err
    assert np.asarray(Image.open(out))[:, 24:].mean() > 200
    BACKENDS.unregister("brightness")
    code = main(["annotate", str(tmp_path / "in.png"), "-q", "x", "-o", str(out), "--model", "any-name",
                 "--backend", "brightness", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "error: unknown backend 'brightness'" in err and "Traceback" not in err


def fake_distribution(root: Path, group: str, name: str, target: str, module: str, source: str) -> None:
    """An installed distribution on ``root``: a module and a dist-info folder with one entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / "attnprompt_toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: attnprompt-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")


def test_a_backend_installed_as_an_entry_point_is_found(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "attnprompt.auxiliaries", "toy-installed", "toy_backend_plugin:load",
                      "toy_backend_plugin", f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_extensions import load_brightness as load
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy-installed" in BACKENDS and "toy-installed" in BACKENDS.names()
    prompter = Prompter("whatever", backend="toy-installed", device="cpu", comp_layer=None)
    assert type(prompter.auxiliary).__name__ == "Brightness"


class ToyFamily(Family):
    model_types = ("toy_vl",)
    model_class = "LlavaForConditionalGeneration"

    def grids(self, aux, inputs):  # type: ignore[no-untyped-def]
        return [Grid(0, 1, 1)]


def test_lvlm_families_are_explicit_registered_or_installed(tmp_path, monkeypatch):
    from attnprompt.auxiliary.lvlm_qwen2_vl import Qwen2VL, Qwen25VL

    # Qwen2.5-VL has its own class whatever was imported first
    assert type(family_for("qwen2_5_vl")) is Qwen25VL and type(family_for("qwen2_vl")) is Qwen2VL
    assert family_for("toy_vl") is None
    register_family(ToyFamily)
    try:
        assert isinstance(family_for("toy_vl"), ToyFamily)
    finally:
        FAMILIES.unregister("toy_vl")
    fake_distribution(tmp_path, "attnprompt.lvlm_families", "toy_vl2", "toy_family_plugin:Toy",
                      "toy_family_plugin", """
        from attnprompt.auxiliary.families import Family, Grid

        class Toy(Family):
            model_types = ("toy_vl2",)
            model_class = "LlavaForConditionalGeneration"

            def grids(self, aux, inputs):
                return [Grid(0, 1, 1)]
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert type(family_for("toy_vl2")).__name__ == "Toy"


def test_a_benchmark_and_a_condition_are_added_without_editing_the_package(tmp_path):
    from attnprompt.bench.benchmarks import BENCHMARKS, load_benchmark, register_benchmark
    from attnprompt.bench.benchmarks.common import BenchmarkSpec
    from attnprompt.bench.conditions import CONDITIONS, Condition, get_conditions, register_condition
    from attnprompt.bench.items import Item, Score
    from attnprompt.bench.run import score_answers

    def read_colors(data, *, limit=None, prompt_suffix="\nOne word."):
        return [Item.asking("1", str(Path(data) / "a.png"), "What color is it?", prompt_suffix, ("red",))][:limit]

    def score_colors(items, answers, judge=None):
        right = [float(answers[it.id].strip().lower() == it.answers[0]) for it in items]
        return Score(overall=100.0 * sum(right) / len(right))

    register_benchmark(BenchmarkSpec("colors", read_colors, "toy colours", ("a.png",), "DIR/a.png", "colors",
                                     "\nOne word.", "", score=score_colors))
    try:
        [item] = load_benchmark("colors", tmp_path)
        assert item.query == "What color is it?" and item.question == "What color is it?\nOne word."
        assert score_answers("colors", [item], {"1": "Red"}).overall == 100.0
    finally:
        BENCHMARKS.pop("colors")

    register_condition(Condition("api-clip+brief", "clip", "{question} Be brief.", "CLIP prompt, brief answers"))
    try:
        [brief] = get_conditions("api-clip+brief")
        assert brief.mask == "clip" and brief.prompt(item.question) == item.question + " Be brief."
    finally:
        CONDITIONS.pop("api-clip+brief")
