"""GPT-judged scorers: MM-Vet and LLaVA-Bench (in-the-wild), re-implementing the official evaluators.

* MM-Vet: ``mm-vet_evaluator.py`` of yuweihao/MM-Vet (commit acde843, the same prompt as the
  notebook ``mm-vet_evaluator.ipynb``; lmms-eval's ``lmms_eval/tasks/mmvet/utils.py`` mirrors it
  with small drifts, see :func:`judge_mmvet`).
* LLaVA-Bench (in-the-wild): ``llava/eval/eval_gpt_review_bench.py`` (prompt, request,
  ``parse_score``), ``llava/eval/table/rule.json`` (``llava_bench_conv`` / ``_detail`` /
  ``_complex``) and ``llava/eval/summarize_gpt_review.py`` (the relative score) of
  haotian-liu/LLaVA (commit c121f04), as run by ``scripts/v1_5/eval/llavabench.sh``.

The judge is anything with ``chat(messages, **settings) -> str`` (:class:`Judge`);
:class:`~attnprompt.targets.openai_endpoint.OpenAIEndpointTarget` fits, and brings retries on
HTTP errors and an on-disk cache: every request here passes ``temperature`` and ``max_tokens``
explicitly, so the cache key holds the judge model (the target's own), the exact messages, the
temperature and the token limit, and re-scoring the same answers makes no request. An error the
judge client gives up on (e.g. after its HTTP retries) propagates; judgements already made are in
its cache, so a rerun resumes for free.

Every judge reply is returned in ``Score.extra`` (``"judge_outputs"``, keyed by item id). Where
the official code behaves oddly the docstrings say so, and the behaviour is kept so numbers stay
comparable with published ones. Numbers are not rounded (the official scripts print MM-Vet with
1 decimal and LLaVA-Bench with 1 decimal after rounding the means to 3; the latter is also given
in ``extra["summary"]``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from .items import Item, Score

__all__ = [
    "LLAVABENCH_CATEGORIES",
    "LLAVABENCH_JUDGE_MODEL",
    "LLAVABENCH_MAX_TOKENS",
    "LLAVABENCH_RULES",
    "LLAVABENCH_SYSTEM_PROMPT",
    "LLAVABENCH_TEMPERATURE",
    "MMVET_CAPABILITIES",
    "MMVET_JUDGE_MODEL",
    "MMVET_MAX_TOKENS",
    "MMVET_PROMPT",
    "MMVET_RETRY_SUFFIX",
    "MMVET_TEMPERATURES",
    "Judge",
    "judge_llavabench",
    "judge_mmvet",
    "llavabench_messages",
    "llavabench_summary",
    "mmvet_breakdown",
    "mmvet_messages",
    "parse_llavabench_score",
    "parse_mmvet_score",
]


class Judge(Protocol):
    """A chat model that grades: ``chat(messages, **settings) -> reply text``."""

    def chat(self, messages: Sequence[Mapping[str, Any]], **settings: Any) -> str: ...


_T = TypeVar("_T")
_R = TypeVar("_R")


def _replies(items: Sequence[Item], answers: Mapping[str, str]) -> list[str]:
    """The model's reply to every item, in item order; ``ValueError`` naming a few missing ids."""
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    missing = [i for i in ids if i not in answers]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no answer, e.g. {missing[:5]}")
    return [str(answers[i]) for i in ids]


def _map(fn: Callable[[_T], _R], args: Sequence[_T], max_workers: int) -> list[_R]:
    if int(max_workers) < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if max_workers == 1 or len(args) <= 1:
        return [fn(a) for a in args]
    with ThreadPoolExecutor(max_workers=min(int(max_workers), len(args)), thread_name_prefix="attnprompt-judge") as pool:
        return list(pool.map(fn, args))


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs) if xs else float("nan")


def _judge_model(judge: Any, model_name: str | None) -> str | None:
    if model_name is not None:
        return model_name
    model = getattr(judge, "model", None)
    return model if isinstance(model, str) else None


