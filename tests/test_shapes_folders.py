"""Held-out shapes scenes in benchmark layouts: read back by the benchmarks' own readers,
deterministic, and with validation and test scenes that never overlap."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attnprompt import AttnPromptError
from attnprompt.bench.benchmarks import load_benchmark
from attnprompt.io import load_image
from attnprompt.shapes import make_scene
from attnprompt.shapes.folders import (
    ITEMS_FILE, SPLIT_SEEDS, main, read_item_kinds, read_items, scene_seeds, write_folder, write_pope, write_vizwiz,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pope_folder_is_read_by_the_pope_reader(tmp_path):
    root = write_pope(tmp_path / "pope", 4, split="validation")
    items = load_benchmark("pope", root)
    assert len(items) == 4 * 2 * 3  # a yes and a no per scene and split
    for split in ("random", "popular", "adversarial"):
        labels = [it.answers[0] for it in items if it.category == split]
        assert labels.count("yes") == labels.count("no") == 4
    kinds = read_item_kinds(root)
    assert set(kinds) == {it.id for it in items}
    assert {kinds[it.id] for it in items if it.answers[0] == "yes"} == {"present"}
    assert {kinds[it.id] for it in items if it.answers[0] == "no"} == {f"absent ({s})" for s in
                                                                     ("random", "popular", "adversarial")}
    records = [json.loads(line) for line in (root / ITEMS_FILE).read_text().splitlines()]
    for it, rec in zip(items, records):
        scene = make_scene(rec["scene_seed"], n_objects=(3, 5), clutter=2.0)
        assert load_image(it.image).tobytes() == scene.image.tobytes()
        named = re.match(r"is there an? (.+?)\?", it.question).group(1)
        present = named in {o.name for o in scene.objects}
        assert present == (it.answers[0] == "yes"), (it.question, [o.name for o in scene.objects])
        assert (rec["target"] is not None) == present and (not present or scene.objects[rec["target"]].name == named)
        if it.category == "adversarial" and not present:  # the near miss shares a colour with the scene
            assert named.split()[0] in {o.color for o in scene.objects}


def test_vizwiz_folder_is_read_by_the_vizwiz_reader(tmp_path):
    root = write_vizwiz(tmp_path / "vizwiz", 3, split="test")
    items = load_benchmark("vizwiz", root)
    kinds = read_item_kinds(root)
    assert [it.id for it in items] == list(kinds)
    assert set(kinds.values()) <= {"color+shape", "color", "shape", "presence"} and "presence" in kinds.values()
    records = {r["id"]: r for r in read_items(root)}
    for it in items:
        assert len(it.answers) == 10 and len(set(it.answers)) == 1
        rec = records[it.id]
        scene = make_scene(rec["scene_seed"], n_objects=(3, 5), clutter=2.0)
        [query] = [q for q in scene.queries() if q.text == it.question.split("\n")[0]]
        assert (query.target, query.answer) == (rec["target"], it.answers[0])
        assert it.category == ("yes/no" if kinds[it.id] == "presence" else "other")
    only = write_vizwiz(tmp_path / "colour", 3, split="test", kinds=("color",))
    assert set(read_item_kinds(only).values()) == {"color"}


def test_folders_are_deterministic_and_splits_differ(tmp_path):
    a = _files(write_folder("vizwiz", tmp_path / "a", 2, split="validation"))
    b = _files(write_folder("vizwiz", tmp_path / "b", 2, split="validation"))
    c = _files(write_folder("vizwiz", tmp_path / "c", 2, split="test"))
    assert a == b
    assert a["val.json"] != c["val.json"]


def test_validation_test_and_training_scenes_are_disjoint():
    val, test = scene_seeds(2000, "validation"), scene_seeds(2000, "test")
    train = scene_seeds(2000, 1000) | scene_seeds(2000, 1001)  # train_llava's datasets
    assert not val & test and not (val | test) & train
    assert SPLIT_SEEDS["validation"] != SPLIT_SEEDS["test"]


def test_bad_requests_fail_with_one_message(tmp_path, capsys):
    with pytest.raises(AttnPromptError, match="unknown split"):
        write_pope(tmp_path / "x", 2, split="train")
    with pytest.raises(AttnPromptError, match="no shapes writer"):
        write_folder("mmvet", tmp_path / "x", 2)
    with pytest.raises(AttnPromptError, match="at least 1"):
        write_vizwiz(tmp_path / "x", 0)
    assert main(["pope", str(tmp_path / "cli"), "--scenes", "2", "--split", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown split")
    assert main(["pope", str(tmp_path / "cli"), "--scenes", "2", "--split", "7"]) == 0
    assert "12 questions" in capsys.readouterr().out
