"""Regression tests of issue 16: results that stay true after reruns, and hostile files, strings,
options and model folders that get one ``error:`` line (or one per-row error), never a traceback."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image

from tests.conftest import import_or_fail_in_ci

from attnprompt import AttnPromptError
from attnprompt.cli import main
from attnprompt.io import append_jsonl, confined_path, load_json, read_jsonl_tolerant, read_manifest

DEEP = b'{"id": "x", "image": "a.png", "question": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def one_line_error(capsys, rc: int, *needles: str, code: int = 2) -> str:
    out = capsys.readouterr()
    assert rc == code, out
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), out.err
    assert "Traceback" not in out.err
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


def _answers(run: Path, condition: str) -> dict[str, str]:
    return {r["id"]: r["answer"] for r in read_jsonl_tolerant(run / "answers" / f"{condition}.jsonl")}


# -- defect 1: a rerun with other settings never reports stale answers --------------------------


@pytest.fixture(scope="module")
def pope_dir(tmp_path_factory) -> Path:
    from attnprompt.shapes.folders import write_pope

    out = tmp_path_factory.mktemp("pope")
    write_pope(out, n_scenes=3, split="validation")
    return out


@pytest.fixture(scope="module")
def second_clip(tmp_path_factory) -> Path:
    from attnprompt.testing import make_tiny_clip_dir

    return make_tiny_clip_dir(tmp_path_factory.mktemp("other") / "clip", seed=7, layers=4, image_size=32,
                              patch_size=8)


def _eval(capsys, pope: Path, out: Path, *extra: str) -> int:
    rc = main(["eval", "--benchmark", "pope", "--data", str(pope), "--target", "shapes-llava", "--conditions",
               "original,api-clip", "--limit", "6", "--out", str(out), "--device", "cpu", "--quiet", *extra])
    capsys.readouterr()
    return rc


def test_rerun_with_another_auxiliary_recomputes(capsys, tmp_path, pope_dir, second_clip):
    """The issue's scenario: the same --out with --aux-clip pointing at another CLIP folder."""
    run, fresh = tmp_path / "R", tmp_path / "F"
    assert _eval(capsys, pope_dir, run, "--aux-clip", "shapes-clip") == 0
    first = _answers(run, "api-clip")
    assert _eval(capsys, pope_dir, run, "--aux-clip", str(second_clip)) == 0
    assert _eval(capsys, pope_dir, fresh, "--aux-clip", str(second_clip)) == 0
    # the rerun reports exactly what a fresh run with the new auxiliary reports
    assert _answers(run, "api-clip") == _answers(fresh, "api-clip")
    assert json.loads((run / "scores.json").read_text())["conditions"] == \
        json.loads((fresh / "scores.json").read_text())["conditions"]
    # one current record per id, and each auxiliary has its own masks in the store
    assert len((run / "answers" / "api-clip.jsonl").read_text().splitlines()) == 6
    assert len(list((run / "masks").glob("*.png"))) == 12
    assert first.keys() == _answers(run, "api-clip").keys()
    # and back: the first answers again (recomputed or from the answer cache), not the second's
    assert _eval(capsys, pope_dir, run, "--aux-clip", "shapes-clip") == 0
    assert _answers(run, "api-clip") == first


def test_rerun_with_other_generation_settings_recomputes(capsys, tmp_path, pope_dir):
    run, fresh = tmp_path / "R", tmp_path / "F"
    assert _eval(capsys, pope_dir, run, "--aux-clip", "shapes-clip") == 0
    assert _eval(capsys, pope_dir, run, "--aux-clip", "shapes-clip", "--max-new-tokens", "1") == 0
    assert _eval(capsys, pope_dir, fresh, "--aux-clip", "shapes-clip", "--max-new-tokens", "1") == 0
    for condition in ("original", "api-clip"):
        assert _answers(run, condition) == _answers(fresh, condition)


def test_two_auxiliary_folders_with_one_name_get_their_own_masks(tmp_path, tiny_clip_dir):
    """Masks are keyed by the auxiliary's identity (its real folder and files), not its name."""
    from attnprompt import Prompter
    from attnprompt.bench.masks import auxiliary_identity, mask_key
    from attnprompt.testing import make_tiny_clip_dir

    twin = make_tiny_clip_dir(tmp_path / "x" / tiny_clip_dir.name, seed=3, layers=4, image_size=32, patch_size=8)
    keys = {mask_key("img", "q", auxiliary_identity(Prompter(str(d), device="cpu"))) for d in (tiny_clip_dir, twin)}
    assert len(keys) == 2
    gray = Prompter(str(tiny_clip_dir), device="cpu", gray=128)
    assert mask_key("img", "q", auxiliary_identity(gray)) not in keys