# --------------------------------------------------------------------------------------------
# MM-Vet
# --------------------------------------------------------------------------------------------

# The grader prompt, verbatim: `prompt` in mm-vet_evaluator.py of yuweihao/MM-Vet (few-shot table
# with the <AND>/<OR> rules; it ends with a newline).
MMVET_PROMPT = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""
#: Appended to the query when the judge's reply was not a score (mm-vet_evaluator.py).
MMVET_RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "
#: ``max_tokens`` of every grading request (mm-vet_evaluator.py).
MMVET_MAX_TOKENS = 3
#: Temperatures of the official requests: the first query at 0.0; then up to 5 retries (with
#: :data:`MMVET_RETRY_SUFFIX`) at 0.0, 0.5, 1.0, 1.5, 2.0. The reply to the last one is never
#: parsed: the official loop gives 0.0 as soon as its try counter passes 5.
MMVET_TEMPERATURES = (0.0, 0.0, 0.5, 1.0, 1.5, 2.0)
#: The official default judge (``--gpt_model``).
MMVET_JUDGE_MODEL = "gpt-4-0613"
#: MM-Vet's six capabilities, in the paper's table order.
MMVET_CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")


def mmvet_messages(question: str, ground_truth: str, prediction: str, *, retry: bool = False) -> list[dict[str, str]]:
    """The chat messages of one MM-Vet grading request (one user message, no system message).

    As the official code: ``prompt + "\\n" + " | ".join([question, ground truth with " <AND> " /
    " <OR> " spaced out, prediction, ""])``, plus :data:`MMVET_RETRY_SUFFIX` on retries.
    """
    gt = ground_truth.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    text = MMVET_PROMPT + "\n" + " | ".join([question, gt, prediction, ""])  # noqa: FLY002 - as official
    if retry:
        text += MMVET_RETRY_SUFFIX
    return [{"role": "user", "content": text}]


def parse_mmvet_score(reply: str) -> float | None:
    """The score in a judge reply, or ``None`` when the official code would retry.

    Official: ``float(content.split(" ")[0].strip())``, valid when in [0, 1]. So only the text
    before the first space counts: ``"0.7"``, ``"0.70"``, ``"1.0\\n"``, ``"0.6 because..."`` are
    scores, while ``" 0.7"`` (a leading space gives an empty first token), ``"1.1"``, ``"-0.1"``
    and ``"abc"`` are not. The value is kept as given (no snapping to 0.1 steps). One deviation:
    ``"nan"`` (which the official range check lets through) is refused, as NaN would poison
    every mean.
    """
    token = str(reply).split(" ")[0].strip()
    try:
        score = float(token)
    except ValueError:
        return None
    if math.isnan(score) or score < 0.0 or score > 1.0:
        return None
    return score


def _mmvet_capabilities(item: Item) -> list[str]:
    caps = item.meta.get("capabilities")
    if not isinstance(caps, (list, tuple)) or not caps:
        caps = [c.strip() for c in (item.category or "").split(",") if c.strip()]
    if not caps:
        raise ValueError(f"MM-Vet item {item.id!r} has no capabilities (meta['capabilities'] or category)")
    return sorted({str(c) for c in caps})


def _capability_order(counts: Mapping[str, int]) -> list[str]:
    rank = {c: i for i, c in enumerate(MMVET_CAPABILITIES)}
    return sorted(counts, key=lambda c: (-counts[c], rank.get(c, len(rank)), c))


