"""``attnprompt tune`` end to end through the CLI with the shipped tiny models on a tiny shapes
folder: the grid, the scores, resume without a single new answer, the preset file, the plots and
the page; and the grid's parsing and planning."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from attnprompt import AttnPromptError, MaskConfig
from attnprompt.bench.tune import _combination, parse_grid, plan
from attnprompt.cli import main
from attnprompt.shapes.folders import write_vizwiz


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_vizwiz(tmp_path_factory.mktemp("shapes") / "vizwiz", 2, split="validation", kinds=("shape", "color"))


def _tune(folder, out, *extra: str) -> list[str]:
    return ["tune", "--benchmark", "vizwiz", "--data", str(folder), "--target", "shapes-llava",
            "--aux-clip", "shapes-clip", "--out", str(out), "--limit", "6", "--option", "prompt_suffix=",
            "--device", "cpu", "--quiet", "--examples", "2", *extra]


def test_tune_end_to_end_resume_and_outputs(folder, tmp_path, monkeypatch, capsys):
    from attnprompt.auxiliary.lvlm import LvlmAuxiliary

    calls = []
    answer = LvlmAuxiliary.answer

    def counting(self, images, queries, **kw):
        calls.append(len(images))
        return answer(self, images, queries, **kw)

    monkeypatch.setattr(LvlmAuxiliary, "answer", counting)
    out = tmp_path / "tune"
    argv = _tune(folder, out, "--grid", "kernel=1,3", "--grid", "style=alpha,blur")
    assert main(argv) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "tune.json").read_text())
    names = [r["name"] for r in doc["settings"]]
    # the default preset's kernel 3 on a 24 x 24 grid is 1 on shapes-clip's 8 x 8 grid, its style alpha
    assert names[:3] == ["base", "kernel=3", "style=blur"]
    for r in doc["settings"]:
        assert r["n"] == 6 and r["ci"][0] <= r["diff"] <= r["ci"][1]
        assert abs(r["score"] - r["original"] - r["diff"]) < 1e-3
        assert set(r["per_kind"]) <= {"shape", "color"}
    assert doc["chosen"] in names and f"chosen: {doc['chosen']}" in printed
    assert calls, "the target answered"

    preset = json.loads((out / "preset.json").read_text())
    assert preset["format"] == "attnprompt-preset" and preset["version"] == 1 and preset["kind"] == "clip"
    chosen = next(r for r in doc["settings"] if r["name"] == doc["chosen"])
    assert MaskConfig(**preset["settings"]) == MaskConfig(**chosen["config"])
    # the preset file loads with --preset FILE and remakes the chosen setting's prompt exactly
    from attnprompt.bench.benchmarks import load_benchmark

    item = load_benchmark("vizwiz", folder, limit=1, prompt_suffix="")[0]
    remade = tmp_path / "remade.png"
    assert main(["annotate", item.image, "-q", item.question, "-o", str(remade), "--model", "shapes-clip",
                 "--preset", str(out / "preset.json"), "--device", "cpu", "--quiet"]) == 0
    stored = out / chosen["examples"][item.id]
    assert Image.open(remade).tobytes() == Image.open(stored).tobytes()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "ablation.png" in page and page.count("<img class=s") >= 4 and "preset.json" in page
    assert "| kernel=3" in (out / "table.md").read_text()

    # rerun: every setting reused, not one new answer or mask
    calls.clear()
    assert main(argv) == 0
    assert calls == [] and json.loads((out / "tune.json").read_text())["settings"] == doc["settings"]
    # a narrower grid around the same base reuses the same folders too
    assert main(_tune(folder, out, "--grid", "style=blur")) == 0
    assert calls == []


def test_tune_refuses_bad_grids_and_another_limit(folder, tmp_path, capsys):
    assert main(_tune(folder, tmp_path / "a", "--grid", "colour=1,2")) == 2
    assert "unknown grid knob 'colour'" in capsys.readouterr().err
    assert main(_tune(folder, tmp_path / "a", "--grid", "kernel=2")) == 2
    assert "kernel size must be a positive odd integer" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tune.json").write_text(json.dumps({"run": {"limit": 99}}))
    assert main(_tune(folder, tmp_path / "b", "--grid", "gray=0")) == 2
    assert "another limit" in capsys.readouterr().err


def test_parse_grid_and_plan():
    grid = parse_grid(["layers=-1,-3..-1,all", "comp_layer=-2,none;enhance=1,5", "geometry=tiled"], num_layers=6)
    assert grid == {"layers": [(-1,), (-3, -2, -1), (0, 1, 2, 3, 4, 5)], "comp_layer": [-2, None],
                    "enhance": [1, 5], "geometry": ["tiled"]}
    base = MaskConfig(layers=(-2,), comp_layer=-2, enhance=5.0, geometry="aligned")
    names = [s.name for s in plan(base, grid, lambda c: None)]
    assert names == ["base", "layers=-1", "layers=-3..-1", "layers=0..5", "comp_layer=none", "enhance=1",
                     "geometry=tiled"]
    with pytest.raises(AttnPromptError, match="KNOB=V1,V2"):
        parse_grid(["kernel"], 6)
    with pytest.raises(AttnPromptError, match="twice"):
        parse_grid(["kernel=1", "kernel=3"], 6)


def test_combination_takes_each_knobs_best_value():
    rows = [{"knob": None, "diff": 0.0}, {"knob": "kernel", "value": 1, "diff": 2.0},
            {"knob": "kernel", "value": 5, "diff": 1.0}, {"knob": "gray", "value": 200, "diff": 0.5},
            {"knob": "enhance", "value": 1.0, "diff": -1.0}]
    combo = _combination(MaskConfig(), rows)
    assert combo is not None and dict(combo.overrides) == {"kernel": 1, "gray": 200}
    assert _combination(MaskConfig(), rows[:3]) is None  # one knob moved: already measured


def test_confident_combination_keeps_the_more_confident_answer(folder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--benchmark", "vizwiz", "--data", str(folder), "--target", "shapes-llava",
                 "--aux-clip", "shapes-clip", "--conditions", "original,api-clip,api-clip-or-original",
                 "--out", str(out), "--limit", "6", "--option", "prompt_suffix=", "--device", "cpu", "--quiet"]) == 0
    assert "api-clip-or-original" in capsys.readouterr().out

    def answers(name):
        return {r["id"]: r for r in map(json.loads, (out / "answers" / f"{name}.jsonl").read_text().splitlines())}

    original, prompted, combined = answers("original"), answers("api-clip"), answers("api-clip-or-original")
    assert len(combined) == 6
    for key, r in combined.items():
        assert r["original_answer"] == original[key]["answer"] and r["prompted_answer"] == prompted[key]["answer"]
        keep = r["confidence"]["prompted"] >= r["confidence"]["original"]
        assert r["kept"] == ("prompted" if keep else "original")
        assert r["answer"] == (r["prompted_answer"] if keep else r["original_answer"])
        assert r["confidence"]["original"] <= 0.0


def test_parse_grid_reads_booleans_as_booleans():
    # "false" used to reach MaskConfig as the (truthy) string "false"
    assert parse_grid(["strict_order=true,false"], num_layers=6) == {"strict_order": [True, False]}
