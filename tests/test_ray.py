"""The Ray Data engine on a local Ray cluster started here (2 CPUs): the same outputs as the local
job (byte for byte, at equal thread counts), resume after a kill, per-row errors, nothing written
outside the output folder; through the CLI and through ``map_batches``."""

from __future__ import annotations

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
import torch
from PIL import Image

from attnprompt.cli import main
from attnprompt.jobs import run_manifest

from .conftest import import_or_fail_in_ci

ray = import_or_fail_in_ci("ray", "Ray Data", "setup.sh test installs the ray extra")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    import ray.data

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def records(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines() if l.strip()]


def make_inputs(folder: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30 + 4 * i, 50, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        rows.append({"id": f"r{i}" if i else "../../escape", "image": f"im{i}.png", "question": f"thing {i}?"})
    (folder / "broken.png").write_bytes(b"not an image")
    rows += [{"id": "missing", "image": "nope.png", "question": "what?"},
             {"id": "broken", "image": "broken.png", "question": "what?"},
             {"id": "blank", "image": "im1.png", "question": "  "},
             {"id": "r1", "image": "im2.png", "question": "a second use of an id"}]
    manifest = folder / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    return manifest


def local_reference(manifest: Path, out: Path, model: Path, settings: dict | None = None, **kwargs) -> None:
    """The local job at one torch thread: what a Ray actor with one CPU computes."""
    from attnprompt import Prompter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prompter = Prompter(str(model), device="cpu", **(settings or {}))
        run_manifest(prompter, manifest, out, progress=False, batch_size=2, **kwargs)
    finally:
        torch.set_num_threads(threads)


def test_cli_ray_engine_equals_the_local_job_byte_for_byte(cluster, tmp_path, tiny_clip_dir):
    manifest = make_inputs(tmp_path)
    local_reference(manifest, tmp_path / "local", tiny_clip_dir, save_map_files=True)
    before = files(tmp_path)
    out = tmp_path / "ray"
    argv = ["annotate", "--manifest", str(manifest), "--out-dir", str(out), "--model", str(tiny_clip_dir),
            "--device", "cpu", "--quiet", "--engine", "ray", "--workers", "2", "--batch-size", "2", "--save-maps"]
    assert main(argv) == 1  # the bad rows fail, each recorded
    assert files(out) == files(tmp_path / "local")  # images, maps and the manifest's records
    recs = records(out)
    assert [r["status"] for r in recs].count("ok") == 4 and len(recs) == 9
    assert {r["id"]: r["error"] for r in recs if r["status"] == "error" and r["id"] in ("missing", "broken", "blank")}.keys() == {"missing", "broken", "blank"}
    after = files(tmp_path)
    assert {k for k in after if k not in before} == {f"ray/{k}" for k in files(out)}  # nothing outside out/


def test_map_batches_with_image_bytes_and_read_images(cluster, tmp_path, tiny_clip_dir):
    import ray.data

    from attnprompt.integrations.ray import Annotator, RayJobOptions

    manifest = make_inputs(tmp_path, n=3)
    local_reference(manifest, tmp_path / "local", tiny_clip_dir)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attnprompt.integrations.ray import read_table

    # parquet with the images' bytes, JSON Lines with paths relative to the file
    pq.write_table(pa.table({"id": ["r1", "bad"], "image": [(tmp_path / "im1.png").read_bytes(), b"garbage"],
                             "question": ["thing 1?", "what?"]}), tmp_path / "rows.parquet")
    (tmp_path / "paths.jsonl").write_text(json.dumps({"id": "r2", "image": "im2.png", "question": "thing 2?"}) + "\n")
    options = RayJobOptions(model=str(tiny_clip_dir), device="cpu")
    source = read_table(tmp_path / "rows.parquet").union(read_table(tmp_path / "paths.jsonl"))
    out = source.map_batches(Annotator, fn_constructor_kwargs={"options": options}, concurrency=1, batch_size=2,
                             num_cpus=1, batch_format="numpy").take_all()
    by_id = {r["id"]: r for r in out}
    for i in (1, 2):
        assert by_id[f"r{i}"]["status"] == "ok" and by_id[f"r{i}"]["error"] is None
        assert bytes(by_id[f"r{i}"]["annotated"]) == (tmp_path / "local" / f"r{i}.png").read_bytes()
    assert by_id["bad"]["status"] == "error" and "cannot load image" in by_id["bad"]["error"]

    # ray.data.read_images' batches (arrays, a path column) go straight into the callable
    batch = ray.data.read_images([str(tmp_path / "im1.png")], include_paths=True, mode="RGB").take_batch(
        1, batch_format="numpy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = Annotator(options, question="thing 1?")(batch)
    finally:
        torch.set_num_threads(threads)
    assert list(row["status"]) == ["ok"] and list(row["id"]) == [str(tmp_path / "im1.png")]
    assert bytes(row["annotated"][0]) == (tmp_path / "local" / "r1.png").read_bytes()


def test_a_killed_ray_run_resumes(cluster, tmp_path, tiny_clip_dir):
    rng = np.random.default_rng(5)
    rows = []
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"k{i}.png")
        rows.append({"id": f"k{i}", "image": f"k{i}.png", "question": "what?"})
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    code = textwrap.dedent(f"""
        import sys, time
        import attnprompt.integrations.ray as engine
        real = engine.write_results
        def slow(batches, *a, **k):
            def paced():
                for b in batches:
                    yield b
                    time.sleep(1.0)
            return real(paced(), *a, **k)
        engine.write_results = slow
        from attnprompt.cli import main
        sys.exit(main(["annotate", "--manifest", {str(manifest)!r}, "--out-dir", {str(out)!r}, "--model",
                       {str(tiny_clip_dir)!r}, "--device", "cpu", "--quiet", "--engine", "ray",
                       "--ray-address", {cluster!r}, "--batch-size", "1"]))
    """)
    driver = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # generous: actors start slowly on a loaded machine
        while time.monotonic() < deadline and driver.poll() is None:
            if (out / "manifest.jsonl").exists() and len(records(out)) >= 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the driver ended before it could be killed"
        assert (out / "manifest.jsonl").exists(), "no row finished in time"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    done = {r["id"] for r in records(out)}
    assert 2 <= len(done) < 8
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("k*.png")}
    argv = ["annotate", "--manifest", str(manifest), "--out-dir", str(out), "--model", str(tiny_clip_dir),
            "--device", "cpu", "--quiet", "--engine", "ray"]
    assert main(argv) == 0
    recs = records(out)
    assert [r["id"] for r in recs] == [f"k{i}" for i in range(8)] and all(r["status"] == "ok" for r in recs)
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.glob("k*.png")) if n in stamps} == stamps
    assert not list(out.glob(".*.tmp"))


def test_lvlm_answers_and_a_two_image_style_reach_the_ray_outputs(cluster, tmp_path):
    from attnprompt.testing_lvlm import make_tiny_llava_dir

    model = make_tiny_llava_dir(tmp_path / "llava", seed=1)
    rng = np.random.default_rng(6)
    rows = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(tmp_path / f"v{i}.png")
        rows.append({"id": f"v{i}", "image": f"v{i}.png", "question": "what color is it?"})
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    local_reference(manifest, tmp_path / "local", model, {"style": "vicrop"})
    argv = ["annotate", "--manifest", str(manifest), "--out-dir", str(tmp_path / "ray"), "--model", str(model),
            "--device", "cpu", "--quiet", "--engine", "ray", "--batch-size", "2", "--style", "vicrop"]
    assert main(argv) == 0
    local, remote = records(tmp_path / "local"), records(tmp_path / "ray")
    assert all(r["answer"] and r["style"] == "vicrop" and r["extra_outputs"] for r in remote) and remote == local
    assert files(tmp_path / "ray") == files(tmp_path / "local")
