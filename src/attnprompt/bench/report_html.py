"""``OUT/report.html`` of an ``attnprompt eval`` run: a page a person can read.

Three parts: a table of every metric of the benchmark per condition (the headline, every
other official figure of the benchmark, per-category scores, and the paired difference to the
baseline with its 95% CI); a bar chart of the conditions (scores, and differences with their
CIs); and the items whose answer changed between the baseline and each other condition (a changed score where
the benchmark scores items one by one, else a changed answer), with the image the target saw under
each, both answers and the truth. Thumbnails go to ``OUT/report/``.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image

from ..files import atomic_save_image, atomic_write_text, load_image, safe_stem
from .items import Item

__all__ = ["write_report_html", "MAX_CHANGED_SHOWN"]

MAX_CHANGED_SHOWN = 40
"""Changed items shown per condition (all are counted)."""
_THUMB = 224


def _flat(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value
    elif isinstance(value, Mapping):
        for key, sub in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), sub, out)


def _metrics(cond: Mapping[str, Any]) -> dict[str, float]:
    """The condition's numbers, flattened: ``overall``, every number of ``extra`` (nested keys
    joined by dots) and ``category: name``."""
    out: dict[str, float] = {"overall": cond["overall"]}
    if cond.get("official"):  # every figure of the official evaluator, already named
        _flat("", cond["official"], out)
        return out
    _flat("", cond.get("extra", {}), out)
    for cat, value in cond.get("per_category", {}).items():
        out[f"category: {cat}"] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):  # fractions get three decimals, percentages and points two
        return "" if math.isnan(value) else f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"
    return html.escape(str(value))


def _table(result: Mapping[str, Any]) -> str:
    """One row per metric, one column per condition (benchmarks have many metrics, runs few conditions)."""
    conds = result["conditions"]
    values = {name: _metrics(cond) for name, cond in conds.items()}
    metrics = list(dict.fromkeys(k for v in values.values() for k in v))
    rows = [[html.escape(m), *(_fmt(values[n].get(m, "")) for n in conds)] for m in metrics]
    rows.append(["answered", *(str(c["answered"]) for c in conds.values())])
    rows.append(["errors", *(str(c["errors"]) for c in conds.values())])
    cmps = [result["comparisons"].get(n) for n in conds]
    rows.append(["diff to baseline [95% CI]", *(f"{c['diff']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"
                                                if c else "baseline" for c in cmps)])
    rows.append(["changed (better / worse)", *(f"{c['changed']} ({c['better']} / {c['worse']})" if c else ""
                                               for c in cmps)])
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["metric", *conds])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _chart(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(result["conditions"])
    overall = [result["conditions"][n]["overall"] for n in names]
    baseline = result["baseline"]
    others = [n for n in names if n != baseline and n in result["comparisons"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2 + 0.1 * len(names)), layout="constrained")
    axes[0].barh(names, overall, color=["#888" if n == baseline else "#2b6cb0" for n in names])
    axes[0].invert_yaxis()
    axes[0].set_title(f"{result['benchmark']}: score per condition")
    for y, v in enumerate(overall):
        axes[0].text(v, y, f" {v:.2f}", va="center", fontsize=8)
    if others:
        diffs = [result["comparisons"][n]["diff"] for n in others]
        lo = [d - result["comparisons"][n]["ci"][0] for n, d in zip(others, diffs)]
        hi = [result["comparisons"][n]["ci"][1] - d for n, d in zip(others, diffs)]
        axes[1].barh(others, diffs, xerr=[lo, hi], capsize=4,
                     color=["#2f855a" if d >= 0 else "#c53030" for d in diffs])
        axes[1].axvline(0, color="black", linewidth=0.8)
        axes[1].invert_yaxis()
    axes[1].set_title(f"difference to {baseline} with its paired 95% CI")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _thumb(source: str, folder: Path, name: str) -> str:
    """A small copy of an image in ``folder``; returns its path relative to the report."""
    image = load_image(source)
    image.thumbnail((_THUMB, _THUMB))
    if max(image.size) < _THUMB // 2:  # small scenes: enlarged with crisp pixels
        k = _THUMB // max(image.size)
        image = image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)
    out = folder / f"{safe_stem(name)}.png"
    if not out.exists():
        atomic_save_image(image, out)
    return f"{folder.name}/{out.name}"


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _changed(result: Mapping[str, Any], items: Sequence[Item], records: Mapping[str, Mapping[str, Mapping[str, Any]]],
             images: Mapping[str | None, Mapping[str, Any]], masks: Mapping[str, str | None], root: Path) -> str:
    baseline = result["baseline"]
    base = records.get(baseline, {})
    folder = root / "report"
    sections = []
    for name, recs in records.items():
        if name == baseline or name not in result["conditions"]:
            continue
        units = result["conditions"][name].get("units", {})
        base_units = result["conditions"][baseline].get("units", {})
        def differs(it: Item) -> bool:
            if it.id in units and it.id in base_units:  # scored per item: a changed score
                return units[it.id] != base_units[it.id]
            return not _same(str(recs[it.id]["answer"]), str(base[it.id]["answer"]))  # else a changed answer

        changed = [it for it in items if it.id in recs and it.id in base and differs(it)]
        cards = []
        for it in changed[:MAX_CHANGED_SHOWN]:
            folder.mkdir(exist_ok=True)
            prompted = images.get(masks.get(name), {}).get(it.id, it.image)
            seen = it.image if isinstance(prompted, Exception) else prompted
            pics = [(baseline, _thumb(it.image, folder, f"{it.id}-original"))]
            pics.append((name, _thumb(str(seen), folder, f"{it.id}-{name}") if seen != it.image else pics[0][1]))
            score = ""
            if it.id in units and it.id in base_units:
                score = f" &middot; score {base_units[it.id]:.2f} &rarr; {units[it.id]:.2f}"
            cards.append(
                "<div class=card>"
                + "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}"><figcaption>'
                          f"{html.escape(cap)}</figcaption></figure>" for cap, src in pics)
                + f"<p><b>{html.escape(it.id)}</b>: {html.escape(it.question)}</p>"
                f"<p>{html.escape(baseline)}: <i>{html.escape(str(base[it.id]['answer']))}</i><br>"
                f"{html.escape(name)}: <i>{html.escape(str(recs[it.id]['answer']))}</i><br>"
                f"truth: <b>{html.escape(' | '.join(dict.fromkeys(it.answers)))}</b>{score}</p></div>")
        more = (f"<p>{len(changed) - MAX_CHANGED_SHOWN} more are in answers/*.jsonl.</p>"
                if len(changed) > MAX_CHANGED_SHOWN else "")
        sections.append(f"<h2>{html.escape(name)}: {len(changed)} of {len(items)} items changed against "
                        f"{html.escape(baseline)}</h2><div class=cards>{''.join(cards)}</div>{more}")
    return "".join(sections)


def write_report_html(
    root: Path,
    result: Mapping[str, Any],
    items: Sequence[Item],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    images: Mapping[str | None, Mapping[str, Any]],
    masks: Mapping[str, str | None],
) -> Path:
    """Write ``root/report.html`` (and its chart and thumbnails); returns its path.

    ``records``: condition -> item id -> answer record; ``images``: mask kind (``None`` for the
    original) -> item id -> image path the target saw (or the error); ``masks``: condition ->
    its mask kind.
    """
    _chart(result, root / "report_chart.png")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(result['benchmark'])}: {html.escape(result['target'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 16px; }} .card {{ border: 1px solid #ddd; padding: 8px; max-width: 480px; }}
figure {{ display: inline-block; margin: 0 6px 0 0; }} figcaption {{ font-size: 0.8em; color: #555; text-align: center; }}
img {{ max-width: {_THUMB}px; }}
</style></head><body>
<h1>{html.escape(result['benchmark'])}: {html.escape(result['target'])}, {result['n_items']} items</h1>
<p>Every figure per condition; the difference to <b>{html.escape(result['baseline'])}</b> is paired over the
scored units with a bootstrap 95% confidence interval (an interval that contains 0 means no measured effect).</p>
{_table(result)}
<p><img src="report_chart.png" alt="scores and differences per condition" style="max-width: 100%"></p>
{_changed(result, items, records, images, masks, root)}
</body></html>
"""
    path = root / "report.html"
    atomic_write_text(path, page)
    return path