def test_changed_endpoint_or_max_tokens_asks_again(capsys, tmp_path, tiny_clip_dir, pope_dir):
    import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")
    from attnprompt.testing_server import FakeChatServer

    run = tmp_path / "R"
    base = ["eval", "--benchmark", "pope", "--data", str(pope_dir), "--target", "m", "--conditions", "original",
            "--limit", "4", "--out", str(run), "--quiet"]
    with FakeChatServer(responder=lambda b: "yes") as one, FakeChatServer(responder=lambda b: "no") as two:
        assert main([*base, "--endpoint", one.base_url]) == 0
        assert main([*base, "--endpoint", two.base_url]) == 0
        assert len(two.chat_requests) == 4 and set(_answers(run, "original").values()) == {"no"}
        assert main([*base, "--endpoint", two.base_url, "--max-new-tokens", "7"]) == 0
        assert len(two.chat_requests) == 8
        assert {r.json["max_tokens"] for r in two.chat_requests[4:]} == {7}
        assert main([*base, "--endpoint", two.base_url, "--max-new-tokens", "7"]) == 0
        assert len(two.chat_requests) == 8  # the same settings again: nothing new to ask
    capsys.readouterr()


# -- defect 2: lone surrogates --------------------------------------------------------------------


def test_surrogates_in_manifest_rows(tmp_path, tiny_clip_dir, capsys):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    rows = [{"id": "q", "image": "a.png", "question": "what \ud800 is it"},
            {"id": "id\udc80x", "image": "a.png", "question": "what is it"},
            {"id": "ok", "image": "a.png", "question": "what is it"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # \u escapes
    args = ["annotate", "--manifest", str(tmp_path / "m.jsonl"), "--out-dir", str(tmp_path / "out"),
            "--model", str(tiny_clip_dir), "--device", "cpu", "--quiet"]
    assert main(args) == 1
    records = read_jsonl_tolerant(tmp_path / "out" / "manifest.jsonl")
    by_id = {r["id"]: r for r in records}
    assert by_id["q"]["status"] == "error" and "lone surrogate" in by_id["q"]["error"]
    assert by_id["id\udc80x"]["status"] == "ok" and by_id["ok"]["status"] == "ok"
    assert "\\udc80" in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8")  # escaped JSON
    assert main(args) == 1  # a rerun reads the records back and skips the finished rows
    assert "2 already done" in capsys.readouterr().out


def test_non_utf8_query_argument_is_one_line(capsys, tmp_path, tiny_clip_dir):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    query = os.fsdecode(b"what \xff is it")  # how Python hands a non-UTF-8 argv byte over
    rc = main(["annotate", str(tmp_path / "a.png"), "-q", query, "--model", str(tiny_clip_dir), "--device", "cpu",
               "-o", str(tmp_path / "o.png")])
    one_line_error(capsys, rc, "query 0 is not valid Unicode")


def test_append_jsonl_round_trips_surrogates(tmp_path):
    append_jsonl(tmp_path / "r.jsonl", {"id": "a\udc80", "error": None})
    assert read_jsonl_tolerant(tmp_path / "r.jsonl") == [{"id": "a\udc80", "error": None}]


# -- defect 3: deeply nested JSON ----------------------------------------------------------------


def test_deep_json_is_a_clear_error_everywhere(tmp_path, capsys):
    assert "nested too deeply" in str(pytest.raises(AttnPromptError, load_json, DEEP, "x").value)
    # input manifest: one bad row
    (tmp_path / "m.jsonl").write_bytes(DEEP + b"\n")
    [row] = read_manifest(tmp_path / "m.jsonl")
    assert row.error == "invalid JSON (nested too deeply)"
    # output manifest: a damaged middle line names its line
    (tmp_path / "o.jsonl").write_bytes(DEEP + b'\n{"id": "a"}\n')
    with pytest.raises(AttnPromptError, match="line 1: malformed line: invalid JSON"):
        read_jsonl_tolerant(tmp_path / "o.jsonl")
    # answer cache: the line is skipped
    from attnprompt.targets import AnswerCache

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "answers.jsonl").write_bytes(DEEP + b"\n" + json.dumps({"key": "k", "answer": "a"}).encode()
                                                       + b"\n")
    cache = AnswerCache(tmp_path / "cache")
    assert cache.get("k") == "a" and cache.skipped_lines == 1
    # benchmark files: a bad JSON-lines row is skipped with a warning; a JSON file is one error
    from attnprompt.bench.datasets import load_benchmark
    from attnprompt.shapes.folders import write_pope, write_vizwiz

    write_pope(tmp_path / "pope", n_scenes=1)
    with open(tmp_path / "pope" / "coco_pope_random.json", "ab") as f:
        f.write(DEEP + b"\n")
    with pytest.warns(UserWarning, match="nested too deeply"):
        assert len(load_benchmark("pope", tmp_path / "pope", splits=["random"])) == 2
    write_vizwiz(tmp_path / "vizwiz", n_scenes=1)
    (tmp_path / "vizwiz" / "val.json").write_bytes(b"[" * 200_000)
    with pytest.raises(AttnPromptError, match="not valid JSON"):
        load_benchmark("vizwiz", tmp_path / "vizwiz")
    # scores.json of a run folder
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "scores.json").write_bytes(DEEP)
    one_line_error(capsys, main(["report", str(tmp_path / "run")]), "nested too deeply")


