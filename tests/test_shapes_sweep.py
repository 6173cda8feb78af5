"""scripts/sweep_shapes_clip.py: how shapes-clip is chosen (train recipes x seeds, rank on validation)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sweep_shapes_clip.py"


def _sweep():
    spec = importlib.util.spec_from_file_location("sweep_shapes_clip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(cls, agnostic, comp, inverted, uniform=0.06):
    per_seed = {"psi_cls all layers": {"color+shape": cls, "color": cls, "all": cls},
                "baseline: query-agnostic": {"color+shape": agnostic, "color": agnostic, "all": agnostic},
                "psi_comp not inverted": {"all": comp}, "psi_comp inverted": {"all": inverted},
                "baseline: uniform": {"all": uniform}}
    return {"999": per_seed, "2024": per_seed}


def test_ranking_keeps_runs_that_clear_the_bars_and_orders_them_by_the_raw_complementary_map():
    sweep = _sweep()
    runs = [
        {"recipe": "a", "seed": 0, "folder": "a0", "scores": _scores(0.70, 0.25, 0.09, 0.30)},
        {"recipe": "a", "seed": 1, "folder": "a1", "scores": _scores(0.70, 0.25, 0.02, 0.30)},
        {"recipe": "b", "seed": 0, "folder": "b0", "scores": _scores(0.48, 0.20, 0.00, 0.30)},  # psi_cls near 0.45
        {"recipe": "b", "seed": 1, "folder": "b1", "scores": _scores(0.70, 0.34, 0.00, 0.30)},  # under 2x agnostic
        {"recipe": "c", "seed": 0, "folder": "c0", "scores": _scores(0.70, 0.25, 0.00, 0.05)},  # inverted <= uniform
    ]
    summary = sweep.summarise(runs, margin=0.05)
    assert [r["folder"] for r in summary["ranked"]] == ["a1", "a0"]
    assert summary["recipes"]["a"] == {"runs": 2, "qualify": 2, "comp_mean": 0.055, "comp_max": 0.09,
                                       "comp_min": 0.02, "cls_c+s_mean": 0.7}
    assert summary["recipes"]["b"]["qualify"] == 0 and summary["recipes"]["c"]["qualify"] == 0


def test_sweep_trains_scores_and_keeps_the_best(tmp_path):
    out = tmp_path / "sweep"
    paths = [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--recipes", "cpu", "--seeds", "1", "--slots", "1",
         "--val-scenes", "4", "--margin", "-10", "--keep", "1",
         "--extra", "--steps", "2", "--pool", "16", "--batch-size", "8", "--refresh", "0"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = (out / "results.jsonl").read_text().splitlines()
    run = json.loads(line)
    assert (run["recipe"], run["seed"]) == ("cpu", 0)
    assert set(run["scores"]) == {"999", "2024", "31337"}  # the validation seeds, never the test seed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipes"]["cpu"]["runs"] == 1
    assert [r["folder"] for r in summary["ranked"]] == [run["folder"]]  # a margin of -10 lets any run qualify
    kept = out / "best" / "0-cpu-s0"
    assert (kept / "model.safetensors").is_file() and (kept / "train.log").is_file()
    log = [json.loads(x) for x in (out / "runs" / "cpu-s0.log").read_text().splitlines()]
    assert log[-1]["summary"]["steps"] == 2  # --extra overrides the recipe's 905 steps
