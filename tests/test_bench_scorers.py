"""Rule-based benchmark scorers: hand-computed cases that follow the official evaluators."""

from __future__ import annotations

import pytest

from attnprompt.bench.items import Item
from attnprompt.bench.scorers import (
    MME_SUBTASKS,
    extract_choice,
    normalize_vqa_answer,
    parse_mme_answer,
    parse_yes_no,
    score_mmbench,
    score_mme,
    score_pope,
    score_vqa,
    vqa_accuracy,
)

# ---------------------------------------------------------------- VQA normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two dogs.", "2 dogs"),  # number word -> digit, final period stripped
        ("none", "0"),
        ("one two three", "1 2 3"),
        ("The cat", "cat"),  # articles dropped
        ("an apple", "apple"),
        ("dont", "don't"),  # contractions table
        ("I dont know!", "i don't know"),
        ("don't", "don't"),  # apostrophes are kept
        ("oclock", "o'clock"),
        ("1,000", "1000"),  # commas go first, so digit groups join
        ("1,2", "12"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("yes.", "yes"),
        ("e.g. that", "eg that"),
        ("well-known", "well known"),  # a mark inside a word becomes a space
        ("a - b", "b"),  # a mark next to a space is deleted (and "a" is an article)
        ("(hello)", "hello"),
        ('he said "hi"', "he said hi"),
        ("no\nyes", "no yes"),  # newline / tab are whitespace
        ("the\tCat", "cat"),
        ("  RED  ", "red"),
        ("What's up?", "what 's up"),  # EvalAI splits "'s" off
        ("10:30", "10:30"),  # ":" is not in the punctuation list
        ("$5.00", "$5.00"),
        ("Im", "im"),  # capitalised table entries never match after lower-casing (official)
    ],
)
def test_normalize_vqa_answer(raw: str, expected: str) -> None:
    assert normalize_vqa_answer(raw) == expected


def test_normalize_strips_at_most_32_periods() -> None:
    # official quirk: re.UNICODE (32) is passed as the count of PERIOD_STRIP.sub
    assert normalize_vqa_answer("x." * 40) == "x" * 32 + "x." * 8


# ---------------------------------------------------------------- VQA accuracy


@pytest.mark.parametrize(("agree", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0)])
def test_vqa_accuracy_leave_one_out(agree: int, expected: float) -> None:
    refs = ["cat"] * agree + ["dog", "bird", "fish", "cow", "pig", "hen", "owl", "bee", "ant", "elk"][: 10 - agree]
    assert vqa_accuracy("cat", refs) == expected  # exact: the 10 subset scores are averaged exactly


def test_vqa_accuracy_normalises_both_sides() -> None:
    refs = ["2", "two", "Two.", "3", "3", "3", "3", "3", "3", "3"]
    assert vqa_accuracy("TWO", refs) == 0.9
    assert vqa_accuracy("the 3", refs) == 1.0
    assert vqa_accuracy("four", refs) == 0.0


def test_vqa_accuracy_needs_references() -> None:
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


def _vqa_item(i: str, refs: list[str], cat: str | None) -> Item:
    return Item(id=i, image=f"{i}.jpg", question="q?", answers=tuple(refs), category=cat)


def test_score_vqa() -> None:
    items = [
        _vqa_item("q1", ["stop"] + ["go"] * 9, "signs"),  # "stop" given by 1 annotator: 0.3
        _vqa_item("q2", ["stop"] * 10, "signs"),  # 1.0
        _vqa_item("q3", ["red"] * 2 + ["blue"] * 8, "colors"),  # "red": 0.6
        _vqa_item("q4", ["x"] * 10, None),  # 0.0
    ]
    answers = {"q1": "Stop", "q2": "stop.", "q3": "Red", "q4": "y"}
    s = score_vqa(items, answers)
    assert s.units == {"q1": 0.3, "q2": 1.0, "q3": 0.6, "q4": 0.0}
    assert s.overall == pytest.approx(47.5)
    assert s.per_category == {"colors": pytest.approx(60.0), "signs": pytest.approx(65.0)}
    assert s.extra["n"] == 4
    with pytest.raises(ValueError, match="no answer"):
        score_vqa(items, {"q1": "stop"})