# -- defect 9: eval --device / --dtype reach the CLIP auxiliary -----------------------------------


def test_eval_device_and_dtype_reach_the_clip_auxiliary(tmp_path, tiny_clip_dir, monkeypatch, pope_dir):
    import attnprompt.bench.run as run_module
    from attnprompt.prompter import Prompter

    seen = []

    class Spy(Prompter):
        def __init__(self, *args, **kwargs):
            seen.append((kwargs.get("device"), kwargs.get("dtype")))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("attnprompt.prompter.Prompter", Spy)

    class Echo:
        name = "echo"

        def answer(self, images, prompts):
            return ["yes"] * len(prompts)

    run_module.evaluate("pope", pope_dir, Echo(), "original,api-clip", tmp_path / "R", clip=str(tiny_clip_dir),
                        limit=2, progress=False, device="cpu", dtype="bfloat16", n_boot=10)
    assert seen == [("cpu", "bfloat16")]
    assert len(list((tmp_path / "R" / "masks").glob("*.png"))) == 2


# -- defect 10: option checks ---------------------------------------------------------------------


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--max-new-tokens", "-5"),
                                          ("--max-new-tokens", "0"), ("--limit", "0"), ("--concurrency", "0")])
def test_eval_options_checked_before_work(capsys, tmp_path, option, value):
    rc = main(["eval", "--benchmark", "pope", "--data", str(tmp_path), "--target", "shapes-llava",
               "--out", str(tmp_path / "R"), option, value])
    one_line_error(capsys, rc, option, "at least 1")
    assert not (tmp_path / "R").exists()


def test_huge_layer_range_is_refused_without_building_it(capsys, tmp_path):
    import time

    start = time.monotonic()
    rc = main(["annotate", "x.png", "-q", "q", "--layer", "0..1000000000", "--model", str(tmp_path)])
    one_line_error(capsys, rc, "0..1000000000")
    assert time.monotonic() - start < 2.0


# -- defect 11: damaged model folders -------------------------------------------------------------


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("damage", ["truncated", "header", "vocab", "pickle"])
def test_damaged_model_folder_is_one_line_naming_folder_and_file(capsys, tmp_path, tiny_clip_dir, damage):
    import torch

    model = _copy_model(tiny_clip_dir, tmp_path / "m")
    weights = model / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        name = "model.safetensors"
    elif damage == "header":
        weights.write_bytes(struct.pack("<Q", 2**62) + weights.read_bytes()[8:])
        name = "model.safetensors"
    elif damage == "vocab":
        (model / "vocab.json").write_text('{"a": ')
        name = "vocab.json"
    else:  # a pickle-only checkpoint that weights_only refuses (a class it does not allow)
        weights.unlink()
        torch.save({"weights": Path("x")}, model / "pytorch_model.bin")
        name = "pytorch_model.bin"
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    rc = main(["annotate", str(tmp_path / "a.png"), "-q", "q", "--model", str(model), "--device", "cpu",
               "-o", str(tmp_path / "o.png")])
    one_line_error(capsys, rc, str(model), name)


# -- defect 12 -----------------------------------------------------------------------------------


def test_out_dir_that_is_a_file(capsys, tmp_path, tiny_clip_dir):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": 1, "image": "a.png", "question": "q"}) + "\n")
    (tmp_path / "file").write_text("")
    rc = main(["annotate", "--manifest", str(tmp_path / "m.jsonl"), "--out-dir", str(tmp_path / "file"),
               "--model", str(tiny_clip_dir), "--device", "cpu"])
    one_line_error(capsys, rc, str(tmp_path / "file"), "is a file")


