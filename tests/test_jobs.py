"""Manifest jobs: per-row errors, safe names, resume, atomic outputs, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt.cli import main
from attnprompt.jobs import run_manifest


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        size = (40 + 8 * i, 32)
        p = folder / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def records(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines() if l.strip()]


def test_manifest_with_bad_rows_continues_and_reports(capsys, tmp_path, tiny_clip_dir):
    imgs = make_images(tmp_path, 3)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [
        {"id": "a", "image": "im0.png", "question": "what is red?"},
        {"id": "../../escape", "image": "im1.png", "question": "where is it?"},
        {"id": "b", "image": "missing.png", "question": "what?"},
        {"id": "c", "image": "broken.png", "question": "what?"},
        {"id": "d", "image": "im2.png", "question": "   "},
        {"id": "a", "image": "im1.png", "question": "duplicate id"},
        {"id": "e/f", "image": str(imgs[2]), "question": "is there a dog?"},
    ]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
    out = tmp_path / "out"
    code = main(["annotate", "--manifest", str(manifest), "--out-dir", str(out), "--model", str(tiny_clip_dir),
                 "--device", "cpu", "--batch-size", "2", "--quiet", "--save-maps"])
    assert code == 1
    recs = records(out)
    status = {}
    for r in recs:
        status.setdefault(r["id"], []).append(r["status"])
    assert status["a"] == ["ok", "error"] or sorted(status["a"]) == ["error", "ok"]
    assert status["../../escape"] == ["ok"] and status["e/f"] == ["ok"]
    assert status["b"] == ["error"] and status["c"] == ["error"] and status["d"] == ["error"]
    assert sum(1 for r in recs if r["status"] == "error") == 5  # b, c, d, duplicate a, broken json line
    for r in recs:
        if r["status"] == "ok":
            path = (out / r["output"]).resolve()
            assert path.parent == out.resolve() and path.is_file()
            assert (out / r["maps"]).is_file()
        else:
            assert r["error"] and r["output"] is None
    outputs = [r["output"] for r in recs if r["status"] == "ok"]
    assert len(set(outputs)) == len(outputs)
    assert not list(tmp_path.glob("../escape*")) and not list(out.glob("**/*.tmp*"))
    err = capsys.readouterr().err
    assert "failed" in err and "Traceback" not in err


def test_rerun_skips_finished_ids_and_resumes_after_a_crash(tmp_path, tiny_prompter, monkeypatch):
    imgs = make_images(tmp_path, 5)
    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "question"])
        for i, p in enumerate(imgs):
            writer.writerow([f"q{i}", p.name, f"what is in picture {i}?"])
    out = tmp_path / "out"

    calls = {"n": 0}
    real = tiny_prompter.attribute_loaded

    def crash_on_second_batch(images, queries, config=None, views=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a kill in the middle of the run
        return real(images, queries, config, views)

    monkeypatch.setattr(tiny_prompter, "attribute_loaded", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_manifest(tiny_prompter, manifest, out, batch_size=2, progress=False)
    first = records(out)
    assert [r["id"] for r in first] == ["q0", "q1"]
    assert sorted(p.name for p in out.glob("*.png")) == ["q0.png", "q1.png"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}

    monkeypatch.setattr(tiny_prompter, "attribute_loaded", real)
    summary = run_manifest(tiny_prompter, manifest, out, batch_size=2, progress=False)
    assert (summary.done, summary.skipped, summary.failed, summary.total) == (3, 2, 0, 5)
    assert sorted(r["id"] for r in records(out)) == [f"q{i}" for i in range(5)]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("q[01].png")} == stamps  # not redone
    again = run_manifest(tiny_prompter, manifest, out, batch_size=2, progress=False)
    assert (again.done, again.skipped) == (0, 5)


def test_a_deleted_output_is_redone(tmp_path, tiny_prompter):
    imgs = make_images(tmp_path, 2)
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"x{i}", "image": str(p), "question": "what?"}) + "\n"
                                for i, p in enumerate(imgs)))
    out = tmp_path / "out"
    run_manifest(tiny_prompter, manifest, out, progress=False)
    (out / "x1.png").unlink()
    summary = run_manifest(tiny_prompter, manifest, out, progress=False)
    assert (summary.done, summary.skipped) == (1, 1) and (out / "x1.png").is_file()


def test_batched_job_equals_one_by_one(tmp_path, tiny_prompter):
    imgs = make_images(tmp_path, 4)
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "image": str(p), "question": f"thing {i}?"}) + "\n"
                                for i, p in enumerate(imgs)))
    run_manifest(tiny_prompter, manifest, tmp_path / "b4", batch_size=4, progress=False)
    run_manifest(tiny_prompter, manifest, tmp_path / "b1", batch_size=1, progress=False, workers=1)
    for i in range(4):
        a = np.asarray(Image.open(tmp_path / "b4" / f"r{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "b1" / f"r{i}.png")).astype(int)
        assert np.abs(a - b).max() <= 1


def test_missing_manifest_is_a_clear_error(capsys, tmp_path, tiny_clip_dir):
    code = main(["annotate", "--manifest", str(tmp_path / "none.jsonl"), "--out-dir", str(tmp_path / "o"),
                 "--model", str(tiny_clip_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "none.jsonl" in err
    assert "Loading weights" not in err  # checked before any model is loaded


def test_the_model_thread_waits_for_writers_only_beyond_the_limit():
    import threading

    from attnprompt.io import ManifestRow
    from attnprompt.jobs import _Writers

    gate, written = threading.Event(), []

    def finish(row, image, view, attribution):
        gate.wait(10)  # a stalled encoder
        return f"{row.id}.png", None, None

    writers = _Writers(lambda row, status, **kw: written.append((row.id, status)), finish, threads=2, limit=4)
    rows = [ManifestRow(f"r{i}", "", "q", i + 1) for i in range(5)]
    for row in rows[:4]:
        writers.submit((row, None, None, object()))  # returns at once: within the limit
    blocked = threading.Thread(target=writers.submit, args=((rows[4], None, None, object()),))
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive() and written == []  # the fifth row waits for a free slot
    gate.set()
    blocked.join(10)
    writers.close()
    assert sorted(written) == [(f"r{i}", "ok") for i in range(5)]
