"""Every benchmark end to end: a miniature of its release layout, a scripted target on a real local
HTTP server (and a scripted GPT judge for MM-Vet and LLaVA-Bench), scored with exact numbers."""

from __future__ import annotations

import re

import pytest

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")

from attnprompt.bench.run import evaluate  # noqa: E402
from attnprompt.targets import OpenAIEndpointTarget  # noqa: E402
from attnprompt.testing_server import FakeChatServer, prompt_text  # noqa: E402
from tests.test_bench_datasets import (  # noqa: E402
    GREEN,
    RED,
    make_llavabench,
    make_mmbench,
    make_mme,
    make_mmvet,
    make_pope,
    png,
)


def _lookup(table: dict[str, str]):
    """A responder answering by the first table key found in the prompt."""

    def respond(request: dict) -> str:
        text = prompt_text(request)
        for key, answer in table.items():
            if key in text:
                return answer
        raise AssertionError(f"unscripted prompt: {text!r}")

    return respond


def _mmbench_respond(request: dict) -> str:
    """Picks the option whose text is right, except in shift 2 of "Which animal?" (a group failure)."""
    text = prompt_text(request)
    options = dict(re.findall(r"^([A-D])\. (.+)$", text, flags=re.M))
    right = {"Which animal?": "cow", "Is it day?": "yes"}
    question = next(q for q in right if q in text)
    if question == "Which animal?" and options.get("A") == "cow":  # shift 2: answers wrongly
        return "B"
    return next(letter for letter, option in options.items() if option == right[question])


def _mmvet_judge(request: dict) -> str:
    question, gt, prediction = prompt_text(request).splitlines()[-1].split(" | ")[:3]
    return "1.0" if prediction.strip() in [g.strip() for g in gt.split("<OR>")] else "0.0"


def _llavabench_judge(request: dict) -> str:
    return "8 6\nAssistant 2 misses details." if "Name the sight." in prompt_text(request) else "5 10\nBetter."


def _textvqa(root):
    import json

    png(root / "train_images" / "003a8ae2ef43b901.jpg", fmt="JPEG")
    answers = ["nokia"] * 7 + ["nokia phone"] * 3
    data = {"data": [{"question_id": 1, "question": "what brand is this?", "image_id": "003a8ae2ef43b901",
                      "answers": answers}]}
    (root / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))


def _vizwiz(root):
    import json

    png(root / "val" / "VizWiz_val_00000000.jpg", fmt="JPEG")
    png(root / "val" / "VizWiz_val_00000001.jpg", fmt="JPEG")
    ans = [{"answer": a} for a in ["unanswerable"] * 6 + ["blue"] * 4]
    rows = [{"image": "VizWiz_val_00000000.jpg", "question": "What color?", "answers": ans, "answer_type": "other"},
            {"image": "VizWiz_val_00000001.jpg", "question": "Is it on?", "answers": [{"answer": "yes"}] * 10,
             "answer_type": "yes/no"}]
    (root / "val.json").write_text(json.dumps(rows))


CASES = {
    # benchmark: (build(root), target replies, judge replies or None, overall, some per-category values)
    "mmvet": (make_mmvet, {"What is x?": "x=3", "Explain.": "C"}, _mmvet_judge, 50.0,
              {"math,ocr": 100.0, "rec": 0.0}),
    "llavabench": (make_llavabench, {"Name the sight.": "A tower.", "Describe it.": "A dog."}, _llavabench_judge,
                   100.0 * 8 / 6.5, {"conv": 75.0, "detail": 200.0}),
    "pope": (make_pope, {"dog": "Yes", "car": "Yes, a car.", "table": "No.", "fork": "No"}, None, 100.0 * 5 / 6,
             {"random": 50.0, "popular": 100.0, "adversarial": 100.0}),
    "mme": (make_mme, {"painting": "Yes", "glassware": "Yes", "angie": "Yes", "angle": "No", "C++": "No",
                       "Python": "Yes"}, None, 450.0, {"artwork": 50.0, "OCR": 200.0, "code_reasoning": 200.0}),
    "textvqa": (_textvqa, {"what brand": "Nokia Phone."}, None, 90.0, {}),
    "vizwiz": (_vizwiz, {"What color?": "Blue", "Is it on?": "no"}, None, 50.0, {"other": 100.0, "yes/no": 0.0}),
    "mmbench": (lambda root: make_mmbench(root, [
        ["7", "Which animal?", "nan", "cat", "dog", "cow", "", "C", "recognition", RED, "s", "coarse", "dev"],
        ["9", "Is it day?", "nan", "yes", "no", "nan", "nan", "A", "reasoning", GREEN, "s", "logic", "dev"],
    ]), _mmbench_respond, None, 50.0, {"recognition": 0.0, "reasoning": 100.0}),
}


@pytest.mark.parametrize("benchmark", list(CASES))
def test_benchmark_end_to_end(benchmark, tmp_path):
    build, replies, judge_replies, overall, per_category = CASES[benchmark]
    root = tmp_path / "data"
    root.mkdir()
    build(root)
    responder = replies if callable(replies) else _lookup(replies)
    with FakeChatServer(responder=responder) as target_server, FakeChatServer(responder=judge_replies) as judge_server:
        target = OpenAIEndpointTarget("tiny", base_url=target_server.base_url, max_retries=0, timeout=10)
        judge = None
        if judge_replies is not None:
            judge = OpenAIEndpointTarget("judge", base_url=judge_server.base_url, max_retries=0, timeout=10)
        result = evaluate(benchmark, root, target, "original", tmp_path / "run", judge=judge, progress=False)
    score = result["conditions"]["original"]
    assert score["overall"] == pytest.approx(overall)
    for category, value in per_category.items():
        assert score["per_category"][category] == pytest.approx(value), category
    assert score["errors"] == 0