def mmvet_breakdown(items: Sequence[Item], scores: Mapping[str, float]) -> dict[str, Any]:
    """MM-Vet's aggregation (``export_result`` of mm-vet_evaluator.py, one run).

    Returns ``{"total", "per_capability", "per_integration", "capability_counts",
    "integration_counts"}``, scores in % (mean score x 100):

    * total: over all items;
    * per capability (rec, ocr, know, gen, spat, math): over the items *having* it (an item
      with several capabilities counts in each);
    * per capability integration: over the items whose capability *set* is exactly that one,
      keyed by ``Item.category`` (the sorted capabilities joined by ``","``; the official
      script joins the set with ``"_"`` in set order, which varies between runs).

    Both are ordered by item count, largest first, as the official tables (ties: capabilities in
    the paper's order, integrations by name). Only capabilities present in ``items`` appear.
    """
    if not items:
        raise ValueError("MM-Vet: no items to score")
    by_cap: dict[str, list[float]] = defaultdict(list)
    by_int: dict[str, list[float]] = defaultdict(list)
    for it in items:
        s = float(scores[it.id])
        caps = _mmvet_capabilities(it)
        for c in caps:
            by_cap[c].append(s)
        by_int[",".join(caps)].append(s)
    cap_counts = {c: len(v) for c, v in by_cap.items()}
    int_counts = {k: len(v) for k, v in by_int.items()}
    cap_order = _capability_order(cap_counts)
    int_order = sorted(int_counts, key=lambda k: (-int_counts[k], k))
    return {
        "total": _mean([float(scores[it.id]) for it in items]) * 100,
        "per_capability": {c: _mean(by_cap[c]) * 100 for c in cap_order},
        "per_integration": {k: _mean(by_int[k]) * 100 for k in int_order},
        "capability_counts": {c: cap_counts[c] for c in cap_order},
        "integration_counts": {k: int_counts[k] for k in int_order},
    }


def _grade_mmvet(judge: Judge, question: str, ground_truth: str, prediction: str, max_tokens: int):
    """(score, every raw reply, failed) for one item, following the official retry loop."""
    replies: list[str] = []
    last = len(MMVET_TEMPERATURES) - 1
    for attempt, temperature in enumerate(MMVET_TEMPERATURES):
        messages = mmvet_messages(question, ground_truth, prediction, retry=attempt > 0)
        reply = judge.chat(messages, temperature=temperature, max_tokens=max_tokens)
        replies.append(reply if isinstance(reply, str) else str(reply))
        if attempt == last:
            break  # official: `if try_time > 5: score = 0.0` before this reply is parsed
        score = parse_mmvet_score(replies[-1])
        if score is not None:
            return score, replies, False
    return 0.0, replies, True


