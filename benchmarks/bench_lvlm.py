#!/usr/bin/env python
"""Cost of LVLM mask generation versus plain generation with the same settings.

For a small random-weight Llama-based LLaVA and a Qwen2-VL (built offline by
``attnprompt.testing_lvlm``), each arm runs in a fresh child process:

* ``generate``: processor + ``model.generate`` (greedy, ``max_new_tokens``), what any user of the
  model pays for an answer;
* ``api``: ``LvlmAuxiliary.attribute`` (processor + the same generation with the attention capture
  at one decoder layer + the map and mask), what an attnprompt user pays for mask and answer.

Time: both arms alternate in one child process, ``--repeats`` rounds after a warm-up, and the
ratio is the median of the per-round ratios (on a shared machine, load that lands on one arm's
separate process would otherwise decide the ratio). The per-arm times shown are medians too.
Memory: each arm in its own fresh child, peak RSS during the calls (the high-water mark is reset
through ``/proc/self/clear_refs`` once the model and inputs exist) and the "working" memory
above the RSS at that point. Targets (issue 3): time <= 1.10x and peak
memory <= 1.10x of plain generation. Exits 0 always: a benchmark, not a test.

    python benchmarks/bench_lvlm.py                      # both families, batch 1 and 4, CPU fp32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIME_TARGET = 1.10
PEAK_TARGET = 1.10
MARKER = "@@LVLM_BENCH@@ "

FAMILIES = {
    "llava": dict(label="LLaVA (Llama 8x512, CLIP 112 px / 8 px patches: 196 image tokens)",
                  builder="make_tiny_llava_dir", kwargs=dict(image_size=112, patch_size=8, text_layers=8, hidden=512)),
    "qwen2_vl": dict(label="Qwen2-VL (8x512, dynamic grid up to 160x160 px)",
                     builder="make_tiny_qwen2_vl_dir",
                     kwargs=dict(patch_size=8, text_layers=8, hidden=512, min_pixels=64 * 64, max_pixels=160 * 160)),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib() -> int:
    return _status_kib("VmRSS")


def hwm_kib() -> int:
    return _status_kib("VmHWM")


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from attnprompt import Prompter

    if args.threads:
        torch.set_num_threads(args.threads)
    prompter = Prompter(args.model_dir, device="cpu", max_new_tokens=args.max_new_tokens, layers=(-3,))
    aux = prompter.auxiliary
    rng = np.random.default_rng(0)
    sizes = [(160, 120), (120, 160), (144, 144), (200, 100)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[: args.batch]]
    queries = ["what color is the square in the picture", "is there a red circle",
               "which shape is on the left", "what is the object on the top"][: args.batch]
    views = [aux.view(im, prompter.config.geometry).image for im in images]

    def plain() -> None:  # the same greedy generation, no capture
        aux.generate(aux.encode(views, queries), args.max_new_tokens)

    def api() -> None:
        aux.attribute(views, queries, prompter.config)

    if args.arm == "paired":
        plain(), api()  # warm-up
        tp, ta = [], []
        for _ in range(args.repeats):
            for fn, bucket in ((plain, tp), (api, ta)):
                start = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - start)
        ratios = [a / p for a, p in zip(ta, tp)]
        print(MARKER + json.dumps(dict(plain=statistics.median(tp), api=statistics.median(ta),
                                       ratio=statistics.median(ratios), ratios=ratios)))
        return
    run = plain if args.arm == "generate" else api
    run()  # warm-up
    base = rss_kib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the RSS high-water mark
        reset = True
    except OSError:
        reset = False
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(MARKER + json.dumps(dict(time=statistics.median(times), times=times, peak=hwm_kib(), base=base,
                                   reset=reset)))


def measure(model_dir: str, arm: str, batch: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model-dir", model_dir, "--arm", arm, "--batch", str(batch),
           "--repeats", str(args.repeats), "--max-new-tokens", str(args.max_new_tokens)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    for line in out.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise RuntimeError(f"child failed:\n{out.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch
    import transformers

    from attnprompt import testing_lvlm

    print(f"cpu_count: {os.cpu_count()}, torch: {torch.__version__}, transformers: {transformers.__version__}, "
          f"threads: {args.threads or torch.get_num_threads()}, device: cpu, dtype: float32, "
          f"max_new_tokens: {args.max_new_tokens}, repeats: {args.repeats}, layer: -3, reduction: official")
    print(f"Targets: time <= {TIME_TARGET}x and peak RSS <= {PEAK_TARGET}x of plain generate.\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families.split(","):
            spec = FAMILIES[name]
            folder = Path(tmp) / name
            getattr(testing_lvlm, spec["builder"])(folder, **spec["kwargs"])
            for batch in (int(b) for b in args.batches.split(",")):
                timing = measure(str(folder), "paired", batch, args)
                plain = measure(str(folder), "generate", batch, args)
                api = measure(str(folder), "api", batch, args)
                rows.append(dict(family=spec["label"], batch=batch, plain=plain, api=api, timing=timing,
                                 time_ratio=timing["ratio"], peak_ratio=api["peak"] / plain["peak"]))
    print("| model | batch | generate time | API time | time ratio | generate peak RSS / working | "
          "API peak RSS / working | peak ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, a, t = r["plain"], r["api"], r["timing"]
        print(f"| {r['family']} | {r['batch']} | {t['plain']:.3f} s | {t['api']:.3f} s | {r['time_ratio']:.3f}x | "
              f"{p['peak'] / 1024:,.0f} MiB / {(p['peak'] - p['base']) / 1024:+,.0f} MiB | "
              f"{a['peak'] / 1024:,.0f} MiB / {(a['peak'] - a['base']) / 1024:+,.0f} MiB | {r['peak_ratio']:.3f}x |")
    print()
    for r in rows:
        ok = r["time_ratio"] <= TIME_TARGET and r["peak_ratio"] <= PEAK_TARGET
        print(f"{'PASS' if ok else 'FAIL'} {r['family']} batch {r['batch']}: time {r['time_ratio']:.3f}x, "
              f"peak RSS {r['peak_ratio']:.3f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