@pytest.mark.parametrize("content", ["{}", "[]", '{"benchmark": "pope", "target": "t", "conditions": {"a": 1}, '
                                                 '"comparisons": {}}', "null"])
def test_report_of_damaged_scores(capsys, tmp_path, content):
    (tmp_path / "scores.json").write_text(content)
    one_line_error(capsys, main(["report", str(tmp_path)]), "scores.json")


# -- defect 13: the table and the exit status show failed items -----------------------------------


def test_eval_shows_answered_of_total_and_exits_1(capsys, tmp_path):
    import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")
    from attnprompt.shapes.folders import write_pope
    from attnprompt.testing_server import FakeChatServer

    write_pope(tmp_path / "pope", n_scenes=4)
    broken = sorted((tmp_path / "pope" / "images").iterdir())[0]
    broken.write_bytes(b"not an image")
    with FakeChatServer(responder=lambda b: "yes") as server:
        rc = main(["eval", "--benchmark", "pope", "--data", str(tmp_path / "pope"), "--target", "m", "--endpoint",
                   server.base_url, "--conditions", "original", "--limit", "8", "--out", str(tmp_path / "R"),
                   "--quiet"])
    out = capsys.readouterr()
    assert rc == 1 and "some items failed (original: 2 of 8)" in out.err
    header, _, row = out.out.splitlines()[:3]
    assert "pope answered" in header and "| 6/8 |" in row


# -- defect 14: rows without an id carry their line; an empty question names its row ---------------


def test_malformed_rows_report_their_line(capsys, tmp_path, tiny_clip_dir):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_bytes(b'{"id": "ok", "image": "a.png", "question": "q"}\n'
                                       b"\xff\xfe\n"
                                       b'{"id": "e", "image": "a.png", "question": "  "}\n')
    rc = main(["annotate", "--manifest", str(tmp_path / "m.jsonl"), "--out-dir", str(tmp_path / "o"),
               "--model", str(tiny_clip_dir), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "failed: line 2: not valid UTF-8" in err
    records = read_jsonl_tolerant(tmp_path / "o" / "manifest.jsonl")
    assert {r["line"] for r in records if r["status"] == "error"} == {2, 3}
    assert "failed: e: empty 'question'" in err and "query 0" not in err


# -- defect 15: paths read from a run folder stay inside it ---------------------------------------


def test_confined_path(tmp_path):
    (tmp_path / "in.png").write_bytes(b"")
    assert confined_path(tmp_path, "in.png") == (tmp_path / "in.png").resolve()
    for bad in ("/etc/passwd", "../x.png", "a/../../x.png", "", None, 3):
        with pytest.raises(AttnPromptError):
            confined_path(tmp_path, bad)
    os.symlink("/etc", tmp_path / "link")
    with pytest.raises(AttnPromptError, match="outside"):
        confined_path(tmp_path, "link/passwd")


def test_masks_manifest_cannot_point_outside(tmp_path, tiny_clip_dir, pope_dir):
    from attnprompt import Prompter
    from attnprompt.bench.datasets import load_benchmark
    from attnprompt.bench.masks import make_masks

    items = load_benchmark("pope", pope_dir, limit=2, splits=["random"])
    wanted = [(it.image, it.query) for it in items]
    prompter = Prompter(str(tiny_clip_dir), device="cpu")
    folder = tmp_path / "masks"
    made, _, _ = make_masks(wanted, prompter, folder, progress=False)
    assert all(isinstance(v, str) for v in made)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    before = secret.read_bytes()
    forged = read_jsonl_tolerant(folder / "manifest.jsonl")
    forged[0]["output"] = str(secret)
    forged[1]["output"] = "../secret.png"
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forged))
    made, _, _ = make_masks(wanted, prompter, folder, progress=False)
    # the forged records are not taken for finished work: the masks are made again, inside the folder
    assert len(made) == 2
    for path in made:
        assert isinstance(path, str) and Path(path).resolve().parent == folder.resolve()
    assert secret.read_bytes() == before
    # a record that still names an outside file is refused, never read
    records = read_jsonl_tolerant(folder / "manifest.jsonl")
    records[0]["output"] = str(secret)
    from attnprompt.bench import masks as masks_module

    with mock.patch.object(masks_module, "read_jsonl_tolerant", lambda path: records), \
            mock.patch("attnprompt.jobs.run_manifest", lambda *a, **k: mock.Mock(done=0)):
        made, _, _ = make_masks(wanted, prompter, folder, progress=False)
    refused = [m for m in made if isinstance(m, AttnPromptError)]
    assert len(refused) == 1 and "outside" in str(refused[0])