def judge_mmvet(
    items: Sequence[Item],
    answers: Mapping[str, str],
    judge: Judge,
    *,
    model_name: str | None = None,
    max_tokens: int = MMVET_MAX_TOKENS,
    max_workers: int = 1,
) -> Score:
    """MM-Vet score of ``answers`` (model replies keyed by item id) graded by ``judge``.

    One request per item (:func:`mmvet_messages`, ``temperature=0.0``, ``max_tokens=3``); when
    the reply is not a score in [0, 1] (:func:`parse_mmvet_score`) the official loop asks again
    with :data:`MMVET_RETRY_SUFFIX` at the temperatures of :data:`MMVET_TEMPERATURES` (at most
    6 requests; the 6th reply is recorded but, as in the official code, not parsed) and then
    gives 0.0. Such items count in ``extra["judge_failures"]`` (and are listed in
    ``extra["judge_failure_ids"]``). One run (the official ``--num_run`` default; the paper used
    5, but with a temperature-0 judge and a cache repeated runs would be identical).

    Args:
        items: MM-Vet items (``answers[0]`` is the ground truth, capabilities in
            ``meta["capabilities"]``, else ``category``).
        answers: the graded model's raw replies; a missing one is a ``ValueError``.
        judge: the grader (the official one is ``gpt-4-0613``: :data:`MMVET_JUDGE_MODEL`).
        model_name: the judge model's name, recorded in ``extra["judge_model"]``; default the
            judge's ``model`` attribute (the cache key of an ``OpenAIEndpointTarget`` already
            holds its model).
        max_tokens: sent with every request (official: 3).
        max_workers: requests in flight at once (1: one after another, like the official code).

    Returns:
        ``overall``: mean score x 100; ``per_category``: per capability integration
        (``Item.category``); ``units``: the 0-1 score per item id; ``extra``: ``per_capability``
        (rec, ocr, ...), ``capability_counts``, ``integration_counts``, ``judge_outputs``
        ({id: the raw reply the score came from, or the last one}), ``judge_attempts`` ({id:
        every raw reply} for items that needed more than one request), ``judge_failures``,
        ``judge_failure_ids``, ``judge_model``, ``max_tokens``.

    Drift of lmms-eval's copy (not followed): its prompt header reads ``gpt_query_prompt``
    instead of ``Question``, the query ends in ``" |"``, replies are stripped before parsing, the
    retry has no suffix, ``max_tokens`` is 128.
    """
    preds = _replies(items, answers)
    for it in items:
        if not it.answers:
            raise ValueError(f"MM-Vet item {it.id!r} has no ground truth answer")

    def grade(k: int):
        it = items[k]
        return _grade_mmvet(judge, it.query, it.answers[0], preds[k], int(max_tokens))

    results = _map(grade, range(len(items)), max_workers)
    units: dict[str, float] = {}
    outputs: dict[str, str] = {}
    attempts: dict[str, list[str]] = {}
    failed: list[str] = []
    for it, (score, replies, fail) in zip(items, results):
        units[it.id] = score
        outputs[it.id] = replies[-1]
        if len(replies) > 1:
            attempts[it.id] = replies
        if fail:
            failed.append(it.id)
    b = mmvet_breakdown(items, units)
    return Score(
        overall=b["total"],
        per_category=b["per_integration"],
        units=units,
        extra={
            "per_capability": b["per_capability"],
            "capability_counts": b["capability_counts"],
            "integration_counts": b["integration_counts"],
            "judge_outputs": outputs,
            "judge_attempts": attempts,
            "judge_failures": len(failed),
            "judge_failure_ids": failed,
            "judge_model": _judge_model(judge, model_name),
            "max_tokens": int(max_tokens),
        },
    )


# --------------------------------------------------------------------------------------------
# LLaVA-Bench (in-the-wild)
# --------------------------------------------------------------------------------------------

#: The system message of every review request (``get_eval`` in llava/eval/eval_gpt_review_bench.py).
LLAVABENCH_SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
#: Sampling temperature of the official review requests (eval_gpt_review_bench.py).
LLAVABENCH_TEMPERATURE = 0.2
#: ``--max-tokens`` default of eval_gpt_review_bench.py.
LLAVABENCH_MAX_TOKENS = 1024
#: The judge hard-coded in eval_gpt_review_bench.py.
LLAVABENCH_JUDGE_MODEL = "gpt-4-0314"
#: The question categories, as in ``questions.jsonl``.
LLAVABENCH_CATEGORIES = ("conv", "detail", "complex")

# The three LLaVA-Bench rules of llava/eval/table/rule.json (haotian-liu/LLaVA), verbatim; the
# file gives the three the same text.
_LLAVABENCH_RULE_PROMPT = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above. The user asks the question on observing an image. For your reference, the visual content in the image is represented with a few sentences describing the image. \n"
    "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space.\n"
    "In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment."
)
#: ``rule.json`` entries by key (``"llava_bench_" + category``): ``{"role", "prompt"}``.
LLAVABENCH_RULES: dict[str, dict[str, str]] = {
    "llava_bench_conv": {"role": "Assistant", "prompt": _LLAVABENCH_RULE_PROMPT},
    "llava_bench_detail": {"role": "Assistant", "prompt": _LLAVABENCH_RULE_PROMPT},
    "llava_bench_complex": {"role": "Assistant", "prompt": _LLAVABENCH_RULE_PROMPT},
}


def _llavabench_rule(item: Item) -> dict[str, str]:
    rule = LLAVABENCH_RULES.get(f"llava_bench_{item.category}")
    if rule is None:
        # official: assert False, "Visual QA category not found in rule file"
        raise ValueError(
            f"LLaVA-Bench item {item.id!r}: category {item.category!r} has no rule; "
            f"expected one of {', '.join(LLAVABENCH_CATEGORIES)}"
        )
    return rule


