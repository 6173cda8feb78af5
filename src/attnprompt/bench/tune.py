"""``attnprompt tune``: which mask settings and prompt style help one target on one benchmark?

For one auxiliary model, one target and one benchmark (a validation split), a grid over the
knobs of :class:`attnprompt.MaskConfig` (layers, comp layer, enhance, kernel, gray, geometry,
style...): one knob at a time around a base setting, then every knob at its best value together.
Each setting is one :func:`attnprompt.bench.run.evaluate` run (``original`` and the attention
prompt), scored by the benchmark's own scorer with a paired bootstrap CI against ``original``.
The best setting is written as a preset file that ``--preset FILE`` loads everywhere, with
ablation plots (one panel per knob, score with its CI, as the paper's ablation figures) and an
HTML page that shows them beside example images.

The run folder::

    OUT/tune.json                 the run's identity, every setting's scores, the choice
    OUT/preset.json               the chosen setting as a preset file (``attnprompt-preset`` v1)
    OUT/table.md                  the table that is also printed
    OUT/ablation.png, index.html  the plots and the page
    OUT/settings/<key>/           one ``attnprompt eval`` run folder per distinct mask setting
                                  (``key``: a digest of every mask setting)
    OUT/masks/                    the content-addressed store of prompt images (bench.masks),
                                  shared by every setting
    OUT/cache/                    the target's answers, keyed by model, image pixels and prompt

Reuse: a setting whose mask settings equal another's (the base value of a knob, the combination
of single-knob winners) is the same folder; a prompt image is made once per image, query and
mask setting (the mask store); the target's answers to ``original`` and to any image seen before
come from the answer cache; a rerun loads finished settings' scores and resumes a setting cut
short where its answers stop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..config import MaskConfig, parse_layers, parse_value
from ..errors import AttnPromptError
from ..files import atomic_write_text, read_jsonl_tolerant
from .stats import paired_bootstrap

__all__ = ["Setting", "default_grid", "default_style_names", "parse_grid", "plan", "tune", "format_tune_table", "preset_document",
           "KNOBS", "PRESET_FORMAT"]

PRESET_FORMAT = "attnprompt-preset"
#: The knobs a grid may vary (``style`` and others only where :class:`MaskConfig` has them).
KNOBS = ("layers", "comp_layer", "enhance", "kernel", "interpolation", "gray", "geometry", "style",
         "strict_order", "reduction", "max_new_tokens")
CONDITION = {"clip": "api-clip", "lvlm": "api-lvlm"}


@dataclass(frozen=True)
class Setting:
    """One point of the grid: ``overrides`` of the base :class:`MaskConfig` (empty for the base)."""

    name: str
    knob: str | None
    value: Any
    overrides: Mapping[str, Any]


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(MaskConfig)}


def default_style_names() -> list[str]:
    """The registered styles that make one image (``vicrop``'s two need a multi-image target)."""
    from ..styles import STYLES

    return [name for name, style in STYLES.items() if getattr(style, "images", 1) == 1]


def default_grid(kind: str, num_layers: int, base: MaskConfig) -> dict[str, list[Any]]:
    """The grid tried when ``--grid`` is not given: each single layer and all layers, the comp
    layer (or none), enhance, kernel (sizes on the auxiliary's own grid), gray, geometry and every
    registered one-image prompt style."""
    grid: dict[str, list[Any]] = {}
    if kind == "clip":
        grid["layers"] = [(i,) for i in range(num_layers)] + [tuple(range(num_layers))]
        grid["comp_layer"] = [-2, -1, None]
    grid["enhance"] = [1.0, 2.0, 5.0, 10.0]
    grid["kernel"] = [1, 3, 5]
    grid["gray"] = [0, 128, 200]
    from ..config import GEOMETRIES

    grid["geometry"] = [g for g in GEOMETRIES if g != "stretch" and (kind == "clip" or g != "tiled")]
    grid["style"] = default_style_names()
    return grid


def _value(knob: str, text: str, num_layers: int) -> Any:
    text = text.strip()
    if knob == "layers":
        if text.lower() == "all":
            return tuple(range(num_layers))
        if text.lower() in ("none", "default"):
            return None
        return parse_layers([text])
    return parse_value(text)


def parse_grid(specs: Sequence[str], num_layers: int) -> dict[str, list[Any]]:
    """``["kernel=1,3,5", "layers=-1,-3..-1,all", "comp_layer=-2,none", "style=alpha,blur"]`` ->
    ``{knob: [values]}``. A ``layers`` value is one layer, an inclusive range or ``all``."""
    grid: dict[str, list[Any]] = {}
    fields = _fields()
    for spec in specs:
        for part in spec.split(";"):
            if not part.strip():
                continue
            knob, sep, values = part.partition("=")
            knob = knob.strip().replace("-", "_")
            if not sep or not values.strip():
                raise AttnPromptError(f"bad --grid {part!r}: use KNOB=V1,V2 (e.g. kernel=1,3,5)")
            if knob not in fields or knob not in KNOBS:
                known = [k for k in KNOBS if k in fields]
                raise AttnPromptError(f"unknown grid knob {knob!r}; choose from {', '.join(known)}")
            if knob in grid:
                raise AttnPromptError(f"--grid names {knob} twice")
            grid[knob] = list(dict.fromkeys(_value(knob, v, num_layers) for v in values.split(",") if v.strip()))
    return grid


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        if len(value) > 2 and value == tuple(range(value[0], value[-1] + 1)):
            return f"{value[0]}..{value[-1]}"
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "none" if value is None else str(value)


def base_value(base: MaskConfig, knob: str, grid_side: int | None) -> Any:
    """The base's value of ``knob`` as the grid means it (the kernel: its size on the auxiliary's grid)."""
    if knob == "kernel" and base.kernel_grid is not None and grid_side:
        from ..maps import grid_kernel

        return grid_kernel(base.kernel, grid_side, base.kernel_grid)
    return getattr(base, knob)


def plan(base: MaskConfig, grid: Mapping[str, Sequence[Any]], check: Callable[[MaskConfig], None],
         grid_side: int | None = None) -> list[Setting]:
    """The base, then each knob's values one at a time (a value equal to the base's is the base).
    Kernel values are filter sizes on the auxiliary's own token grid (``grid_side``), so a
    scale-aware base (``kernel_grid``) is compared with plain sizes. ``check`` validates a setting
    against the auxiliary before anything runs."""
    out = [Setting("base", None, None, {})]
    for knob, values in grid.items():
        for v in values:
            overrides = {knob: v, "kernel_grid": None} if knob == "kernel" and base.kernel_grid is not None else {knob: v}
            config = base.replace(**overrides)
            check(config)
            value = getattr(config, knob)
            if value != base_value(base, knob, grid_side):
                out.append(Setting(f"{knob}={_show(v)}", knob, value,
                                   {k: getattr(config, k) for k in overrides}))
    return out


def config_key(config: MaskConfig) -> str:
    """A digest of every mask setting: equal settings share one folder of images and answers."""
    blob = json.dumps(config.to_dict(), sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _identity(benchmark: str, data: str, target: str, auxiliary: str, kind: str, limit: int | None,
              data_options: Mapping[str, Any]) -> dict[str, Any]:
    # what the settings' folders depend on; the base and the grid may change between reruns
    return {"benchmark": benchmark, "data": str(Path(data).absolute()), "target": target, "auxiliary": auxiliary,
            "kind": kind, "limit": limit, "data_options": dict(data_options)}


def _check_identity(path: Path, identity: dict[str, Any]) -> None:
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    previous = json.loads(json.dumps(old.get("run", {})))
    now = json.loads(json.dumps(identity))
    for key, value in now.items():
        if key in previous and previous[key] != value:
            raise AttnPromptError(f"{path.parent} holds a tune run with another {key} ({previous[key]!r}, now "
                                  f"{value!r}): use another --out to keep both")


def _per_kind(result: Mapping[str, Any], condition: str, kinds: Mapping[str, str], scale: float,
              n_boot: int, seed: int) -> dict[str, Any]:
    """Per question kind: the prompt's score, the original's, and the paired difference with its CI."""
    base_units = result["conditions"]["original"]["units"]
    units = result["conditions"][condition]["units"]
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(kinds.values()):
        ids = [k for k in units if kinds.get(k) == kind and k in base_units]
        if not ids:
            continue
        cmp = paired_bootstrap([base_units[k] for k in ids], [units[k] for k in ids], n_boot=n_boot, seed=seed)
        out[kind] = {"n": len(ids), "original": round(scale * float(np.mean([base_units[k] for k in ids])), 3),
                     "score": round(scale * float(np.mean([units[k] for k in ids])), 3),
                     "diff": round(scale * cmp["diff"], 3), "ci": [round(scale * v, 3) for v in cmp["ci"]]}
    return out


def _summary(setting: Setting, key: str, result: Mapping[str, Any], condition: str, kinds: Mapping[str, str],
             n_boot: int, seed: int) -> dict[str, Any]:
    cond = result["conditions"][condition]
    cmp = result["comparisons"][condition]
    original = result["conditions"]["original"]["overall"]
    units = list(result["conditions"]["original"]["units"].values())
    # units are 0-1 where the headline is in % (as run._unit_scale): per-kind numbers in the headline's unit
    scale = 100.0 if units and max(units) <= 1.0 and abs(original - 100.0 * float(np.mean(units))) < 1e-6 * max(
        1.0, original) else 1.0
    return {"name": setting.name, "knob": setting.knob, "value": setting.value, "overrides": dict(setting.overrides),
            "key": key, "score": cond["overall"], "original": original, "diff": cmp["diff"], "ci": cmp["ci"],
            "changed": cmp["changed"], "n": cmp["n"],
            "per_kind": _per_kind(result, condition, kinds, scale, n_boot, seed) if kinds else {}}


def _combination(base: MaskConfig, rows: Sequence[Mapping[str, Any]]) -> Setting | None:
    """Every knob at its best value (by the difference to original; the base's value on ties)."""
    base_row = next(r for r in rows if r["knob"] is None)
    best: dict[str, tuple[float, Any]] = {}
    for r in rows:
        if r["knob"] is not None and r["diff"] > best.get(r["knob"], (base_row["diff"], None))[0]:
            best[r["knob"]] = (r["diff"], r["value"])
    overrides = {k: v for k, (_, v) in best.items()}
    if len(overrides) < 2:  # none or one knob moved: already measured
        return None
    name = "best of each: " + ", ".join(f"{k}={_show(v)}" for k, v in overrides.items())
    return Setting(name, None, None, overrides)


def preset_document(config: MaskConfig, kind: str, benchmark: str, source: str) -> dict[str, Any]:
    """A preset file's content (format ``attnprompt-preset`` version 1)."""
    settings = json.loads(json.dumps(config.to_dict(), default=list))
    return {"format": PRESET_FORMAT, "version": 1, "kind": kind, "settings": settings, "benchmark": benchmark,
            "source": source}


def tune(
    benchmark: str,
    data: str | os.PathLike[str],
    target: Any,
    out: str | os.PathLike[str],
    *,
    auxiliary: Any,
    kind: str = "clip",
    base: MaskConfig | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    combine: bool = True,
    judge: Any = None,
    limit: int | None = None,
    data_options: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    n_boot: int = 2000,
    seed: int = 0,
    examples: int = 6,
    choose: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the grid (see the module doc) and write the run folder; returns ``tune.json``'s content.

    ``auxiliary``: a loaded :class:`attnprompt.Prompter` (its config is the base unless ``base``
    is given). ``grid``: ``{knob: [values]}`` (default: :func:`default_grid`). ``target``: an
    ``attnprompt.bench.run.Target`` (answers are cached if it has a cache). ``choose=False``
    only measures (no preset file; for reporting the same settings on a test split).
    ``progress``: progress bars; ``log``: one line per setting (default: stderr with ``progress``).
    """
    from ..prompter import Prompter
    from .run import evaluate

    if kind not in CONDITION:
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}")
    aux = auxiliary.auxiliary
    base = base or auxiliary.config
    num_layers = int(getattr(aux, "num_layers", 0) or 0)
    grid = dict(grid) if grid is not None else default_grid(kind, num_layers, base)
    grid_side = getattr(aux, "grid_size", None)
    settings = plan(base, grid, aux.check_config, grid_side)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    from .run import _model_name

    identity = _identity(benchmark, str(data), target.name, _model_name(auxiliary), kind, limit, data_options or {})
    _check_identity(root / "tune.json", identity)
    kinds = _item_kinds(data)
    condition = CONDITION[kind]
    from .benchmarks import load_data

    shown = load_data(benchmark, data, limit=limit, **dict(data_options or {}))[:max(0, examples)]
    say = log or ((lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None))

    rows: list[dict[str, Any]] = []

    def run(setting: Setting, index: int, total: int) -> None:
        config = base.replace(**setting.overrides)
        key = config_key(config)
        saved = root / "settings" / key / "scores.json"
        prompter = Prompter(_model_name(auxiliary), kind=kind, preset=config, auxiliary=aux)
        if saved.is_file():  # finished before (in this run, an earlier one, or under another name)
            row = _summary(setting, key, json.loads(saved.read_text(encoding="utf-8")), condition, kinds, n_boot, seed)
            say(f"[{index}/{total}] {setting.name}: reused ({_fmt_row(row)})")
        else:
            say(f"[{index}/{total}] {setting.name} ...")
            result = evaluate(benchmark, data, target, ["original", condition], root / "settings" / key,
                              clip=prompter if kind == "clip" else None, lvlm=prompter if kind == "lvlm" else None,
                              masks_dir=root / "masks", judge=judge, limit=limit,
                              data_options=data_options, batch_size=batch_size, n_boot=n_boot, seed=seed,
                              progress=progress)
            row = _summary(setting, key, result, condition, kinds, n_boot, seed)
            say(f"[{index}/{total}] {setting.name}: {_fmt_row(row)}")
        row["config"] = config.to_dict()
        row["examples"] = _stored_images(shown, prompter, root)
        rows.append(row)
        _write(root, identity, rows, None)  # a crash keeps every finished setting

    for i, s in enumerate(settings, 1):
        run(s, i, len(settings) + int(combine))
    if combine:
        combo = _combination(base, rows)
        if combo is not None:
            run(combo, len(settings) + 1, len(settings) + 1)
        else:
            say(f"[{len(settings) + 1}/{len(settings) + 1}] no combination: fewer than two knobs beat the base")
    chosen = max(rows, key=lambda r: (r["diff"], r["knob"] is None))  # the base wins ties
    if choose:
        config = base.replace(**chosen["overrides"])
        source = (f"attnprompt tune: {benchmark} at {data} ({chosen['n']} units), target {target.name}, auxiliary "
                  f"{_model_name(auxiliary)}; {chosen['name']}: {chosen['score']:.2f}, {chosen['diff']:+.2f} "
                  f"[{chosen['ci'][0]:+.2f}, {chosen['ci'][1]:+.2f}] vs original")
        preset = preset_document(config, kind, benchmark, source)
        atomic_write_text(root / "preset.json", json.dumps(preset, indent=1) + "\n")
    document = _write(root, identity, rows, chosen["name"] if choose else None)
    atomic_write_text(root / "table.md", format_tune_table(document))
    _plots_and_page(root, document, grid, base, grid_side, shown)
    return document


def _item_kinds(data: str | os.PathLike[str]) -> dict[str, str]:
    from ..shapes.folders import read_item_kinds

    return read_item_kinds(data)


def _fmt_row(row: Mapping[str, Any]) -> str:
    return f"{row['score']:.2f}, {row['diff']:+.2f} [{row['ci'][0]:+.2f}, {row['ci'][1]:+.2f}] vs original"


def _write(root: Path, identity: dict[str, Any], rows: list[dict[str, Any]], chosen: str | None) -> dict[str, Any]:
    document = {"run": identity, "base": rows[0]["config"] if rows else None, "original": rows[0]["original"] if rows else None, "chosen": chosen,
                "settings": rows}
    atomic_write_text(root / "tune.json", json.dumps(document, indent=1, default=list) + "\n")
    return document


def format_tune_table(document: Mapping[str, Any]) -> str:
    """Markdown: one row per setting (score, difference to original with its 95% CI, changed
    units, per question kind where the data say), the chosen one marked."""
    rows = document["settings"]
    kinds = list(dict.fromkeys(k for r in rows for k in r.get("per_kind", {})))
    header = ["setting", "score", "diff vs original [95% CI]", "changed"] + [f"{k} diff" for k in kinds]
    lines = [f"original: {document['original']:.2f}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        mark = " **(chosen)**" if r["name"] == document.get("chosen") else ""
        cells = [r["name"] + mark, f"{r['score']:.2f}", f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]",
                 str(r["changed"])]
        for k in kinds:
            pk = r.get("per_kind", {}).get(k)
            cells.append(f"{pk['diff']:+.1f} [{pk['ci'][0]:+.1f}, {pk['ci'][1]:+.1f}]" if pk else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- plots and page -------------------------------------------------------------------------------


def _stored_images(items: Sequence[Any], prompter: Any, root: Path) -> dict[str, str]:
    """Where the mask store keeps each shown item's prompt image (relative to ``root``)."""
    from .masks import auxiliary_identity, file_digest, mask_key

    identity = auxiliary_identity(prompter)
    out = {}
    for it in items:
        try:
            path = root / "masks" / f"{mask_key(file_digest(it.image), it.query, identity)}.png"
        except OSError:
            continue
        if path.is_file():
            out[it.id] = str(path.relative_to(root))
    return out


def _plots_and_page(root: Path, document: Mapping[str, Any], grid: Mapping[str, Sequence[Any]], base: MaskConfig,
                    grid_side: int | None, items: Sequence[Any]) -> None:
    rows = document["settings"]
    base_row = next(r for r in rows if r["knob"] is None and not r["overrides"])
    panels = [k for k in grid if any(r["knob"] == k for r in rows)]
    if panels:
        ablation_png(root / "ablation.png", rows, base_row, panels, base, grid_side, document["original"],
                     document["run"]["benchmark"])
    _page(root, document, panels, items)


def ablation_png(path: Path, rows: Sequence[Mapping[str, Any]], base_row: Mapping[str, Any], panels: Sequence[str],
                 base: MaskConfig, grid_side: int | None, original: float, benchmark: str) -> None:
    """One panel per knob: the score at each value with its 95% CI (the paired bootstrap of the
    difference to original, shifted by original's score), the base value in another colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows), squeeze=False, sharey=True)
    for ax, knob in zip(axes.flat, panels):
        points = [(base_value(base, knob, grid_side), base_row)] + [(r["value"], r) for r in rows if r["knob"] == knob]
        points.sort(key=lambda p: _order(p[0]))
        xs = np.arange(len(points))
        ys = np.array([original + p[1]["diff"] for p in points])
        lo = ys - np.array([original + p[1]["ci"][0] for p in points])
        hi = np.array([original + p[1]["ci"][1] for p in points]) - ys
        colors = ["tab:orange" if p[1] is base_row else "tab:blue" for p in points]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="gray", capsize=3)
        ax.scatter(xs, ys, c=colors, zorder=3)
        ax.plot(xs, ys, color="tab:blue", alpha=0.4)
        ax.axhline(original, color="k", linestyle="--", linewidth=0.8)
        ax.set_xticks(xs, [_show(p[0]) for p in points], rotation=30 if len(points) > 4 else 0, fontsize=8)
        ax.set_title(knob.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"{benchmark} score")
    fig.suptitle(f"score vs each knob (95% CI; dashed: original {original:.1f}; orange: base)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _order(value: Any) -> tuple:
    if value is None:
        return (2, 0, "")
    if isinstance(value, tuple):
        return (0, len(value) > 1, value[0] if len(value) == 1 else -1)
    if isinstance(value, (int, float)):
        return (0, 0, value)
    return (1, 0, str(value))


def _answers(root: Path, key: str, condition: str) -> dict[str, str]:
    from ..files import safe_stem

    path = root / "settings" / key / "answers" / f"{safe_stem(condition)}.jsonl"
    return {str(r["id"]): str(r.get("answer")) for r in read_jsonl_tolerant(path)} if path.exists() else {}


def _page(root: Path, document: Mapping[str, Any], panels: Sequence[str], items: Sequence[Any]) -> None:
    """index.html: the table, the ablation plot and, for a few items, the original and the
    annotated images of the base, the chosen setting and each style, with the target's answers."""
    from PIL import Image

    rows = document["settings"]
    run = document["run"]
    condition = CONDITION[run["kind"]]
    base_row = rows[0]
    chosen = next((r for r in rows if r["name"] == document["chosen"]), base_row)
    shown = [base_row] + ([chosen] if chosen is not base_row else [])
    shown += [r for r in rows if r["knob"] == "style" and r not in shown]
    benchmark = run["benchmark"]
    folder = root / "examples"
    folder.mkdir(exist_ok=True)
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>attnprompt tune: {esc(benchmark)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 6px;font-size:13px}img.s{width:160px;image-rendering:pixelated}</style>",
             f"<h1>attnprompt tune: {esc(benchmark)}</h1>",
             f"<p>target <b>{esc(run['target'])}</b>, auxiliary <b>{esc(run['auxiliary'])}</b> ({esc(run['kind'])}), "
             f"data {esc(run['data'])}"
             + (f"; chosen: <b>{esc(chosen['name'])}</b> (written to <a href='preset.json'>preset.json</a>, load "
                f"it with <code>--preset preset.json</code>)</p>" if document["chosen"] else " (measured only)</p>")]
    table = format_tune_table(document).splitlines()
    parts.append(f"<p>{esc(table[0])}</p><table>")
    for i, line in enumerate(table[2:]):
        if i == 1:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        parts.append("<tr>" + "".join(f"<{tag}>{esc(c.replace('**', ''))}</{tag}>" for c in cells) + "</tr>")
    parts.append("</table>")
    if panels:
        parts.append("<h2>Ablations</h2><img src='ablation.png' alt='score vs each knob'>")
    if items:
        parts.append("<h2>Examples</h2><table><tr><th>question</th><th>original</th>"
                     + "".join(f"<th>{esc(r['name'])}</th>" for r in shown) + "</tr>")
        original_answers = _answers(root, base_row["key"], "original")
        for n, it in enumerate(items):
            src = folder / f"{n}.png"
            try:
                with Image.open(it.image) as opened:
                    im = opened.convert("RGB")
                    im.thumbnail((320, 320))
                    im.save(src)
            except OSError:
                continue
            cells = [f"<td>{esc(it.question)}<br><i>reference: {esc(it.answers[0] if it.answers else '')}</i></td>",
                     f"<td><img class=s src='examples/{n}.png'><br>{esc(original_answers.get(it.id, ''))}</td>"]
            for r in shown:
                image = r.get("examples", {}).get(it.id)
                answer = _answers(root, r["key"], condition).get(it.id, "")
                img = f"<img class=s src='{esc(image)}'>" if image else "(none)"
                cells.append(f"<td>{img}<br>{esc(answer)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    atomic_write_text(root / "index.html", "\n".join(parts) + "\n")