# ---------------------------------------------------------------- POPE


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "yes"),
        ("Yes, there is a dog in the image.", "yes"),
        ("No", "no"),
        ("No, there is not.", "no"),
        ("no, it is not", "no"),  # comma removed before splitting
        ("There is no dog in the image.", "no"),
        ("The dog is not visible", "no"),
        ("Yes. There is no cat.", "yes"),  # only the first sentence counts
        ("I think so", "yes"),  # anything without no/not is "yes"
        ("", "yes"),
        ("NO", "yes"),  # official: case sensitive
        ("Not really", "yes"),  # official: only lower-case "not"
        ("  No  ", "no"),  # surrounding whitespace stripped
    ],
)
def test_parse_yes_no(reply: str, expected: str) -> None:
    assert parse_yes_no(reply) == expected


def _pope_items() -> tuple[list[Item], dict[str, str]]:
    rows = [  # (gt, reply, split)
        ("yes", "Yes", "random"),  # TP
        ("yes", "Yes, there is.", "random"),  # TP
        ("yes", "No.", "random"),  # FN
        ("no", "There is no cat.", "random"),  # TN
        ("no", "Yes", "adversarial"),  # FP
        ("no", "No", "adversarial"),  # TN
        ("no", "Yes, it is.", "adversarial"),  # FP
        ("yes", "I think so", "adversarial"),  # TP
    ]
    items = [Item(id=f"p{i}", image="x.jpg", question="Is there a cat?", answers=(gt,), category=sp)
             for i, (gt, _, sp) in enumerate(rows)]
    return items, {f"p{i}": r for i, (_, r, _) in enumerate(rows)}


def test_score_pope() -> None:
    items, answers = _pope_items()
    s = score_pope(items, answers)
    # TP 3, FN 1, TN 2, FP 2
    assert (s.extra["TP"], s.extra["FN"], s.extra["TN"], s.extra["FP"]) == (3, 1, 2, 2)
    assert s.overall == pytest.approx(62.5)
    assert s.extra["accuracy"] == pytest.approx(0.625)
    assert s.extra["precision"] == pytest.approx(0.6)
    assert s.extra["recall"] == pytest.approx(0.75)
    assert s.extra["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert s.extra["yes_ratio"] == pytest.approx(5 / 8)  # share of "yes" replies, not of references
    assert s.per_category == {"adversarial": pytest.approx(50.0), "random": pytest.approx(75.0)}
    assert s.extra["per_split"]["random"]["precision"] == pytest.approx(1.0)
    assert s.extra["per_split"]["adversarial"]["yes_ratio"] == pytest.approx(0.75)
    assert s.units == {"p0": 1.0, "p1": 1.0, "p2": 0.0, "p3": 1.0, "p4": 0.0, "p5": 1.0, "p6": 0.0, "p7": 1.0}


def test_score_pope_all_no_has_zero_precision() -> None:
    items, answers = _pope_items()
    s = score_pope(items, {k: "No" for k in answers})
    assert s.overall == pytest.approx(50.0)
    assert (s.extra["precision"], s.extra["recall"], s.extra["f1"], s.extra["yes_ratio"]) == (0.0, 0.0, 0.0, 0.0)


def test_score_pope_rejects_bad_reference() -> None:
    bad = [Item(id="z", image="x.jpg", question="q", answers=("maybe",))]
    with pytest.raises(ValueError):
        score_pope(bad, {"z": "yes"})


# ---------------------------------------------------------------- MME


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes", "yes"),
        ("yes\n", "yes"),
        ("  YES.", "yes"),
        ("No, it is not.", "no"),
        ("no", "no"),
        ("Not sure", "no"),  # official quirk: "no" within the first 4 characters
        ("nope", "no"),
        ("There is no dog", "other"),  # the first 4 characters hold neither
        ("y", "other"),  # official tool (lmms-eval would map it to "yes")
        ("", "other"),
    ],
)
def test_parse_mme_answer(reply: str, expected: str) -> None:
    assert parse_mme_answer(reply) == expected


