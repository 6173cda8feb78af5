"""The name of each reported number, and every figure the official evaluators print, flattened.

``scores.json`` keeps each condition's :class:`~attnprompt.bench.items.Score` as it is; the tables
need names and a flat list. For each scorer kind this module says what the headline and the
per-category columns measure, and lists the official figures as ``(metric, value)`` pairs:

* POPE (``evaluate.py``): accuracy, precision, recall, F1, yes-ratio, overall and per split;
* MME (``calculation.py``): perception, cognition, and per subtask score, acc and acc+;
* MMBench: CircularEval accuracy overall and per category, the vanilla (main shift) accuracy;
* TextVQA / VizWiz: VQA accuracy, overall and per answer type;
* MM-Vet: the total and the score per capability and per capability integration;
* LLaVA-Bench: the relative score overall and per category, with both absolute means;
* MMMU (``main_eval_only.py``): accuracy overall, per discipline and per subject.

Percentages are in % (the official scripts print some as fractions; the metric name says %).
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["HEADLINES", "CATEGORY_METRICS", "headline_name", "category_name", "official_metrics"]

#: scorer kind -> what the headline number is
HEADLINES: dict[str, str] = {
    "pope": "accuracy (%)",
    "mme": "perception + cognition (points)",
    "mmbench": "CircularEval accuracy (%)",
    "vqa": "VQA accuracy (%)",
    "mmvet-judge": "GPT-judged score (%)",
    "llavabench-judge": "relative score (%)",
    "mmmu": "accuracy (%)",
}
#: scorer kind -> what a per-category column is (and what the category is)
CATEGORY_METRICS: dict[str, str] = {
    "pope": "accuracy (%) per split",
    "mme": "acc + acc+ (points) per subtask",
    "mmbench": "CircularEval accuracy (%) per category",
    "vqa": "VQA accuracy (%) per answer type",
    "mmvet-judge": "score (%) per capability integration",
    "llavabench-judge": "relative score (%) per category",
    "mmmu": "accuracy (%) per discipline",
}


def headline_name(kind: str) -> str:
    return HEADLINES.get(kind, "score")


def category_name(kind: str) -> str:
    return CATEGORY_METRICS.get(kind, "score per category")


def _pct(x: Any) -> float | None:
    return None if x is None else 100.0 * float(x)


def _binary(prefix: str, m: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    return [(f"{prefix}accuracy (%)", _pct(m.get("accuracy"))), (f"{prefix}precision (%)", _pct(m.get("precision"))),
            (f"{prefix}recall (%)", _pct(m.get("recall"))), (f"{prefix}F1 (%)", _pct(m.get("f1"))),
            (f"{prefix}yes-ratio (%)", _pct(m.get("yes_ratio")))]


def official_metrics(kind: str, cond: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """Every official figure of one condition's result (an entry of ``scores.json["conditions"]``)."""
    extra: Mapping[str, Any] = cond.get("extra") or {}
    per_cat: Mapping[str, float] = cond.get("per_category") or {}
    out: list[tuple[str, float | None]] = [(headline_name(kind), cond.get("overall"))]
    if kind == "pope":
        out += _binary("", extra)
        for split, m in (extra.get("per_split") or {}).items():
            out += _binary(f"{split}: ", m)
    elif kind == "mme":
        out += [("perception (points)", extra.get("perception")), ("cognition (points)", extra.get("cognition"))]
        for task, score in per_cat.items():
            out += [(f"{task}: score (points)", score), (f"{task}: acc (%)", (extra.get("acc") or {}).get(task)),
                    (f"{task}: acc+ (%)", (extra.get("acc_plus") or {}).get(task))]
    elif kind == "mmbench":
        out += [(f"{c}: CircularEval accuracy (%)", v) for c, v in per_cat.items()]
        out += [("vanilla accuracy, main shift (%)", extra.get("vanilla")),
                ("replies no rule could read", extra.get("unparsed"))]
    elif kind == "vqa":
        out += [(f"{c}: VQA accuracy (%)", v) for c, v in per_cat.items()]
    elif kind == "mmvet-judge":
        out += [(f"{c}: score (%)", v) for c, v in (extra.get("per_capability") or {}).items()]
        out += [(f"{c}: score (%)", v) for c, v in per_cat.items()]
    elif kind == "llavabench-judge":
        out += [(f"{c}: relative score (%)", v) for c, v in per_cat.items()]
        for c, v in (extra.get("absolute") or {}).items():
            out += [(f"{c}: reference mean (1-10)", v.get("reference")), (f"{c}: model mean (1-10)", v.get("model"))]
    elif kind == "mmmu":
        out += [(f"{d}: accuracy (%)", _pct(v.get("acc"))) for d, v in (extra.get("per_discipline") or {}).items()]
        out += [(f"{s}: accuracy (%)", _pct(v.get("acc"))) for s, v in (extra.get("per_subject") or {}).items()]
        out += [("multiple-choice random guesses", extra.get("random_guesses"))]
    else:
        out += [(f"{c}", v) for c, v in per_cat.items()]
    return out
