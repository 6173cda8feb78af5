"""The annotation job's throughput against its floor, as whole processes.

    python benchmarks/bench_job.py                                   # CLIP and LVLM, 640x480 and 1600x1200
    python benchmarks/bench_job.py --paths clip --sizes 1600x1200 --images 48 --engines local
    python benchmarks/bench_job.py --images 16 --lvlm-images 8       # reduced counts
    python benchmarks/bench_job.py --engines local --baseline-src ../old/src   # + an older checkout's job

For each path (CLIP: a random-weight ViT-B/16 saved as a transformers folder by
``attnprompt.testing``; LVLM: a small random LLaVA from ``attnprompt.testing_lvlm``) and image size,
JPEG photos-like images are written once, then each arm runs in its own fresh process:

* **floor**: decode every file, the model's processor and forward in batches (CLIP: image and text
  features; LVLM: plain greedy generation of the same length), nothing written;
* **floor-tiled** (CLIP, sizes the default ``geometry="auto"`` tiles, any aspect over 5:4): the
  same with the forwards that geometry needs: each image resized (bicubic, plain PIL) so its short
  side is the model's input and cut into the overlapping square crops, all crops through the
  processor and the tower (two per image at 4:3);
* **local**: ``attnprompt annotate --manifest ... --batch-size B`` (the pipelined job, PNG output,
  the default preset);
* **local-aligned** (CLIP): the same with ``--geometry aligned``, one forward per image: the model
  work of **floor**;
* **ray-1**, **ray-2**: the local arm with ``--engine ray --workers N`` on a local Ray cluster the
  process starts (Ray's start-up included; each actor gets ``threads / N`` CPUs);
* **base** (with ``--baseline-src``): the local arm run from another checkout's ``src`` (for
  regressions); its ratio is to **floor** (older checkouts letterboxed every image).

Each arm's ratio is to the floor with the same model work: ``local`` and the Ray arms to
**floor-tiled** where the size tiles, else to **floor**. Every arm uses ``--threads`` torch
threads in all (default 2). With ``--rounds N`` the floors and the arms alternate N times.
Printed: the median wall seconds, images per second and the median over rounds of the ratio of
wall time to that round's matching floor. Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from attnprompt.geometry import resolve_geometry

if TYPE_CHECKING:
    from PIL import Image

VIT_B_16 = dict(image_size=224, patch_size=16, width=768, layers=12, heads=12, text_width=512, text_heads=8,
                text_layers=12, projection_dim=512)
LLAVA = dict(image_size=112, patch_size=8, text_layers=8, hidden=512)


def make_images(folder: Path, size: tuple[int, int], count: int) -> Path:
    import numpy as np
    from PIL import Image, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rows = []
    for i in range(count):
        base = np.stack([128 + 100 * np.sin(x / (60 + 7 * i) + c) * np.cos(y / (90 + 5 * c) - i) for c in range(3)], -1)
        pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1)).save(folder / f"p{i}.jpg", quality=90)
        rows.append({"id": f"p{i}", "image": f"p{i}.jpg", "question": "what is in the middle of the picture?"})
    manifest = folder / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def make_models(folder: Path) -> dict[str, Path]:
    from attnprompt.testing import make_tiny_clip_dir
    from attnprompt.testing_lvlm import make_tiny_llava_dir

    clip, lvlm = folder / "vit-b-16", folder / "llava"
    if not (clip / "config.json").exists():
        make_tiny_clip_dir(clip, **VIT_B_16)
    if not (lvlm / "config.json").exists():
        make_tiny_llava_dir(lvlm, **LLAVA)
    return {"clip": clip, "lvlm": lvlm}


def tiles(image: Image.Image, side: int, grid: int) -> list[Image.Image]:
    """The crops of the tiled geometry in plain PIL: short side to ``side``, overlapping squares."""
    from PIL import Image

    from attnprompt.geometry import tile_offsets

    w, h = image.size
    scale = side / min(w, h)
    resized = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.Resampling.BICUBIC)
    cell = side / grid
    cols, rows = math.ceil(resized.width / cell - 1e-6), math.ceil(resized.height / cell - 1e-6)
    return [resized.crop((round(c * cell), round(r * cell), round(c * cell) + side, round(r * cell) + side))
            for r in tile_offsets(rows, grid, 0.5) for c in tile_offsets(cols, grid, 0.5)]


def floor(model: str, manifest: str, batch: int, threads: int, tiled: bool = False) -> None:
    """A floor arm, run in a child process."""
    import torch

    torch.set_num_threads(threads)
    from attnprompt.auxiliary.base import load_auxiliary
    from attnprompt.io import load_image, read_manifest

    aux = load_auxiliary(model, device="cpu")
    rows = read_manifest(manifest)
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            images = [load_image(r.image) for r in part]
            queries = [r.question for r in part]
            if aux.kind == "clip":
                if tiled:
                    crops = [tiles(im, aux.image_size, aux.grid_size) for im in images]
                    images = [c for per_image in crops for c in per_image]
                    queries = [q for q, per_image in zip(queries, crops) for _ in per_image]
                pixels = aux.preprocess(images)
                aux.model.get_image_features(pixel_values=pixels)
                aux.encode_text(aux.tokenize(queries))
            else:
                aux.answer(images, queries, max_new_tokens=20)


def run_arm(arm: str, model: Path, manifest: Path, out: Path, batch: int, threads: int,
            baseline_src: str | None = None) -> float | None:
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing to resume
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    if arm.startswith("floor"):
        cmd = [sys.executable, __file__, "--child-floor", str(model), str(manifest), str(batch), str(threads),
               str(arm == "floor-tiled")]
    else:
        cmd = [sys.executable, "-m", "attnprompt.cli", "annotate", "--manifest", str(manifest), "--out-dir", str(out),
               "--model", str(model), "--device", "cpu", "--batch-size", str(batch), "--quiet"]
        if arm == "local-aligned":
            cmd += ["--geometry", "aligned"]
        if arm == "base" and baseline_src:
            env["PYTHONPATH"] = os.pathsep.join([str(Path(baseline_src).resolve()), env.get("PYTHONPATH", "")])
        if arm.startswith("ray"):
            workers = int(arm.split("-")[1])
            cmd += ["--engine", "ray", "--workers", str(workers), "--cpus-per-worker", str(max(1, threads // workers))]
            env["RAY_DEDUP_LOGS"] = "0"
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"  {arm}: failed ({done.returncode}): {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        return None
    return wall


def matching_floor(arm: str, tiled: bool) -> str:
    """The floor with an arm's model work: the tiled one for the default geometry on sizes it tiles."""
    if arm.startswith("floor"):
        return arm
    return "floor-tiled" if tiled and arm not in ("local-aligned", "base") else "floor"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-floor":
        child = sys.argv[2:7]  # model, manifest, batch, threads, tiled
        floor(child[0], child[1], int(child[2]), int(child[3]), child[4] == "True")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default="clip,lvlm", help="clip, lvlm or both")
    parser.add_argument("--sizes", default="640x480,1600x1200")
    parser.add_argument("--engines", default="local,local-aligned,ray-1,ray-2")
    parser.add_argument("--images", type=int, default=48, help="images per CLIP set (default 48)")
    parser.add_argument("--lvlm-images", type=int, default=16, help="images per LVLM set (default 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternate floor and arms this many times; medians")
    parser.add_argument("--baseline-src", default=None,
                        help="also run the local job from this checkout's src folder (arm 'base')")
    parser.add_argument("--work", default=None, help="keep models and images here (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_job_"))
    models = make_models(work / "models")
    print(f"# bench_job: batch {args.batch_size}, {args.threads} threads, CPU, {os.cpu_count()} cores; work {work}")
    print(f"# rounds {args.rounds}; wall s and x floor are medians over rounds")
    print("| path | size | images | arm | wall s | images/s | x floor | floor |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.paths.split(","):
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            count = args.images if path == "clip" else args.lvlm_images
            manifest = make_images(work / f"images_{size}_{count}", (w, h), count)
            tiled = path == "clip" and resolve_geometry("auto", (w, h)) == "tiled"
            engines = [e for e in args.engines.split(",") if path == "clip" or e != "local-aligned"]
            arms = ["floor", *(["floor-tiled"] if tiled else []), *engines, *(["base"] if args.baseline_src else [])]
            walls: dict[str, list[float]] = {arm: [] for arm in arms}
            ratios: dict[str, list[float]] = {arm: [] for arm in arms}
            for _ in range(args.rounds):  # floors and arms alternate, so slow spells hit both
                floors: dict[str, float] = {}
                for arm in arms:
                    wall = run_arm(arm, models[path], manifest, work / f"out_{path}_{size}_{arm}", args.batch_size,
                                   args.threads, args.baseline_src)
                    if wall is None:
                        continue
                    walls[arm].append(wall)
                    if arm.startswith("floor"):
                        floors[arm] = wall
                    reference = floors.get(matching_floor(arm, tiled))
                    if reference:
                        ratios[arm].append(wall / reference)
            for arm in arms:
                if not walls[arm]:
                    continue
                wall = statistics.median(walls[arm])
                ratio = f"{statistics.median(ratios[arm]):.2f}" if ratios[arm] else "-"
                print(f"| {path} | {size} | {count} | {arm} | {wall:.1f} | {count / wall:.2f} | {ratio} "
                      f"| {matching_floor(arm, tiled)} |", flush=True)


if __name__ == "__main__":
    main()
