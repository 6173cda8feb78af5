"""The whole command line on shapes scenes written in two benchmark layouts (POPE and MMMU-like),
with the shipped shapes-llava as target and shapes-clip as auxiliary: a few items, offline."""

from __future__ import annotations

import json
import warnings

import pytest

from attnprompt.bench.datasets import BenchmarkDataWarning, load_data
from attnprompt.bench.scorers import parse_yes_no
from attnprompt.cli import main
from attnprompt.shapes.folders import write_folder


def _answers(run, condition="original") -> dict[str, str]:
    lines = (run / "answers" / f"{condition}.jsonl").read_text().splitlines()
    return {r["id"]: r["answer"] for r in map(json.loads, lines)}


def test_shapes_in_pope_and_mmmu_layouts_through_the_cli(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    pope = write_folder("pope", tmp_path / "pope", 2, split="validation")
    mmmu = write_folder("mmmu", tmp_path / "mmmu", 1, split="validation")
    common = ["--target", "shapes-llava", "--aux-clip", "shapes-clip", "--conditions", "original,api-clip",
              "--device", "cpu", "--masks-dir", str(tmp_path / "masks"), "--quiet"]

    assert main(["eval", "--benchmark", "pope", "--data", str(pope), "--option", "splits=random",
                 "--out", str(tmp_path / "run-pope"), *common]) == 0
    scores = json.loads((tmp_path / "run-pope" / "scores.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BenchmarkDataWarning)
        items = load_data("pope", pope, splits="random")
    assert len(items) == 4 and scores["n_items"] == 4
    for condition in ("original", "api-clip"):
        result = scores["conditions"][condition]
        assert (result["answered"], result["errors"]) == (4, 0)
        answers = _answers(tmp_path / "run-pope", condition)
        right = sum(parse_yes_no(answers[it.id]) == it.answers[0] for it in items)  # POPE's own rule
        assert result["overall"] == pytest.approx(100.0 * right / 4)
        assert set(result["official"]) >= {"accuracy (%)", "random: precision (%)", "random: yes-ratio (%)"}
    assert scores["masks"]["computed"] == 4 and scores["masks"]["reused"] == 0

    assert main(["eval", "--benchmark", "mmmu", "--data", str(mmmu), "--out", str(tmp_path / "run-mmmu"),
                 *common]) == 0
    scores = json.loads((tmp_path / "run-mmmu" / "scores.json").read_text())
    assert scores["n_items"] == 3 and scores["metric"] == "accuracy (%)"
    original = scores["conditions"]["original"]
    assert original["extra"]["n_multiple_choice"] == 2 and original["extra"]["n_open"] == 1
    assert set(original["per_category"]) == {"Art and Design", "Science"}
    assert scores["masks"]["computed"] == 3
    md = (tmp_path / "run-mmmu" / "table.md").read_text()
    assert "## mmmu: official metrics" in md and "| Math: accuracy (%) |" in md
    assert "mmmu accuracy (%)" in (tmp_path / "run-mmmu" / "table.csv").read_text().splitlines()[0]
