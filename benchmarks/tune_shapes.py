"""Tune the attention prompt for the tiny target on validation shapes scenes; test the choice once.

    python benchmarks/tune_shapes.py [--out runs/tune-shapes] [--benchmarks vizwiz,pope]
        [--val-scenes 55,100] [--test-scenes 100,200] [--limit 300,360] [--grid KNOB=V1,V2 ...]

Per benchmark layout (VizWiz: every question kind; POPE: presence), with the shipped
`shapes-clip` as auxiliary and `shapes-llava` as target:

1. validation and test folders of held-out scenes (`attnprompt.shapes.folders`, disjoint seeds);
2. `attnprompt tune` on the validation folder: every knob one at a time around the base preset,
   every prompt style, then the combination of each knob's best; the best as a preset file;
3. on validation, with the chosen preset: the combined conditions (self-reflection; the prompted
   answer only where the target is at least as confident as on the original);
4. once on the test folder: `attnprompt eval --preset CHOSEN` (original and the chosen prompt; a
   combined condition too where it beat the chosen prompt on validation), and each style on the
   base preset for the per-style table (first `--styles-limit` test questions);
5. prints the tune table, the per-style per-question-kind tables (validation and test), the
   prompt's effect split by whether the mask points at the named object, and the test result;
   writes them to OUT/report-BENCHMARKS.md; everything stays in OUT (rerun to resume).

The target was trained on the world's phrasing, so the questions go without LLaVA-1.5's
answer-format instruction (`--option prompt_suffix=`; `--suffix default` keeps it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnprompt.cli import main as cli
from attnprompt.shapes.folders import write_folder

TARGET, CLIP = "shapes-llava", "shapes-clip"
COMBINED = ("api-clip-or-original", "api-clip+self-reflection")


def _styles() -> list[str]:
    from attnprompt.bench.tune import default_style_names

    return default_style_names()  # the one-image styles: the tiny target takes one image


def _run(argv: list[str]) -> None:
    print("$ attnprompt " + " ".join(a if a and " " not in a else repr(a) for a in argv), file=sys.stderr, flush=True)
    code = cli(argv)
    if code != 0:
        raise SystemExit(code)


def _common(bench: str, data: Path, out: Path, limit: int | None, suffix: str | None) -> list[str]:
    argv = ["--benchmark", bench, "--data", str(data), "--target", TARGET, "--aux-clip", CLIP, "--out", str(out),
            "--device", "cpu", "--quiet"]
    if limit:
        argv += ["--limit", str(limit)]
    if suffix is not None:
        argv += ["--option", f"prompt_suffix={suffix}"]
    return argv


def _styles_on(bench: str, data: Path, out: Path, limit: int | None, suffix: str | None, base: Any) -> dict[str, Any]:
    """Each style on ``base`` (measured, not chosen): for the per-style table on the test split."""
    from attnprompt import Prompter
    from attnprompt.bench.tune import tune
    from attnprompt.targets import AnswerCache
    from attnprompt.targets.hf import HFTarget

    target = HFTarget(TARGET, device="cpu", max_new_tokens=128, cache=AnswerCache(out / "cache"))
    prompter = Prompter(CLIP, kind="clip", preset=base, device="cpu")
    styles = _styles()
    return tune(bench, data, target, out, auxiliary=prompter, grid={"style": styles} if styles else {},
                combine=False, choose=False, limit=limit, data_options={} if suffix is None else {"prompt_suffix": suffix},
                progress=False, log=lambda m: print(m, file=sys.stderr, flush=True))


def _kind_table(title: str, rows: list[dict[str, Any]]) -> str:
    kinds = list(dict.fromkeys(k for r in rows for k in r.get("per_kind", {})))
    lines = [f"\n{title}", "| setting | all | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for r in rows:
        cells = [f"{r['diff']:+.1f} [{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}]"]
        for k in kinds:
            pk = r.get("per_kind", {}).get(k)
            cells.append(f"{pk['diff']:+.1f} [{pk['ci'][0]:+.1f}, {pk['ci'][1]:+.1f}] (n={pk['n']})" if pk else "")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _eval_table(title: str, scores: dict[str, Any]) -> str:
    lines = [f"\n{title}", "| condition | score | diff vs original [95% CI] | changed |", "|---|---|---|---|"]
    for name, cond in scores["conditions"].items():
        cmp = scores["comparisons"].get(name)
        diff = f"{cmp['diff']:+.2f} [{cmp['ci'][0]:+.2f}, {cmp['ci'][1]:+.2f}]" if cmp else "baseline"
        lines.append(f"| {name} | {cond['overall']:.2f} | {diff} | {cmp['changed'] if cmp else ''} |")
    return "\n".join(lines)


def _by_pointing(title: str, bench: str, folder: Path, tuned: Path, row: dict[str, Any], limit: int | None,
                 suffix: str | None) -> str:
    """The cause, in numbers: per question kind, how often the setting's mask points at the object
    the question names (its top cell lies on it) and the prompt's effect on the items where it
    does and where it does not."""
    import numpy as np
    import torch

    from attnprompt import MaskConfig, Prompter
    from attnprompt.bench.benchmarks import load_benchmark
    from attnprompt.shapes import make_scene
    from attnprompt.shapes.folders import DEFAULT_CLUTTER, DEFAULT_OBJECTS, read_items
    from attnprompt.shapes.metrics import cell_layout, score_map

    scores = json.loads((tuned / "settings" / row["key"] / "scores.json").read_text())
    base_units, units = scores["conditions"]["original"]["units"], scores["conditions"]["api-clip"]["units"]
    records = {r["id"]: r for r in read_items(folder)}
    items = [it for it in load_benchmark(bench, folder, limit=limit, prompt_suffix="")
             if records[it.id]["target"] is not None and it.id in units]
    prompter = Prompter(CLIP, kind="clip", preset=MaskConfig(**row["config"]), device="cpu")
    scenes = {s: make_scene(s, n_objects=DEFAULT_OBJECTS, clutter=DEFAULT_CLUTTER)
              for s in {records[it.id]["scene_seed"] for it in items}}
    with torch.inference_mode():
        anns = prompter.annotate([scenes[records[it.id]["scene_seed"]].image for it in items],
                                 [it.question for it in items], batch_size=64)
    groups: dict[tuple[str, bool], list[float]] = {}
    for it, ann in zip(items, anns):
        rec = records[it.id]
        scene = scenes[rec["scene_seed"]]
        layout = cell_layout(prompter.auxiliary.view(scene.image, "aligned"), ann.mask.shape, scene.size)
        hit = score_map(ann.mask, layout, scene.masks, rec["target"]).pointing >= 1.0
        groups.setdefault((rec["kind"], hit), []).append(100.0 * (units[it.id] - base_units[it.id]))
    kinds = list(dict.fromkeys(k for k, _ in groups))
    lines = [f"\n{title}", "| kind | mask points at the named object | effect where it does (n) | "
             "effect where it does not (n) |", "|---|---|---|---|"]
    for kind in kinds:
        hits, misses = groups.get((kind, True), []), groups.get((kind, False), [])
        share = len(hits) / max(1, len(hits) + len(misses))
        fmt = lambda v: f"{np.mean(v):+.1f} ({len(v)})" if v else "-"  # noqa: E731
        lines.append(f"| {kind} | {share:.2f} | {fmt(hits)} | {fmt(misses)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/tune-shapes")
    p.add_argument("--benchmarks", default="vizwiz,pope")
    p.add_argument("--val-scenes", default="55,100", help="validation scenes per benchmark (comma-separated)")
    p.add_argument("--test-scenes", default="100,200", help="test scenes per benchmark (comma-separated)")
    p.add_argument("--limit", default="", help="first N validation questions, per benchmark (comma-separated)")
    p.add_argument("--test-limit", type=int, default=None, help="first N test questions (default: all)")
    p.add_argument("--styles-limit", type=int, default=200,
                   help="first N test questions for the per-style table on test (default 200)")
    p.add_argument("--grid", action="append", default=None, help="as attnprompt tune --grid (default: every knob)")
    p.add_argument("--suffix", default="", help="answer-format instruction: '' (default) or 'default' (LLaVA-1.5's)")
    a = p.parse_args(argv)
    out = Path(a.out)
    suffix = None if a.suffix == "default" else a.suffix
    benches = [b for b in a.benchmarks.split(",") if b]
    val_n = [int(x) for x in a.val_scenes.split(",")]
    limits = [int(x) if x else None for x in a.limit.split(",")]
    test_n = [int(x) for x in a.test_scenes.split(",")]
    report: list[str] = []
    for i, bench in enumerate(benches):
        limit = limits[min(i, len(limits) - 1)]
        folders = {}
        for split, sizes in (("validation", val_n), ("test", test_n)):
            folders[split] = out / f"{bench}-{split}"
            if not (folders[split] / "shapes_items.jsonl").is_file():
                write_folder(bench, folders[split], sizes[min(i, len(sizes) - 1)], split=split)
        tuned = out / f"tune-{bench}-val"
        grid = [x for g in (a.grid or []) for x in ("--grid", g)]
        _run(["tune", *_common(bench, folders["validation"], tuned, limit, suffix), *grid])
        doc = json.loads((tuned / "tune.json").read_text())
        preset = str(tuned / "preset.json")
        report.append((tuned / "table.md").read_text().join((f"\n## {bench}: tune on validation\n", "")))
        style_rows = [r for r in doc["settings"] if r["knob"] in (None, "style") and not r["name"].startswith("best")]
        report.append(_kind_table(f"{bench}, validation: per style on the base preset (diff vs original)", style_rows))

        chosen_row = next(r for r in doc["settings"] if r["name"] == doc["chosen"])
        for r in [doc["settings"][0]] + ([chosen_row] if chosen_row is not doc["settings"][0] else []):
            report.append(_by_pointing(f"{bench}, validation: the prompt's effect (points) by where the mask of "
                                       f"'{r['name']}' points", bench, folders["validation"], tuned, r, limit, suffix))
        conds = "original,api-clip," + ",".join(COMBINED)
        val_eval = out / f"eval-{bench}-validation-chosen"
        _run(["eval", *_common(bench, folders["validation"], val_eval, limit, suffix), "--conditions", conds,
              "--preset", preset])
        report.append(_eval_table(f"{bench}, validation, chosen preset ({doc['chosen']}) and combined conditions",
                                  json.loads((val_eval / "scores.json").read_text())))

        # the test split, once: the choice, and a combined condition only where it beat it on validation
        val_scores = json.loads((val_eval / "scores.json").read_text())["comparisons"]
        better = [c for c in COMBINED if val_scores[c]["diff"] > val_scores["api-clip"]["diff"]]
        test_eval = out / f"eval-{bench}-test-chosen"
        _run(["eval", *_common(bench, folders["test"], test_eval, a.test_limit, suffix), "--conditions",
              ",".join(["original", "api-clip", *better]), "--preset", preset])
        report.append(_eval_table(f"{bench}, TEST (run once), chosen preset ({doc['chosen']})",
                                  json.loads((test_eval / "scores.json").read_text())))
        from attnprompt import MaskConfig

        base = MaskConfig(**doc["base"])
        styles = _styles_on(bench, folders["test"], out / f"styles-{bench}-test", a.styles_limit, suffix, base)
        report.append(_kind_table(f"{bench}, TEST: per style on the base preset (diff vs original)",
                                  styles["settings"]))
    text = "\n".join(report) + "\n"
    print(text)
    path = out / f"report-{'-'.join(benches)}.md"
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