def _mme(rows: list[tuple[str, str, str, str, str]]) -> tuple[list[Item], dict[str, str]]:
    """rows: (id, subtask, pair, gt, reply)."""
    items = [Item(id=i, image=f"{p}.jpg", question="q? Please answer yes or no.", answers=(gt,), category=t,
                  meta={"pair": p}) for i, t, p, gt, _ in rows]
    return items, {i: r for i, _, _, _, r in rows}


def test_score_mme_acc_plus_pairing() -> None:
    items, answers = _mme([
        ("e1", "existence", "img1", "yes", "Yes"),
        ("e2", "existence", "img1", "no", "No"),  # img1: both right
        ("e3", "existence", "img2", "yes", "Yes, there is."),
        ("e4", "existence", "img2", "no", "Yes"),  # img2: one wrong
        ("c1", "count", "img1", "yes", "yes"),  # same image name, other subtask: its own pair
        ("c2", "count", "img1", "no", "There are two."),  # "other": wrong
        ("k1", "code_reasoning", "img9", "yes", "Yes"),
        ("k2", "code_reasoning", "img9", "no", "No."),
    ])
    s = score_mme(items, answers)
    assert s.extra["acc"]["existence"] == pytest.approx(75.0)
    assert s.extra["acc_plus"]["existence"] == pytest.approx(50.0)
    assert s.extra["acc"]["count"] == pytest.approx(50.0)  # one pair, one wrong: acc 50 ...
    assert s.extra["acc_plus"]["count"] == pytest.approx(0.0)  # ... acc+ 0
    assert s.per_category == {"existence": pytest.approx(125.0), "count": pytest.approx(50.0),
                              "code_reasoning": pytest.approx(200.0)}
    assert s.extra["perception"] == pytest.approx(175.0)
    assert s.extra["cognition"] == pytest.approx(200.0)
    assert s.overall == pytest.approx(375.0)
    assert s.extra["other"] == {"existence": 0, "count": 1, "code_reasoning": 0}
    assert s.units == {"e1": 1.0, "e2": 1.0, "e3": 1.0, "e4": 0.0, "c1": 1.0, "c2": 0.0, "k1": 1.0, "k2": 1.0}
    assert s.extra["pair_units"] == {"existence/img1": 1.0, "existence/img2": 0.0, "count/img1": 0.0,
                                     "code_reasoning/img9": 1.0}
    assert "color" in s.extra["missing_subtasks"] and "existence" not in s.extra["missing_subtasks"]


def test_mme_subtask_names_are_official() -> None:
    assert MME_SUBTASKS["perception"] == ("existence", "count", "position", "color", "posters", "celebrity",
                                          "scene", "landmark", "artwork", "OCR")
    assert MME_SUBTASKS["cognition"] == ("commonsense_reasoning", "numerical_calculation", "text_translation",
                                         "code_reasoning")


def test_score_mme_pairs_must_have_two_questions() -> None:
    items, answers = _mme([
        ("a", "color", "img1", "yes", "Yes"),
        ("b", "color", "img1", "no", "No"),
        ("c", "color", "img2", "yes", "Yes"),
    ])
    with pytest.raises(ValueError, match="question"):
        score_mme(items, answers)
    s = score_mme(items, answers, strict_pairs=False)
    assert s.per_category["color"] == pytest.approx(200.0)


def test_score_mme_unknown_subtask() -> None:
    items, answers = _mme([("a", "Existence", "i", "yes", "Yes"), ("b", "Existence", "i", "no", "No")])
    with pytest.raises(ValueError, match="subtask"):
        score_mme(items, answers)


# ---------------------------------------------------------------- MMBench

