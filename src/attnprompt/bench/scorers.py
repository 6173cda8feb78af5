"""Rule-based scorers, each a re-implementation of one benchmark's official evaluator.

* TextVQA / VizWiz: the VQA accuracy of the official VQA evaluation with the EvalAI answer
  processor (``EvalAIAnswerProcessor`` of MMF / lmms-eval, which EvalAI's TextVQA and VizWiz
  servers and LLaVA's ``m4c_evaluator`` use).
* POPE: the POPE repository's ``evaluate.py`` (also LLaVA's ``eval_pope.py``).
* MME: the MME ``eval_tool/calculation.py`` (also lmms-eval's ``tasks/mme/utils.py``).
* MMBench: VLMEvalKit's rule-based choice extraction (``can_infer``) and its circular evaluation,
  without the LLM fallback.

Every scorer takes the benchmark's :class:`~attnprompt.bench.items.Item` list and the model's raw
replies keyed by item id, and returns a :class:`~attnprompt.bench.items.Score`. A reply missing
from ``answers`` is an error (``ValueError``): the harness decides which items it scores, the
scorer never invents an answer. Where the official code behaves oddly, the docstrings say so and
the behaviour is kept, so numbers stay comparable with published ones.
"""

from __future__ import annotations

import re
from collections import defaultdict
from fractions import Fraction
from typing import Any, Mapping, Sequence

from .items import Item, Score

__all__ = [
    "MME_SUBTASKS",
    "extract_choice",
    "normalize_vqa_answer",
    "parse_mme_answer",
    "parse_yes_no",
    "score_mmbench",
    "score_mme",
    "score_pope",
    "score_vqa",
    "vqa_accuracy",
]


def _replies(items: Sequence[Item], answers: Mapping[str, str]) -> list[str]:
    """The reply to every item, in item order; ``ValueError`` naming a few missing ids."""
    missing = [it.id for it in items if it.id not in answers]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no answer, e.g. {missing[:5]}")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    return [str(answers[it.id]) for it in items]


# --------------------------------------------------------------------------------------------
# VQA accuracy (TextVQA, VizWiz)
# --------------------------------------------------------------------------------------------

_CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # the official table, odd entries included ("somebody'd" -> "somebodyd")

_NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# The official pattern, verbatim. "(?!<=\d)" is a look-AHEAD for the text "<=" + digit (a typo
# for a look-behind), so it never fires: in effect the pattern removes every "." not followed
# by a digit ("3.5" keeps its period, "3." and "e.g." lose theirs).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# EvalAI's comma rule (a comma between two digits). EvalAI deletes every comma before this test,
# so it never matches there; kept so the punctuation step reads as the official one.
_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!")
# The official code calls ``PERIOD_STRIP.sub("", text, re.UNICODE)``: the flag lands in the
# ``count`` argument, so at most re.UNICODE == 32 periods are removed. Kept.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    out = text
    comma_between_digits = _COMMA_STRIP.search(text) is not None
    for p in _PUNCTUATION:
        # a mark next to a space (or any text with a digit,digit comma) is deleted; a mark
        # inside a word becomes a space ("well-known" -> "well known"). The test reads the
        # text as it was before any replacement, as the official loop does.
        if (p + " " in text or " " + p in text) or comma_between_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str) -> str:
    """Normalise an answer as the EvalAI answer processor does (TextVQA, VizWiz).

    Follows ``EvalAIAnswerProcessor`` (MMF ``pythia/tasks/processors.py``, copied in lmms-eval
    ``tasks/_task_utils/vqa_eval_metric.py``), whose punctuation / digit / article steps are those
    of the official VQA evaluation (``vqaEval.py``), in this order:

    1. lower-case; delete every ``,`` and ``?``; ``'s`` becomes `` 's`` ("man's" -> "man 's");
       strip. Because commas are deleted here, "1,000" becomes "1000".
    2. newlines and tabs become spaces; strip.
    3. punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: deleted where the text has
       that mark next to a space (or has a comma between digits), else replaced by a space;
       then every period not followed by a digit is deleted (at most 32, an official quirk).
       Other marks (``' : * # & % $``...) are kept.
    4. split on whitespace; number words "none"/"zero".."ten" become digits; the articles
       "a", "an", "the" are dropped; words found in the official contractions table are
       rewritten ("dont" -> "don't"); joined by single spaces.

    The contractions table has entries with capitals ("Im", "Ive") that can never match after
    step 1; kept as in the official code.
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = _process_punctuation(text)
    return _process_digit_article(text)


def _vqa_fraction(prediction: str, references: Sequence[str]) -> Fraction:
    if len(references) == 0:
        raise ValueError("VQA accuracy needs at least one reference answer")
    pred = normalize_vqa_answer(prediction)
    n = len(references)
    m = sum(normalize_vqa_answer(r) == pred for r in references)
    # leave each reference out in turn and score min(#matches among the others / 3, 1):
    # the m left-out matching answers see m-1 matches, the n-m others see m.
    total = m * min(Fraction(m - 1, 3), Fraction(1)) + (n - m) * min(Fraction(m, 3), Fraction(1))
    return total / n


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """Official VQA accuracy of one reply against the human answers (a number in [0, 1]).

    As the official VQA evaluation and EvalAI (TextVQA/VizWiz, lmms-eval ``textvqa_process_results``,
    LLaVA ``TextVQAAccuracyEvaluator``): both the reply and every reference are normalised with
    :func:`normalize_vqa_answer`; then, for each of the n leave-one-out subsets of the n
    references (10 choose 9 for the usual 10 answers), the subset scores
    ``min(#references equal to the reply / 3, 1)``, and the n subset scores are averaged. With 10
    answers, a reply given by 1, 2, 3, >=4 annotators scores 0.3, 0.6, 0.9, 1.0. The average is
    computed exactly (fractions), so these values come out exactly.

    Deviation: the original VQA-v2 ``vqaEval.py`` normalises only when the references are not all
    identical and does not lower-case; TextVQA and VizWiz are scored by EvalAI, which always
    normalises, and that is what is done here.
    """
    return float(_vqa_fraction(prediction, references))


def _mean_by(values: Sequence[float], keys: Sequence[str | None]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for v, k in zip(values, keys):
        if k is not None:
            groups[k].append(v)
    return {k: 100.0 * sum(vs) / len(vs) for k, vs in sorted(groups.items())}


def score_vqa(items: Sequence[Item], answers: Mapping[str, str]) -> Score:
    """TextVQA / VizWiz score: the mean :func:`vqa_accuracy` over the items, in %.

    ``overall`` and ``per_category`` (by ``item.category``, items without one only count in
    ``overall``) are percentages; ``units`` maps each item id to its accuracy in [0, 1]
    (0, 1/3, 2/3... steps averaged: 0.3, 0.6, 0.9, 1.0 with 10 answers). ``extra["n"]`` is the
    number of items.
    """
    replies = _replies(items, answers)
    accs = [vqa_accuracy(r, it.answers) for it, r in zip(items, replies)]
    overall = 100.0 * sum(accs) / len(accs) if accs else 0.0
    return Score(
        overall=overall,
        per_category=_mean_by(accs, [it.category for it in items]),
        units={it.id: a for it, a in zip(items, accs)},
        extra={"n": len(items)},
    )


# --------------------------------------------------------------------------------------------
# POPE
# --------------------------------------------------------------------------------------------


def parse_yes_no(text: str) -> str:
    """The POPE answer of a reply: ``"yes"`` or ``"no"``, as the official POPE ``evaluate.py``.

    Rule (POPE repo ``evaluate.py``, identical in LLaVA ``eval_pope.py``): keep the text before
    the first ``.``; delete commas; split on single spaces; the reply is "no" if one of the words
    is exactly ``No``, ``no`` or ``not``, and "yes" otherwise. Odd but official: the test is case
    sensitive ("NO", "Not" and "No!" read as "yes"), a word glued to a newline does not count
    ("no\\nthere..." reads as "yes"), and any reply without such a word, an empty one or a
    refusal included, is "yes".

    Deviation: surrounding whitespace is stripped first (LLaVA strips its replies before they
    reach this rule, so the official pipeline sees stripped text).
    """
    text = text.strip()
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def _binary_metrics(preds: Sequence[str], gts: Sequence[str]) -> dict[str, float | int]:
    tp = sum(p == "yes" and g == "yes" for p, g in zip(preds, gts))
    fp = sum(p == "yes" and g == "no" for p, g in zip(preds, gts))
    tn = sum(p == "no" and g == "no" for p, g in zip(preds, gts))
    fn = sum(p == "no" and g == "yes" for p, g in zip(preds, gts))
    n = len(preds)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(p == "yes" for p in preds) / n if n else 0.0,
        "TP": tp, "FP": fp, "TN": tn, "FN": fn,
    }


def score_pope(items: Sequence[Item], answers: Mapping[str, str]) -> Score:
    """POPE score, as the official POPE ``evaluate.py``.

    Each reply is read with :func:`parse_yes_no`; the reference is ``item.answers[0]``
    (``"yes"``/``"no"``, case and surrounding space ignored). The positive class is "yes".

    * ``overall``: accuracy in %; ``per_category``: accuracy in % per ``item.category`` (the
      split: random / popular / adversarial).
    * ``extra``: ``accuracy``, ``precision``, ``recall``, ``f1``, ``yes_ratio`` as fractions in
      [0, 1] (the official script prints fractions) and the ``TP``/``FP``/``TN``/``FN`` counts,
      over all items; ``extra["per_split"]`` has the same per category (POPE reports each split).
    * ``units``: item id -> 1.0 if right, else 0.0.

    ``yes_ratio`` is the share of replies read as "yes", as in the official script (lmms-eval's
    ``pope_aggregate_yes_ratio`` counts the references instead, which is constant per split).
    Precision, recall or F1 with a zero denominator are 0 (the official script would divide by
    zero; lmms-eval returns 0). lmms-eval's POPE task compares the whole lower-cased reply with
    "yes"/"no" instead of this parser; the POPE repository's rule is used here.
    """
    replies = _replies(items, answers)
    gts = []
    for it in items:
        g = it.answers[0].strip().lower() if it.answers else ""
        if g not in ("yes", "no"):
            raise ValueError(f"POPE item {it.id!r}: reference must be 'yes' or 'no', got {it.answers!r}")
        gts.append(g)
    preds = [parse_yes_no(r) for r in replies]
    hits = [float(p == g) for p, g in zip(preds, gts)]
    metrics = _binary_metrics(preds, gts)
    splits: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.category is not None:
            splits[it.category].append(i)
    per_split = {
        k: _binary_metrics([preds[i] for i in idx], [gts[i] for i in idx]) for k, idx in sorted(splits.items())
    }
    return Score(
        overall=100.0 * float(metrics["accuracy"]),
        per_category={k: 100.0 * float(m["accuracy"]) for k, m in per_split.items()},
        units={it.id: h for it, h in zip(items, hits)},
        extra={**metrics, "per_split": per_split},
    )


# --------------------------------------------------------------------------------------------
# MME
# --------------------------------------------------------------------------------------------

MME_SUBTASKS: dict[str, tuple[str, ...]] = {
    "perception": ("existence", "count", "position", "color", "posters", "celebrity", "scene",
                   "landmark", "artwork", "OCR"),
    "cognition": ("commonsense_reasoning", "numerical_calculation", "text_translation",
                  "code_reasoning"),
}
_MME_KIND = {t: kind for kind, ts in MME_SUBTASKS.items() for t in ts}


def parse_mme_answer(text: str) -> str:
    """The MME label of a reply: ``"yes"``, ``"no"`` or ``"other"``, as ``calculation.py``.

    Official rule (MME ``eval_tool/calculation.py`` ``parse_pred_ans``, after lower-casing): the
    whole reply "yes" or "no" is taken as is; otherwise "yes" if its first 4 characters contain
    "yes", else "no" if they contain "no", else "other". So "Yes, there is" -> yes, "No." -> no,
    "Not sure" / "None" -> no (official quirk), "There is no dog" -> other.

    Deviation: surrounding whitespace is stripped first (the official tool reads
    tab-separated lines of LLaVA's stripped replies). lmms-eval additionally deletes every "."
    and maps the one-letter replies "y"/"n" to yes/no; the official tool does not (they are
    "other" here).
    """
    pred = text.strip().lower()
    if pred in ("yes", "no"):
        return pred
    prefix = pred[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def score_mme(items: Sequence[Item], answers: Mapping[str, str], *, strict_pairs: bool = True) -> Score:
    """MME score, as the official MME ``eval_tool/calculation.py`` (and lmms-eval ``mme/utils.py``).

    ``item.category`` is the subtask (official names: existence, count, position, color, posters,
    celebrity, scene, landmark, artwork, OCR; commonsense_reasoning, numerical_calculation,
    text_translation, code_reasoning), ``item.answers[0]`` is "yes"/"no", and the two questions
    about one image share ``item.meta["pair"]`` (pairs are taken within a subtask). Replies are
    read with :func:`parse_mme_answer`; an "other" reply is wrong.

    Per subtask: ``acc`` = % of questions right; ``acc+`` = % of images with both questions right;
    subtask score = acc + acc+ (0..200). Perception = sum of the perception subtask scores,
    cognition = sum of the cognition ones (0..2000 and 0..800 with all subtasks present).

    * ``overall``: perception + cognition.
    * ``per_category``: subtask -> score.
    * ``units``: item id -> 1.0 if the question is right else 0.0 (per question, the unit of acc;
      acc+ per image is in ``extra["pair_units"]``, keyed ``"<subtask>/<pair>"``).
    * ``extra``: ``perception``, ``cognition``, ``acc`` and ``acc_plus`` (subtask -> %),
      ``other`` (subtask -> number of "other" replies, as the official ``other_num``),
      ``pair_units``, and ``missing_subtasks`` (official subtasks with no item; their score
      counts as 0 in the sums).

    The official tool asserts that every image has exactly two questions; so does this function
    unless ``strict_pairs=False``, where an image with any number of questions counts for acc+
    only if all of them are right. An unknown subtask name is an error.
    """
    replies = _replies(items, answers)
    right: dict[str, list[float]] = defaultdict(list)
    pairs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    other: dict[str, int] = defaultdict(int)
    units: dict[str, float] = {}
    for it, reply in zip(items, replies):
        task = it.category
        if task not in _MME_KIND:
            raise ValueError(f"MME item {it.id!r}: unknown subtask {task!r}")
        if "pair" not in it.meta:
            raise ValueError(f"MME item {it.id!r}: meta['pair'] (the image id) is required")
        gt = it.answers[0].strip().lower() if it.answers else ""
        if gt not in ("yes", "no"):
            raise ValueError(f"MME item {it.id!r}: reference must be 'yes' or 'no', got {it.answers!r}")
        pred = parse_mme_answer(reply)
        other[task] += pred == "other"
        hit = float(pred == gt)
        units[it.id] = hit
        right[task].append(hit)
        pairs[task][str(it.meta["pair"])].append(hit)

    acc: dict[str, float] = {}
    acc_plus: dict[str, float] = {}
    pair_units: dict[str, float] = {}
    for task in right:
        for pair, hits in pairs[task].items():
            if strict_pairs and len(hits) != 2:
                raise ValueError(f"MME {task} image {pair!r} has {len(hits)} question(s); MME scores pairs of 2")
            pair_units[f"{task}/{pair}"] = float(all(h == 1.0 for h in hits))
        acc[task] = 100.0 * sum(right[task]) / len(right[task])
        n_pairs = len(pairs[task])
        acc_plus[task] = 100.0 * sum(pair_units[f"{task}/{p}"] for p in pairs[task]) / n_pairs
    per_category = {t: acc[t] + acc_plus[t] for kind in MME_SUBTASKS for t in MME_SUBTASKS[kind] if t in acc}
    totals = {kind: sum(per_category.get(t, 0.0) for t in ts) for kind, ts in MME_SUBTASKS.items()}
    return Score(
        overall=totals["perception"] + totals["cognition"],
        per_category=per_category,
        units=units,
        extra={
            "perception": totals["perception"],
            "cognition": totals["cognition"],
            "acc": {t: acc[t] for t in per_category},
            "acc_plus": {t: acc_plus[t] for t in per_category},
            "other": {t: other[t] for t in per_category},
            "pair_units": pair_units,
            "missing_subtasks": [t for t in _MME_KIND if t not in acc],
        },
    )


# --------------------------------------------------------------------------------------------
# MMBench
# --------------------------------------------------------------------------------------------

# replies that VLMEvalKit reads as a refusal (its "Z" label: never a right answer)
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SPLIT_CHARS = ".()[],:;!*#{}"
_REFUSED = "Z"  # VLMEvalKit's label for a refusal: never right, and no other rule is tried


def _infer_option(text: str, letters: Sequence[str]) -> str | None:
    if any(r in text for r in _REFUSALS):
        return _REFUSED
    for c in _SPLIT_CHARS:
        text = text.replace(c, " ")
    tokens = text.split()
    found = [c for c in letters if c in tokens]
    if len(found) == 1:
        return found[0]
    if not found and _REFUSED in tokens:  # a lone "Z" token with no option letter
        return _REFUSED
    return None


def _infer_text(text: str, options: Mapping[str, str]) -> str | None:
    low = text.lower()
    found = [k for k, v in options.items() if str(v).lower() in low]
    return found[0] if len(found) == 1 else None


def extract_choice(text: str, options: Mapping[str, str]) -> str | None:
    """The option letter a reply chooses, by MMBench's rule-based matching, or ``None``.

    Follows VLMEvalKit's ``can_infer`` (``vlmeval/utils/matching_util.py``, the version used for
    MMBench since 2024, before the 2025 changes), which MMBench's evaluator runs before asking an
    LLM:

    1. ``can_infer_option``: the characters ``. ( ) [ ] , : ; ! * # { }`` become spaces and the
       reply is split on whitespace; if exactly one of the option letters (the keys of
       ``options``, upper case) is a whole token, that letter is the answer: "B", "(B)", "B.",
       "The answer is B." all give "B". A reply containing one of VLMEvalKit's refusal phrases,
       or with no option letter but a token "Z", gives ``None`` at once, without step 2
       (VLMEvalKit's "Z" label: always wrong, whatever option text the reply contains).
    2. otherwise ``can_infer_text``: if exactly one option's text occurs (case-insensitive, as a
       substring) in the reply, its letter.
    3. otherwise ``None`` (ambiguous or no match; the official evaluator would then ask an LLM).

    Odd but official: the article "A" counts as a letter ("A dog is running" answers A when A is
    an option; in "A cat or B" the two letters cancel out and the option texts decide); option
    texts are matched as plain substrings, so an option "cat" also matches "cats". VLMEvalKit's
    VERBOSE-only quantifier check is not applied (it is off by default). Later VLMEvalKit
    versions (Aug 2025 on) add a position rule, a length cap and an "answer is X" regex; those
    are not followed.
    """
    letters = [k for k in options]
    choice = _infer_option(str(text), letters)
    if choice == _REFUSED and _REFUSED not in options:
        return None
    return choice or _infer_text(str(text), options)


def _circular_group(it: Item) -> str:
    if "circular" in it.meta:
        return str(it.meta["circular"])
    if "index" in it.meta:  # VLMEvalKit: shifts of question i have index i + k * 1e6
        return str(int(it.meta["index"]) % 1_000_000)
    return it.id


def _is_main_shift(it: Item) -> bool | None:
    if "shift" in it.meta:
        return int(it.meta["shift"]) == 0
    if "index" in it.meta:
        return int(it.meta["index"]) < 1_000_000
    return None


def score_mmbench(items: Sequence[Item], answers: Mapping[str, str]) -> Score:
    """MMBench score with CircularEval, as VLMEvalKit / MMBench's evaluator (rule-based part).

    Items with the same ``meta["circular"]`` are the circular shifts of one question (without it,
    VLMEvalKit's ``meta["index"] % 1e6``, else the item alone, is the group). Each item's
    ``meta["options"]`` maps letter -> option text and ``item.answers[0]`` is the right letter.
    A reply's choice is :func:`extract_choice`; a group is right only if every shift's choice is
    its right letter.

    * ``overall``: % of groups right; ``per_category``: the same per ``item.category`` (one
      category per group; groups differing in category are an error).
    * ``units``: group id -> 1.0 / 0.0.
    * ``extra``: ``vanilla`` (plain % accuracy over the main shifts: items with
      ``meta["shift"] == 0``, or else ``meta["index"] < 1e6``; ``None`` when no item says),
      ``n_groups``, ``unparsed`` (replies no rule could read).

    Deviation: the official evaluator asks an LLM (ChatGPT) to map a reply no rule can read, and
    draws a random letter if that fails; here such a reply is simply wrong, and ``unparsed``
    counts them so reports can say how many there were.
    """
    replies = _replies(items, answers)
    group_hits: dict[str, list[bool]] = defaultdict(list)
    group_cat: dict[str, str | None] = {}
    vanilla: list[bool] = []
    unparsed = 0
    for it, reply in zip(items, replies):
        options = it.meta.get("options")
        if not options:
            raise ValueError(f"MMBench item {it.id!r}: meta['options'] (letter -> text) is required")
        if not it.answers:
            raise ValueError(f"MMBench item {it.id!r}: no reference letter")
        choice = extract_choice(reply, options)
        unparsed += choice is None
        hit = choice is not None and choice == it.answers[0].strip().upper()
        g = _circular_group(it)
        if g in group_cat and group_cat[g] != it.category:
            raise ValueError(f"MMBench group {g!r} mixes categories {group_cat[g]!r} and {it.category!r}")
        group_cat[g] = it.category
        group_hits[g].append(hit)
        if _is_main_shift(it):
            vanilla.append(hit)
    units = {g: float(all(h)) for g, h in group_hits.items()}
    overall = 100.0 * sum(units.values()) / len(units) if units else 0.0
    per_category = _mean_by([units[g] for g in units], [group_cat[g] for g in units])
    extra: dict[str, Any] = {
        "vanilla": 100.0 * sum(vanilla) / len(vanilla) if vanilla else None,
        "n_groups": len(units),
        "unparsed": unparsed,
    }
    return Score(overall=overall, per_category=per_category, units=units, extra=extra)