def llavabench_messages(item: Item, prediction: str) -> list[dict[str, str]]:
    """The chat messages of one LLaVA-Bench review (system + user), as eval_gpt_review_bench.py.

    The user content: ``[Context]`` (the caption, ``meta["context"]``), ``[Question]``,
    ``[Assistant 1]`` = the reference (GPT-4) answer ``item.answers[0]``, ``[Assistant 2]`` =
    ``prediction``, ``[System]`` = the category's rule prompt.
    """
    rule = _llavabench_rule(item)
    context = item.meta.get("context")
    if not isinstance(context, str):
        raise ValueError(f"LLaVA-Bench item {item.id!r} has no caption in meta['context']")  # noqa: TRY004
    if not item.answers:
        raise ValueError(f"LLaVA-Bench item {item.id!r} has no reference answer")
    role, prompt = rule["role"], rule["prompt"]
    content = (
        f"[Context]\n{context}\n\n"
        f"[Question]\n{item.query}\n\n"
        f"[{role} 1]\n{item.answers[0]}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{prediction}\n\n[End of {role} 2]\n\n"
        f"[System]\n{prompt}\n\n"
    )
    return [
        {"role": "system", "content": LLAVABENCH_SYSTEM_PROMPT},
        {"role": "user", "content": content},
    ]


def parse_llavabench_score(review: str) -> tuple[float, float]:
    """``(reference score, model score)`` from a review, ``(-1.0, -1.0)`` when unparsable.

    The official ``parse_score``: the first line, commas replaced by spaces, split on single
    spaces; exactly two parts, both floats. So ``"8 6"`` and ``"8,6"`` parse, while ``"8, 6"``,
    ``"8  6"`` and ``"8 6 "`` (three parts) or ``"Assistant 1: 8"`` do not. One deviation: a
    non-finite value (``"nan"``, ``"inf"``) counts as a failure too.
    """
    pair = _parse_pair(review)
    return (-1.0, -1.0) if pair is None else pair


def _parse_pair(review: str) -> tuple[float, float] | None:
    parts = str(review).split("\n")[0].replace(",", " ").split(" ")
    if len(parts) != 2:
        return None
    try:
        ref, model = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(ref) and math.isfinite(model)):
        return None
    return (ref, model)


