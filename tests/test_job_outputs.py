"""The output folder of a manifest job: one record per id across reruns, one job per folder (a
lock that a kill -9 does not leave stuck), stale temporaries removed, output image formats."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt.cli import main
from attnprompt.errors import AttnPromptError
from attnprompt.jobs import run_manifest
from attnprompt.outputs import LOCK_FILE, ImageEncoding, OutputFolder

REPO = Path(__file__).resolve().parents[1]


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines() if l.strip()]


def image(folder: Path, name: str, size=(48, 32), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path = folder / name
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_reruns_keep_one_record_per_id_and_replace_failed_rows(tmp_path, tiny_prompter):
    image(tmp_path, "a.png")
    rows = [
        {"id": "a", "image": "a.png", "question": "what?"},
        {"id": "b", "image": "b.png", "question": "what?"},  # missing until the third run
        {"id": "a", "image": "a.png", "question": "a second use of the id"},
        {"id": "c", "image": "a.png", "question": "   "},
    ]
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "out"
    for _ in range(2):
        summary = run_manifest(tiny_prompter, manifest, out, progress=False)
        recs = records(out)
        assert len(recs) == 5  # a, b, c, the duplicate row, the broken line: once each, every run
        assert [r["id"] for r in recs] == ["a", "b", "a", "c", ""]
        assert [r["status"] for r in recs] == ["ok", "error", "error", "error", "error"]
        assert recs[2]["duplicate_id"] is True and recs[2]["line"] == 3 and recs[4]["line"] == 5
    assert (summary.skipped, summary.failed) == (1, 4)

    image(tmp_path, "b.png", seed=1)
    summary = run_manifest(tiny_prompter, manifest, out, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 3)
    recs = records(out)
    assert [r["id"] for r in recs] == ["a", "b", "a", "c", ""]
    assert recs[1]["status"] == "ok" and (out / recs[1]["output"]).is_file() and recs[1]["error"] is None


def test_records_left_repeated_by_a_killed_run_are_compacted(tmp_path, tiny_prompter):
    image(tmp_path, "a.png")
    manifest = write_manifest(tmp_path, [{"id": "a", "image": "a.png", "question": "what?"},
                                         {"id": "b", "image": "nothing.png", "question": "what?"}])
    out = tmp_path / "out"
    run_manifest(tiny_prompter, manifest, out, progress=False)
    # What a kill -9 between appends leaves: earlier records of the same ids appended again.
    with (out / "manifest.jsonl").open("a") as f:
        for r in records(out)[:2]:
            f.write(json.dumps({**r, "error": "an older attempt"}) + "\n")
    summary = run_manifest(tiny_prompter, manifest, out, progress=False)
    assert (summary.skipped, summary.failed) == (1, 2)
    recs = records(out)
    assert sorted(r["id"] for r in recs) == ["", "a", "b"]
    assert all(r["error"] != "an older attempt" for r in recs if r["id"] == "b")


def _hold(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_job_on_the_folder_is_refused_and_a_killed_one_leaves_no_stuck_lock(capsys, tmp_path, tiny_clip_dir):
    image(tmp_path, "a.png")
    manifest = write_manifest(tmp_path, [{"id": "a", "image": "a.png", "question": "what?"}])
    out = tmp_path / "out"
    holder = _hold(f"""
        import time
        from attnprompt.outputs import OutputFolder
        held = OutputFolder({str(out)!r}).__enter__()
        print("ready", flush=True)
        time.sleep(120)
    """)
    try:
        argv = ["annotate", "--manifest", str(manifest), "--out-dir", str(out), "--model", str(tiny_clip_dir),
                "--device", "cpu", "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "in use by another attnprompt job" in err and err.count("\n") == 1
        assert not (out / "manifest.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_FILE).exists()  # the file stays; the kernel dropped the lock with the process
    assert main(argv) == 1  # runs; only the broken line fails
    assert [r["status"] for r in records(out)] == ["ok", "error"]


def test_stale_temporaries_of_a_killed_write_are_removed_on_rerun(tmp_path, tiny_prompter):
    image(tmp_path, "a.png")
    manifest = write_manifest(tmp_path, [{"id": "a", "image": "a.png", "question": "what?"}])
    out = tmp_path / "out"
    (out / "maps").mkdir(parents=True)
    writer = _hold(f"""
        import time
        from attnprompt.io import atomic_write_bytes
        def stall(handle):
            handle.write(b"half an image")
            handle.flush()
            print("ready", flush=True)
            time.sleep(120)
        import attnprompt.io as io
        io._atomic_write({str(out / "a.png")!r}, stall)
    """)
    writer.send_signal(signal.SIGKILL)  # kill -9 in the middle of an atomic write
    writer.wait()
    (out / "maps" / ".a.npz.k3j_9xq0.tmp").write_bytes(b"left by another kill")
    (out / "notes.tmp").write_text("a user's file")
    (out / ".hidden").write_text("a user's file")
    assert len(list(out.glob(".a.png.*.tmp"))) == 1
    run_manifest(tiny_prompter, manifest, out, progress=False, save_map_files=True)
    assert not list(out.glob("**/.*.tmp"))
    assert (out / "notes.tmp").exists() and (out / ".hidden").exists()
    assert records(out)[0]["status"] == "ok" and Image.open(out / "a.png").size == (48, 32)


def test_output_folder_that_is_a_file_is_one_line(capsys, tmp_path, tiny_clip_dir):
    image(tmp_path, "a.png")
    manifest = write_manifest(tmp_path, [{"id": "a", "image": "a.png", "question": "what?"}])
    (tmp_path / "file").write_text("x")
    code = main(["annotate", "--manifest", str(manifest), "--out-dir", str(tmp_path / "file"),
                 "--model", str(tiny_clip_dir), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "is a file" in err and "Traceback" not in err


@pytest.mark.parametrize("fmt,suffix,lossless", [("png", ".png", True), ("jpeg", ".jpg", False), ("webp", ".webp", False)])
def test_image_formats(tmp_path, tiny_clip_dir, fmt, suffix, lossless):
    image(tmp_path, "a.png", size=(96, 64))
    manifest = write_manifest(tmp_path, [{"id": "a", "image": "a.png", "question": "what?"}])
    out = tmp_path / fmt
    argv = ["annotate", "--manifest", str(manifest), "--out-dir", str(out), "--model", str(tiny_clip_dir),
            "--device", "cpu", "--quiet", "--image-format", fmt]
    assert main(argv + (["--quality", "80"] if not lossless else [])) == 1  # the broken line fails
    [rec, _] = records(out)
    assert rec["output"] == f"a{suffix}"
    written = Image.open(out / rec["output"])
    assert written.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt] and written.size == (96, 64)
    if lossless:  # the PNG holds exactly the annotated pixels of the Python API
        from attnprompt import Prompter

        [expected] = Prompter(str(tiny_clip_dir), device="cpu").annotate(str(tmp_path / "a.png"), "what?")
        assert np.array_equal(np.asarray(written.convert("RGB")), np.asarray(expected.image))


def test_encoding_options_are_checked(capsys, tmp_path, tiny_clip_dir):
    with pytest.raises(AttnPromptError):
        ImageEncoding("png", quality=90)
    with pytest.raises(AttnPromptError):
        ImageEncoding("jpeg", quality=0)
    with pytest.raises(AttnPromptError):
        ImageEncoding("png", png_compress_level=10)
    manifest = write_manifest(tmp_path, [])
    code = main(["annotate", "--manifest", str(manifest), "--out-dir", str(tmp_path / "o"), "--model",
                 str(tiny_clip_dir), "--image-format", "jpeg", "--format", "rgba", "--quiet"])
    assert code == 2 and "JPEG cannot store" in capsys.readouterr().err


def test_png_default_is_lossless():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320]
    base = np.stack([128 + 100 * np.sin(x / 17 + c) * np.cos(y / 23 - c) for c in range(3)], -1)
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    pixels[:, :100] = 0  # a masked-out region faded to black
    data = ImageEncoding().encode(Image.fromarray(pixels))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
