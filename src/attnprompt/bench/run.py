"""``attnprompt eval``: one benchmark, one target model, several conditions -> answers, scores, a table.

The run folder holds everything needed to resume and to report::

    OUT/run.json                    the settings (a rerun must match them)
    OUT/masks/                      the content-addressed store of prompt images (bench/masks.py):
                                    <key>.png + manifest.jsonl, keyed by image content, query,
                                    auxiliary and mask settings; shared by every condition, and by
                                    other benchmarks and runs that point --masks-dir at it
    OUT/answers/<condition>.jsonl   one fsynced line per answered item (id, prompt, answer | error)
    OUT/scores.json                 per condition: headline, per-category, official extras, units;
                                    paired bootstrap of each condition against the baseline
    OUT/table.md, OUT/table.csv     the table that is also printed
    OUT/report.html                 every metric per condition, a chart with the CIs, the changed items

A crash loses at most the batch in flight; rerunning the same command resumes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from PIL import Image

from ..errors import ROW_ERRORS, AttnPromptError
from ..files import JSONError, append_jsonl, atomic_write_text, load_image, load_json, read_jsonl_tolerant, safe_stem
from ..progress import progress_bar
from ..styles import STYLES
from .benchmarks import BENCHMARKS, load_data
from .conditions import Condition, get_conditions
from .items import Item, Score
from .keys import FileDigests, answer_key, target_identity
from .masks import MaskCounts, make_masks
from .metrics import category_name, headline_name, official_metrics
from .presets import benchmark_preset
from .report_html import write_report_html
from .stats import paired_bootstrap

__all__ = ["Target", "evaluate", "score_answers", "write_table", "format_table"]


class Target(Protocol):
    """What the harness needs from a target model (HFTarget, OpenAIEndpointTarget...)."""

    name: str

    def answer(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[str]: ...


def _query(item: Item) -> str:
    """What the auxiliary is asked: the item's query (the question without the answer-format
    instruction)."""
    return item.query.strip()


def _sources(item: Item, multi: bool) -> list[str]:
    """The images the target sees: all the question refers to for a target that takes several
    (``meta["images"]``, MMMU), else ``item.image``."""
    images = item.meta.get("images") if multi else None
    return [str(p) for p in images] if images else [item.image]


def _takes_several_images(target: Any) -> bool:
    """A target declares ``max_images`` > 1 when its ``answer`` accepts a list of images per prompt."""
    return int(getattr(target, "max_images", 1) or 1) > 1


def _check_run(out: Path, settings: dict[str, Any]) -> None:
    path = out / "run.json"
    if path.exists():
        try:
            old = load_json(path.read_bytes())
        except (OSError, JSONError):
            old = {}
        if not isinstance(old, dict):
            old = {}
        for key in ("benchmark", "target", "limit", "preset"):
            if key in old and old[key] != settings[key]:
                raise AttnPromptError(
                    f"{out} holds a run with {key}={old[key]!r}, not {settings[key]!r}: use another --out to keep both")
        settings = {**old, **settings, "conditions": list(dict.fromkeys([*old.get("conditions", []),
                                                                          *settings["conditions"]]))}
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def _answer_condition(
    condition: Condition,
    items: Sequence[Item],
    target: Target,
    images: Mapping[str, Sequence[str | Exception]],
    previous: Mapping[str, str] | None,
    path: Path,
    *,
    chunk: int,
    progress: bool,
    identity: Mapping[str, Any] | None = None,
    digests: FileDigests | None = None,
    multi: bool = False,
) -> dict[str, dict[str, Any]]:
    """Answer every item without a current answer in ``path``; returns ``{id: record}`` of the answered.

    An answer is current when its ``key`` (:func:`attnprompt.bench.keys.answer_key`: target
    identity, condition, prompt, the sent image's bytes) is the one this run would make; any
    other record is stale, is answered again and leaves the file (rewritten atomically).
    """
    ident = dict(identity) if identity is not None else target_identity(target)
    digests = digests or FileDigests()
    keys: dict[str, str] = {}
    prompts: dict[str, str | Exception] = {}
    for it in items:
        sources = images.get(it.id) or _sources(it, multi)
        if previous is not None and it.id not in previous:
            prompts[it.id] = AttnPromptError("no answer under 'original' to reflect on")
            continue
        prompts[it.id] = prompt = condition.prompt(it.question, previous.get(it.id) if previous is not None else None)
        found = [None if isinstance(src, Exception) else digests(str(src)) for src in sources]
        if found and all(d is not None for d in found):  # else the item fails when loaded
            keys[it.id] = answer_key(ident, condition.name, prompt, "+".join(str(d) for d in found))
    old = read_jsonl_tolerant(path) if path.exists() else []
    done = {str(r["id"]): r for r in old
            if r.get("answer") is not None and "id" in r and keys.get(str(r["id"])) is not None
            and r.get("key") == keys[str(r["id"])]}
    if len(old) != len(done):  # stale, failed or repeated records: keep one current record per id
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in done.values()))
    todo = [it for it in items if it.id not in done]
    bar = progress_bar(len(todo), desc=f"answer {condition.name}", unit="q", enabled=progress)
    try:
        for start in range(0, len(todo), chunk):
            batch = todo[start:start + chunk]
            ready: list[tuple[Item, Any, str]] = []
            for it in batch:
                sources = images.get(it.id) or _sources(it, multi)
                try:
                    asked = prompts[it.id]
                    for source in sources:
                        if isinstance(source, Exception):
                            raise source
                    if isinstance(asked, Exception):
                        raise asked
                    loaded = [load_image(str(src)) for src in sources]
                    ready.append((it, loaded if len(loaded) > 1 else loaded[0], asked))
                except ROW_ERRORS as exc:
                    append_jsonl(path, {"id": it.id, "condition": condition.name, "answer": None, "error": str(exc)})
                    bar.update(1)
            if not ready:
                continue
            if condition.combine:
                extras = _combined(condition, target, ready)
            else:
                extras = [{"answer": text} for text in target.answer([im for _, im, _ in ready], [p for _, _, p in ready])]
            for (it, _, prompt), extra in zip(ready, extras):
                rec = {"id": it.id, "condition": condition.name, "prompt": prompt, **extra, "error": None,
                       "key": keys.get(it.id)}
                append_jsonl(path, rec)
                done[it.id] = rec
            bar.update(len(ready))
    finally:
        bar.close()
    return done


def _combined(condition: Condition, target: Target, ready: Sequence[tuple[Item, Image.Image, str]]) -> list[dict[str, Any]]:
    """``combine="confident"``: answers on the original and on the annotated image with the
    target's confidences; the annotated image's answer where it is at least as confident."""
    scored = getattr(target, "answer_scored", None)
    if scored is None:
        raise AttnPromptError(f"condition {condition.name} needs a target that reports its confidence "
                              "(a local transformers model)")
    prompts = [p for _, _, p in ready]
    originals = scored([load_image(it.image) for it, _, _ in ready], prompts)
    prompted = scored([im for _, im, _ in ready], prompts)
    out = []
    for (o_text, o_conf), (p_text, p_conf) in zip(originals, prompted):
        keep = p_conf >= o_conf
        out.append({"answer": p_text if keep else o_text, "kept": "prompted" if keep else "original",
                    "original_answer": o_text, "prompted_answer": p_text,
                    "confidence": {"original": round(o_conf, 5), "prompted": round(p_conf, 5)}})
    return out


def score_answers(benchmark: str, items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """Score answers with the benchmark's official scorer (``judge`` for GPT-judged benchmarks)."""
    spec = BENCHMARKS[benchmark]
    if spec.scorer.endswith("-judge") and judge is None:
        raise AttnPromptError(f"{benchmark} is scored by a GPT judge: give --judge MODEL (and --judge-endpoint URL)")
    if spec.score is None:
        raise AttnPromptError(f"no scorer {spec.scorer!r} for {benchmark}")
    return spec.score(items, answers, judge)


def evaluate(
    benchmark: str,
    data: str | os.PathLike[str],
    target: Target,
    conditions: str | Sequence[str],
    out: str | os.PathLike[str],
    *,
    clip: Any = None,
    lvlm: Any = None,
    preset: str | None = None,
    masks_dir: str | os.PathLike[str] | None = None,
    presets_dir: str | os.PathLike[str] | None = None,
    judge: Any = None,
    limit: int | None = None,
    data_options: Mapping[str, Any] | None = None,
    items: Sequence[Item] | None = None,
    batch_size: int = 8,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Run ``conditions`` of ``benchmark`` on ``target`` and write the run folder (see the module doc).

    ``clip`` / ``lvlm``: the auxiliary for the ``api-clip`` / ``api-lvlm`` conditions: a model name
    (hub id, folder, shipped name) or a loaded :class:`attnprompt.Prompter`. ``preset`` is the
    mask preset for both; without it each auxiliary uses the benchmark's preset
    (:mod:`attnprompt.bench.presets`, extended by the preset files in ``presets_dir``). ``data`` is the release folder or ``hf:ID[@split]``
    (:func:`~attnprompt.bench.benchmarks.load_data`); ``items`` skips reading it (already read, as
    the command line does before loading any model). Returns the content of ``scores.json``.
    ``device`` / ``dtype`` are those of auxiliaries given by name.

    A rerun into the same ``out`` keeps only the answers that the current settings would
    produce (see :mod:`attnprompt.bench.keys`) and asks again for the rest.
    """
    from ..prompter import Prompter

    if benchmark not in BENCHMARKS:
        raise AttnPromptError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    if batch_size < 1:
        raise AttnPromptError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise AttnPromptError(f"limit must be at least 1, got {limit}")
    conds = get_conditions(conditions if isinstance(conditions, str) else list(conditions))
    kind = BENCHMARKS[benchmark].scorer
    if kind.endswith("-judge") and judge is None:
        raise AttnPromptError(f"{benchmark} is scored by a GPT judge: give --judge MODEL (and --judge-endpoint URL)")
    masks_needed = {c.mask for c in conds if c.mask}
    auxiliaries = {"clip": clip, "lvlm": lvlm}
    for m in sorted(masks_needed):
        if auxiliaries[m] is None:
            raise AttnPromptError(f"the {m} conditions need an auxiliary model: give --aux-{m} MODEL")
    chosen = {m: benchmark_preset(benchmark, m, preset, presets_dir) for m in sorted(masks_needed)}
    if items is None:
        items = load_data(benchmark, data, limit=limit, **dict(data_options or {}))
    if not items:
        raise AttnPromptError(f"{benchmark}: no items to evaluate in {data}")
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "answers").mkdir(exist_ok=True)
    except OSError as exc:
        raise AttnPromptError(f"cannot use {root} as the run folder: {exc.strerror or exc}") from None
    names = [c.name for c in conds]
    _check_run(root, {"benchmark": benchmark, "data": str(data), "target": target.name, "conditions": names,
                      "limit": limit, "preset": preset,
                      "auxiliary": {m: _model_name(auxiliaries[m]) for m in sorted(masks_needed)}})

    multi = _takes_several_images(target)
    images: dict[Any, Mapping[str, Sequence[str | Exception]]] = {None: {}}
    counts = MaskCounts()
    used_presets: dict[str, dict[str, Any]] = {}
    folder = Path(masks_dir) if masks_dir else root / "masks"
    wanted = [(src, _query(it)) for it in items for src in _sources(it, multi)]
    for m in sorted(masks_needed):
        aux = auxiliaries[m]
        if isinstance(aux, Prompter):
            prompter, source = aux, "the settings of the Prompter given"
        else:
            prompter, source = Prompter(str(aux), kind=m, preset=chosen[m][0], device=device,
                                         dtype=dtype), chosen[m][1]
        used_presets[m] = {"settings": prompter.config.to_dict(), "source": source}
        # one set of prompt images per distinct mask setting (api-clip, api-clip:blur, ...), all in
        # one content-addressed store: a setting already made (by another condition, benchmark or
        # run) is reused
        for settings in dict.fromkeys(c.settings for c in conds if c.mask == m):
            variant = prompter
            if settings:
                variant = Prompter(auxiliary=prompter.auxiliary, preset=prompter.config, **dict(settings))
            if STYLES[variant.config.style].images > 1 and not getattr(target, "multi_image", False):
                raise AttnPromptError(f"style {variant.config.style} gives {STYLES[variant.config.style].images} "
                                      f"images per question; target {target.name} takes one")
            _say(progress, f"attention prompts from {_model_name(aux)} -> {folder}")
            made, computed, reused = make_masks(wanted, variant, folder, batch_size=batch_size, progress=progress)
            per_item: dict[str, list[str | Exception]] = {}
            position = 0
            for it in items:
                n = len(_sources(it, multi))
                per_item[it.id] = made[position:position + n]
                position += n
            images[(m, settings)] = per_item
            # every further condition with the same auxiliary and settings reuses the whole set
            uses = sum(c.mask == m and c.settings == settings for c in conds)
            ok = sum(isinstance(p, str) for p in made)
            counts.add(m, computed, reused + ok * (uses - 1), len(made) - ok)

    records: dict[str, dict[str, dict[str, Any]]] = {}
    identity, digests = target_identity(target), FileDigests()
    order = ([get_conditions("original")[0]] if any(c.reflects for c in conds) and "original" not in names else []) + [
        c for c in conds if c.name == "original"] + [c for c in conds if c.name != "original"]
    for c in order:
        previous = None
        if c.reflects:
            previous = {k: r["answer"] for k, r in records["original"].items()}
        records[c.name] = _answer_condition(c, items, target, images[(c.mask, c.settings) if c.mask else None],
                                            previous,
                                            root / "answers" / f"{safe_stem(c.name)}.jsonl",
                                            chunk=max(1, batch_size) * 4, progress=progress, multi=multi,
                                            identity=identity, digests=digests)

    result: dict[str, Any] = {"benchmark": benchmark, "target": target.name, "n_items": len(items),
                              "metric": headline_name(kind), "category_metric": category_name(kind),
                              "conditions": {}, "baseline": None, "comparisons": {}, "masks": counts.to_dict(),
                              "presets": used_presets}
    scores: dict[str, Score] = {}
    for c in conds:
        answered = {k: str(r["answer"]) for k, r in records[c.name].items()}
        scored_items = [it for it in items if it.id in answered]
        if not scored_items:
            raise AttnPromptError(f"condition {c.name}: no item could be answered (see {root / 'answers'})")
        s = score_answers(benchmark, scored_items, answered, judge)
        scores[c.name] = s
        result["conditions"][c.name] = {
            "overall": s.overall, "per_category": s.per_category, "extra": s.extra, "units": s.units,
            "answered": len(scored_items), "errors": len(items) - len(scored_items),
        }
        result["conditions"][c.name]["official"] = dict(official_metrics(kind, result["conditions"][c.name]))
    baseline = "original" if "original" in scores else names[0]
    result["baseline"] = baseline
    for name, s in scores.items():
        if name == baseline:
            continue
        shared = sorted(set(s.units) & set(scores[baseline].units))
        cmp = paired_bootstrap([scores[baseline].units[k] for k in shared], [s.units[k] for k in shared],
                               n_boot=n_boot, seed=seed)
        scale = _unit_scale(scores[baseline])
        cmp.update(diff=round(cmp["diff"] * scale, 4), ci=[round(v * scale, 4) for v in cmp["ci"]])
        result["comparisons"][name] = cmp
    atomic_write_text(root / "scores.json", json.dumps(result, indent=1) + "\n")
    write_table([result], root)
    write_report_html(root, result, items, records, images, {c.name: c.mask for c in order})
    return result


def _unit_scale(score: Score) -> float:
    """Units are fractions (0-1) while headlines are in % for most benchmarks: report CIs in %."""
    units = list(score.units.values())
    if not units:
        return 1.0
    mean = sum(units) / len(units)
    return 100.0 if max(units) <= 1.0 and abs(score.overall - 100.0 * mean) < 1e-6 * max(1.0, score.overall) else 1.0


def _model_name(aux: Any) -> str:
    """A readable name: a hub id as given, a local folder (shipped models included) by its own name."""
    if aux is None:
        return "none"
    inner = getattr(aux, "auxiliary", None)
    name = str(getattr(inner, "name", None) or aux)
    return Path(name).name if os.path.isabs(name) or os.path.isdir(name) else name


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)




# --- tables ---------------------------------------------------------------------------------------


def _kind(benchmark: str) -> str:
    spec = BENCHMARKS.get(benchmark)
    return spec.scorer if spec else ""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _rows(results: Sequence[Mapping[str, Any]], official: bool = False) -> tuple[list[str], list[list[str]]]:
    """Rows: (target, condition); columns: per benchmark the headline (its metric in the header),
    the difference to the baseline with its 95% CI and the number of changed units, then the
    per-category scores; with ``official`` also every official figure (:mod:`.metrics`)."""
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in results))
    cats = {b: list(dict.fromkeys(c for r in results if r["benchmark"] == b
                                  for cond in r["conditions"].values() for c in cond["per_category"]))
            for b in benchmarks}
    names = {b: list(dict.fromkeys(m for r in results if r["benchmark"] == b for cond in r["conditions"].values()
                                   for m, _ in official_metrics(_kind(b), cond))) if official else []
             for b in benchmarks}
    header = ["target", "condition"]
    for b in benchmarks:
        header += [f"{b} {headline_name(_kind(b))}", f"{b} diff [95% CI]", f"{b} changed", f"{b} answered"]
        header += [f"{b}:{c}" for c in cats[b]] + [f"{b} | {m}" for m in names[b][1:]]
    table: dict[tuple[str, str], dict[str, str]] = {}
    for r in results:
        b = r["benchmark"]
        for name, cond in r["conditions"].items():
            row = table.setdefault((r["target"], name), {})
            row[f"{b} {headline_name(_kind(b))}"] = f"{cond['overall']:.2f}"
            cmp = r["comparisons"].get(name)
            row[f"{b} diff [95% CI]"] = (f"{cmp['diff']:+.2f} [{cmp['ci'][0]:+.2f}, {cmp['ci'][1]:+.2f}]"
                                         if cmp else "baseline")
            row[f"{b} changed"] = str(cmp["changed"]) if cmp else ""
            # failed items are left out of the score: the table must show how many
            answered = cond.get("answered")
            row[f"{b} answered"] = "" if answered is None else f"{answered}/{answered + cond.get('errors', 0)}"
            for c in cats[b]:
                v = cond["per_category"].get(c)
                row[f"{b}:{c}"] = "" if v is None else f"{v:.2f}"
            if official:
                for m, v in official_metrics(_kind(b), cond)[1:]:
                    row[f"{b} | {m}"] = _fmt(v)
    body = [[t, cname] + [row.get(h, "") for h in header[2:]] for (t, cname), row in table.items()]
    return header, body


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def format_table(results: Sequence[Mapping[str, Any]], *, details: bool = False) -> str:
    """A Markdown table of one or more runs' ``scores.json``: headline, difference to the baseline
    and per-category scores, with a line naming each column's metric; with ``details`` also, per
    benchmark, every official figure (rows) for every condition (columns), and the mask counts."""
    header, body = _rows(results)
    lines = _markdown(header, body)
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in results))
    lines.append("")
    lines += [f"{b}: {headline_name(_kind(b))}; {b}:CATEGORY = {category_name(_kind(b))}; diff = condition - baseline "
              "with a paired-bootstrap 95% CI; changed = units whose score changed" for b in benchmarks]
    if not details:
        return "\n".join(lines) + "\n"
    for b in benchmarks:
        runs = [(r, name, cond) for r in results if r["benchmark"] == b for name, cond in r["conditions"].items()]
        metrics = list(dict.fromkeys(m for _, _, cond in runs for m, _ in official_metrics(_kind(b), cond)))
        values = [dict(official_metrics(_kind(b), cond)) for _, _, cond in runs]
        lines += ["", f"## {b}: official metrics", ""]
        lines += _markdown(["metric"] + [f"{r['target']} / {name}" for r, name, _ in runs],
                           [[m] + [_fmt(v.get(m)) for v in values] for m in metrics])
    for r in results:
        masks = r.get("masks")
        if masks and (masks.get("computed") or masks.get("reused") or masks.get("failed")):
            lines += ["", f"{r['benchmark']} / {r['target']}: masks: {masks['computed']} computed, "
                          f"{masks['reused']} reused, {masks.get('failed', 0)} failed"]
    return "\n".join(lines) + "\n"


def write_table(results: Sequence[Mapping[str, Any]], folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``table.md`` (the table, the metric legend, every official figure, the mask counts)
    and ``table.csv`` (one row per target and condition, every figure a column) into ``folder``."""
    header, body = _rows(results, official=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(body)
    md, csv_path = Path(folder) / "table.md", Path(folder) / "table.csv"
    atomic_write_text(md, format_table(results, details=True))
    atomic_write_text(csv_path, buf.getvalue())
    return md, csv_path


def read_results(folders: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The ``scores.json`` of each run folder (``attnprompt report``)."""
    out = []
    for f in folders:
        path = Path(f) / "scores.json"
        if not path.is_file():
            raise AttnPromptError(f"{f} has no scores.json: is it an `attnprompt eval` output folder?")
        try:
            result = load_json(path.read_bytes(), str(path))
        except OSError as exc:
            raise AttnPromptError(f"cannot read {path}: {exc.strerror or exc}") from None
        problem = _results_problem(result)
        if problem:
            raise AttnPromptError(f"{path} is not the scores.json of an `attnprompt eval` run: {problem}")
        out.append(result)
    return out


def _results_problem(result: Any) -> str | None:
    """What is missing from a ``scores.json`` for the table, or ``None``."""
    if not isinstance(result, dict):
        return f"expected a JSON object, got {type(result).__name__}"
    for key, kind in (("benchmark", str), ("target", str), ("conditions", dict), ("comparisons", dict)):
        if not isinstance(result.get(key), kind):
            return f"{key!r} missing or not a {kind.__name__}"
    for name, cond in result["conditions"].items():
        if not isinstance(cond, dict) or not isinstance(cond.get("overall"), (int, float)) \
                or not isinstance(cond.get("per_category", {}), dict) \
                or not all(isinstance(v, (int, float)) for v in cond.get("per_category", {}).values()):
            return f"condition {name!r} lacks a numeric 'overall' or numeric 'per_category' scores"
        if not isinstance(cond.get("answered", 0), int) or not isinstance(cond.get("errors", 0), int):
            return f"condition {name!r}: 'answered' and 'errors' must be integers"
    for name, cmp in result["comparisons"].items():
        if not isinstance(cmp, dict) or not isinstance(cmp.get("diff"), (int, float)) \
                or not isinstance(cmp.get("ci"), list) or len(cmp["ci"]) != 2:
            return f"comparison {name!r} lacks 'diff' and a two-value 'ci'"
    return None