OPTS = {"A": "red apple", "B": "cat", "C": "dog", "D": "blue bird"}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B: cat", "B"),
        ("**B**", "B"),
        ("The answer is B.", "B"),
        ("cat", "B"),  # option text only
        ("I think it is a dog", "C"),  # lower-case "a" is no letter; exactly one option text
        ("A or B", None),  # two letters, no option text: ambiguous
        ("a cat or a dog", None),  # two option texts: ambiguous
        ("E", None),  # not an option letter
        ("b", None),  # letters are upper case
        ("A dog is running", "A"),  # official quirk: the article "A" is read as option A
        ("Z cat", None),  # a lone "Z" token is VLMEvalKit's refusal label: no text fallback
        ("Cannot determine the answer, maybe cat", None),  # refusal phrase
        ("", None),
    ],
)
def test_extract_choice(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, OPTS) == expected


def test_extract_choice_uses_only_given_letters() -> None:
    two = {"A": "yes", "B": "no"}
    assert extract_choice("C. yes", two) == "A"  # "C" is no option here; the text decides
    assert extract_choice("D", two) is None


def _mmbench_group(gid: str, cat: str, replies: list[str], *, meta_key: str = "circular") -> list[tuple[Item, str]]:
    texts = ["cat", "dog", "bird", "fish"]
    right = "dog"
    out = []
    for k, reply in enumerate(replies):
        rot = texts[k:] + texts[:k]
        options = dict(zip("ABCD", rot))
        letter = "ABCD"[rot.index(right)]
        meta: dict = {"options": options}
        if meta_key == "circular":
            meta.update(circular=gid, shift=k)
        else:  # VLMEvalKit indices: shift k of question i has index i + k * 1e6
            meta.update(index=int(gid) + k * 1_000_000)
        item = Item(id=f"{gid}-{k}", image="x.jpg", question="What animal?", answers=(letter,), category=cat,
                    meta=meta)
        out.append((item, reply))
    return out


def _mmbench(groups: list[list[tuple[Item, str]]]) -> tuple[list[Item], dict[str, str]]:
    pairs = [p for g in groups for p in g]
    return [it for it, _ in pairs], {it.id: r for it, r in pairs}


def test_score_mmbench_circular() -> None:
    # right letters per shift: dog sits at B, A, D, C
    items, answers = _mmbench([
        _mmbench_group("g1", "attribute", ["B", "(A)", "The answer is D.", "dog"]),  # all right
        _mmbench_group("g2", "attribute", ["B", "A", "I am not sure", "C"]),  # shift 2 unreadable
        _mmbench_group("g3", "ocr", ["A", "A", "D", "C"]),  # only shift 0 wrong
    ])
    s = score_mmbench(items, answers)
    assert s.units == {"g1": 1.0, "g2": 0.0, "g3": 0.0}
    assert s.overall == pytest.approx(100 / 3)
    assert s.per_category == {"attribute": pytest.approx(50.0), "ocr": pytest.approx(0.0)}
    assert s.extra["vanilla"] == pytest.approx(200 / 3)  # g1, g2 right at shift 0; g3 wrong
    assert s.extra["n_groups"] == 3
    assert s.extra["unparsed"] == 1


def test_score_mmbench_one_wrong_shift_fails_group() -> None:
    items, answers = _mmbench([_mmbench_group("g", "x", ["B", "A", "D", "D"])])
    s = score_mmbench(items, answers)
    assert s.overall == 0.0
    assert s.extra["vanilla"] == 100.0
    answers["g-3"] = "C"
    assert score_mmbench(items, answers).overall == 100.0


def test_score_mmbench_groups_by_vlmevalkit_index() -> None:
    items, answers = _mmbench([
        _mmbench_group("7", "x", ["B", "A", "D", "C"], meta_key="index"),
        _mmbench_group("8", "x", ["B", "B", "D", "C"], meta_key="index"),
    ])
    s = score_mmbench(items, answers)
    assert s.units == {"7": 1.0, "8": 0.0}
    assert s.extra["vanilla"] == 100.0  # index < 1e6 marks the main shift


def test_score_mmbench_rejects_mixed_categories() -> None:
    g = _mmbench_group("g", "x", ["B", "A"])
    bad = Item(id="g-9", image="x.jpg", question="q", answers=("B",), category="y",
               meta={"circular": "g", "options": OPTS})
    items, answers = _mmbench([g + [(bad, "B")]])
    with pytest.raises(ValueError, match="categor"):
        score_mmbench(items, answers)