def llavabench_summary(tuples: Sequence[tuple[str, tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """summarize_gpt_review.py on ``(category, (reference, model))`` reviews.

    For ``"all"`` and each category (sorted, as the official print): ``reference_mean``,
    ``model_mean`` (1-10 scale), ``relative`` = 100 x model mean / reference mean (NaN when the
    reference mean is 0), and the three figures exactly as the official script prints them
    (means rounded to 3 decimals first): ``official_relative`` =
    ``round(model/reference*100, 1)``, ``official_reference`` / ``official_model`` =
    ``round(mean*10, 1)``.

    Unparsable reviews (``(-1, -1)``) are *not* excluded: the official script averages every
    review's tuple, so each failure adds -1 to both sides.
    """
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cat, pair in tuples:
        groups[cat].append(pair)
        groups["all"].append(pair)
    out: dict[str, dict[str, float]] = {}
    for key in sorted(groups):
        pairs = groups[key]
        ref = _mean([p[0] for p in pairs])
        model = _mean([p[1] for p in pairs])
        r3, m3 = round(ref, 3), round(model, 3)
        out[key] = {
            "relative": 100.0 * model / ref if ref != 0 else float("nan"),
            "reference_mean": ref,
            "model_mean": model,
            "official_relative": round(m3 / r3 * 100, 1) if r3 != 0 else float("nan"),
            "official_reference": round(r3 * 10, 1),
            "official_model": round(m3 * 10, 1),
            "count": len(pairs),
        }
    return out


def judge_llavabench(
    items: Sequence[Item],
    answers: Mapping[str, str],
    judge: Judge,
    *,
    temperature: float = LLAVABENCH_TEMPERATURE,
    max_tokens: int = LLAVABENCH_MAX_TOKENS,
    model_name: str | None = None,
    max_workers: int = 1,
) -> Score:
    """LLaVA-Bench (in-the-wild) relative score of ``answers`` reviewed by ``judge``.

    One review per item (:func:`llavabench_messages`; official ``temperature=0.2``,
    ``max_tokens=1024``, judge ``gpt-4-0314``), parsed by :func:`parse_llavabench_score`, summed
    up by :func:`llavabench_summary`: per category and overall, 100 x mean model score / mean
    reference score. As in the official summary, a review that does not parse counts as
    ``(-1, -1)`` in both means (it is not excluded); such items are counted in
    ``extra["parse_failures"]`` and listed in ``extra["parse_failure_ids"]``, and
    ``extra["relative_excluding_failures"]`` gives the ratios without them for reference.

    Returns:
        ``overall``: the relative score over all items (official ``all``); ``per_category``:
        ``conv``, ``detail``, ``complex`` (those present); ``units``: model score / reference
        score per item id (a ratio, 1.0 = as good as the reference; note that ``overall`` is a
        ratio of means, not the mean of these), left out for items whose review did not parse
        or whose reference score is 0 (listed in ``extra["units_excluded"]``); ``extra``:
        ``judge_outputs`` ({id: raw review}), ``tuples`` ({id: [reference, model]}, the
        official ``tuple``), ``reference_mean`` / ``model_mean`` per key (1-10 scale),
        ``absolute`` ({key: {"reference", "model"}} = mean x 10, the official summary's last two
        figures), ``summary`` (:func:`llavabench_summary`), ``parse_failures``,
        ``parse_failure_ids``, ``relative_excluding_failures``, ``units_excluded``,
        ``judge_model``, ``temperature``, ``max_tokens``.
    """
    preds = _replies(items, answers)
    messages = [llavabench_messages(it, p) for it, p in zip(items, preds)]  # validates first
    temperature, max_tokens = float(temperature), int(max_tokens)

    def review(k: int) -> str:
        reply = judge.chat(messages[k], temperature=temperature, max_tokens=max_tokens)
        return reply if isinstance(reply, str) else str(reply)

    reviews = _map(review, range(len(items)), max_workers)
    tuples: dict[str, tuple[float, float]] = {}
    units: dict[str, float] = {}
    failed: list[str] = []
    excluded: list[str] = []
    for it, text in zip(items, reviews):
        parsed = _parse_pair(text)
        pair = (-1.0, -1.0) if parsed is None else parsed  # the official failure value
        tuples[it.id] = pair
        if parsed is None:
            failed.append(it.id)
            excluded.append(it.id)
        elif pair[0] == 0:
            excluded.append(it.id)
        else:
            units[it.id] = pair[1] / pair[0]
    summary = llavabench_summary([(str(it.category), tuples[it.id]) for it in items])
    clean = llavabench_summary([(str(it.category), tuples[it.id]) for it in items if it.id not in failed])
    keys = [k for k in summary if k != "all"]
    return Score(
        overall=summary["all"]["relative"],
        per_category={k: summary[k]["relative"] for k in keys},
        units=units,
        extra={
            "judge_outputs": {it.id: r for it, r in zip(items, reviews)},
            "tuples": {k: list(v) for k, v in tuples.items()},
            "reference_mean": {k: v["reference_mean"] for k, v in summary.items()},
            "model_mean": {k: v["model_mean"] for k, v in summary.items()},
            "absolute": {k: {"reference": v["reference_mean"] * 10, "model": v["model_mean"] * 10}
                         for k, v in summary.items()},
            "summary": summary,
            "parse_failures": len(failed),
            "parse_failure_ids": failed,
            "relative_excluding_failures": {k: v["relative"] for k, v in clean.items()},
            "units_excluded": excluded,
            "judge_model": _judge_model(judge, model_name),
            "temperature": temperature,
            "max_tokens": max_tokens,
        },
    )
