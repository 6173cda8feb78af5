"""GPT-judged scorers (MM-Vet, LLaVA-Bench) against a local fake judge (offline, fast)."""

from __future__ import annotations

import hashlib
import math
import threading

import pytest

from attnprompt.bench.items import Item
from attnprompt.bench.judges import (
    LLAVABENCH_RULES,
    LLAVABENCH_SYSTEM_PROMPT,
    MMVET_PROMPT,
    MMVET_RETRY_SUFFIX,
    judge_llavabench,
    judge_mmvet,
    llavabench_summary,
    mmvet_breakdown,
    parse_llavabench_score,
    parse_mmvet_score,
)
from attnprompt.testing_server import FakeChatServer, prompt_text
from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the api extra")

from attnprompt.targets import AnswerCache, OpenAIEndpointTarget  # noqa: E402

KEY_ENV = "ATTNPROMPT_TEST_JUDGE_KEY"
# sha256 of the official texts (mm-vet_evaluator.py `prompt`; rule.json llava_bench_* prompts)
MMVET_PROMPT_SHA256 = "d1b3e0a5b4e72c888b77164489d705bba4dd149934fff564dfba6443d81afe3f"
LLAVABENCH_RULE_SHA256 = "2ce22b562d6008864970ea863ac8a4d385ea6f2e64ab1313a23f825202a9529d"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL", KEY_ENV):
        monkeypatch.delenv(var, raising=False)


class Script:
    """A responder: the replies for a request are picked by a marker found in its prompt.

    ``replies[marker]`` is a list consumed one per request (the last one repeats).
    """

    def __init__(self, replies: dict[str, list[str]]):
        self.replies = {k: list(v) for k, v in replies.items()}
        self.lock = threading.Lock()

    def __call__(self, request_json) -> str:
        text = prompt_text(request_json)
        hits = [k for k in self.replies if k in text]
        assert len(hits) == 1, f"ambiguous or unknown request: {hits}"
        with self.lock:
            queue = self.replies[hits[0]]
            return queue.pop(0) if len(queue) > 1 else queue[0]


def make_judge(server: FakeChatServer, cache: AnswerCache | None = None, model: str = "judge") -> OpenAIEndpointTarget:
    return OpenAIEndpointTarget(model=model, base_url=server.base_url, backoff=0.001, timeout=5.0,
                                api_key_env=KEY_ENV, cache=cache)


def mmvet_item(i: str, question: str, gt: str, caps: list[str]) -> Item:
    return Item(id=i, image=f"{i}.png", question=question, answers=(gt,),
                category=",".join(sorted(caps)), meta={"capabilities": list(caps)})


def llava_item(i: str, category: str, question: str = "What is in the image?", ref: str = "A reference answer.") -> Item:
    return Item(id=i, image="001.jpg", question=question, answers=(ref,), category=category,
                meta={"context": "A cat sits on a red mat.\nThe mat is in a kitchen."})


# --------------------------------------------------------------------------------------------
# MM-Vet
# --------------------------------------------------------------------------------------------


def test_mmvet_prompt_is_the_official_text():
    assert hashlib.sha256(MMVET_PROMPT.encode()).hexdigest() == MMVET_PROMPT_SHA256
    assert MMVET_PROMPT.startswith(
        "Compare the ground truth and prediction from AI models, to give a correctness score for the "
        "prediction. <AND> in the ground truth means it is totally right only when all elements in the "
        "ground truth are present in the prediction, and <OR> means it is totally right when any one "
        "element in the ground truth is present in the prediction."
    )
    assert "\n\nQuestion | Ground truth | Prediction | Correctness\n--- | --- | --- | ---\n" in MMVET_PROMPT
    assert "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n" in MMVET_PROMPT
    assert MMVET_PROMPT.endswith("actual physical characteristics. | 1.0\n")
    assert MMVET_PROMPT.count(" | 0.") + MMVET_PROMPT.count(" | 1.0") == 7  # the 7 few-shot rows


def test_mmvet_exact_request_for_one_item():
    item = mmvet_item("v1", "How many apples are there?", "3<OR>three", ["rec", "ocr"])
    with FakeChatServer(responder=lambda r: "1.0") as server:
        score = judge_mmvet([item], {"v1": "There are 3 apples."}, make_judge(server))
        (req,) = server.chat_requests
    expected = MMVET_PROMPT + "\nHow many apples are there? | 3 <OR> three | There are 3 apples. | "
    assert req.json["messages"] == [{"role": "user", "content": expected}]
    assert req.json["model"] == "judge"
    assert req.json["temperature"] == 0.0
    assert req.json["max_tokens"] == 3
    assert score.units == {"v1": 1.0}
    assert score.overall == pytest.approx(100.0)
    assert score.extra["judge_outputs"] == {"v1": "1.0"}
    assert score.extra["judge_failures"] == 0
    assert score.extra["judge_model"] == "judge"


@pytest.mark.parametrize("reply, expected", [
    ("0.7", 0.7), ("0.70", 0.7), ("1.0", 1.0), ("0.0", 0.0), ("1.0\n", 1.0), ("0.6 because", 0.6),
    (" 0.70 ", None),  # official: content.split(" ")[0] is "" -> not a float -> retry
    ("1.1", None), ("-0.1", None), ("abc", None), ("", None), ("nan", None), ("0.7.", None),
])
def test_parse_mmvet_score(reply, expected):
    got = parse_mmvet_score(reply)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize("first", ["1.1", " 0.70 ", "abc"])
def test_mmvet_invalid_reply_is_retried_with_the_official_suffix(first):
    item = mmvet_item("q", "What color is the car?", "red", ["rec"])
    with FakeChatServer(responder=Script({"| red |": [first, "0.9"]})) as server:
        score = judge_mmvet([item], {"q": "It is red."}, make_judge(server))
        reqs = server.chat_requests
    assert len(reqs) == 2
    base = MMVET_PROMPT + "\nWhat color is the car? | red | It is red. | "
    assert reqs[0].json["messages"][0]["content"] == base
    assert reqs[1].json["messages"][0]["content"] == base + MMVET_RETRY_SUFFIX
    assert MMVET_RETRY_SUFFIX == "\nPredict the correctness of the answer (digit): "
    assert [r.json["temperature"] for r in reqs] == [0.0, 0.0]
    assert score.units["q"] == pytest.approx(0.9)
    assert score.extra["judge_outputs"]["q"] == "0.9"
    assert score.extra["judge_attempts"]["q"] == [first, "0.9"]
    assert score.extra["judge_failures"] == 0


def test_mmvet_all_retries_invalid_gives_zero_and_counts_a_failure():
    items = [mmvet_item("bad", "Q bad?", "yes", ["rec"]), mmvet_item("ok", "Q ok?", "no", ["rec"])]
    # five invalid replies, then a valid 6th that the official loop never parses
    script = Script({"Q bad?": ["abc"] * 5 + ["0.8"], "Q ok?": ["0.5"]})
    with FakeChatServer(responder=script) as server:
        score = judge_mmvet(items, {"bad": "maybe", "ok": "no"}, make_judge(server))
        bad = [r for r in server.chat_requests if "Q bad?" in prompt_text(r.json)]
    assert len(bad) == 6
    assert [r.json["temperature"] for r in bad] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert score.units == {"bad": 0.0, "ok": 0.5}
    assert score.extra["judge_failures"] == 1
    assert score.extra["judge_failure_ids"] == ["bad"]
    assert score.extra["judge_attempts"]["bad"] == ["abc"] * 5 + ["0.8"]
    assert score.extra["judge_outputs"] == {"bad": "0.8", "ok": "0.5"}
    assert score.overall == pytest.approx(25.0)


def test_mmvet_aggregation_overall_capability_and_integration():
    items = [
        mmvet_item("a", "Qa?", "ga", ["rec"]),
        mmvet_item("b", "Qb?", "gb", ["rec", "ocr"]),
        mmvet_item("c", "Qc?", "gc", ["spat", "ocr"]),
        mmvet_item("d", "Qd?", "gd", ["rec", "know", "gen"]),
    ]
    script = Script({"Qa?": ["0.5"], "Qb?": ["1.0"], "Qc?": ["0.2"], "Qd?": ["0.3"]})
    with FakeChatServer(responder=script) as server:
        score = judge_mmvet(items, {i.id: "x" for i in items}, make_judge(server))
        assert len(server.chat_requests) == 4
    assert score.units == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.2, "d": 0.3})
    assert score.overall == pytest.approx(50.0)
    caps = score.extra["per_capability"]
    assert list(caps) == ["rec", "ocr", "know", "gen", "spat"]  # by count, ties in the paper's order
    assert caps == pytest.approx({"rec": 60.0, "ocr": 60.0, "know": 30.0, "gen": 30.0, "spat": 20.0})
    assert score.per_category == pytest.approx({"rec": 50.0, "ocr,rec": 100.0, "ocr,spat": 20.0, "gen,know,rec": 30.0})
    assert score.extra["capability_counts"] == {"rec": 3, "ocr": 2, "know": 1, "gen": 1, "spat": 1}
    assert score.extra["integration_counts"] == {"gen,know,rec": 1, "ocr,rec": 1, "ocr,spat": 1, "rec": 1}
    # the pure function agrees
    b = mmvet_breakdown(items, score.units)
    assert b["total"] == pytest.approx(50.0) and b["per_capability"] == caps


def test_mmvet_missing_answer_is_an_error():
    item = mmvet_item("a", "Q?", "g", ["rec"])
    with FakeChatServer(responder=lambda r: "1.0") as server:
        with pytest.raises(ValueError, match="no answer"):
            judge_mmvet([item], {}, make_judge(server))
        assert server.chat_requests == []


# --------------------------------------------------------------------------------------------
# LLaVA-Bench
# --------------------------------------------------------------------------------------------


def test_llavabench_rules_are_the_official_text():
    assert set(LLAVABENCH_RULES) == {"llava_bench_conv", "llava_bench_detail", "llava_bench_complex"}
    for rule in LLAVABENCH_RULES.values():
        assert rule["role"] == "Assistant"
        assert hashlib.sha256(rule["prompt"].encode()).hexdigest() == LLAVABENCH_RULE_SHA256
    assert LLAVABENCH_SYSTEM_PROMPT == "You are a helpful and precise assistant for checking the quality of the answer."


def test_llavabench_exact_request_for_one_item():
    item = llava_item("7", "detail", question="Describe the image in detail.", ref="A cat rests on a red kitchen mat.")
    with FakeChatServer(responder=lambda r: "8 6\nAssistant 1 is more detailed.") as server:
        score = judge_llavabench([item], {"7": "A cat."}, make_judge(server))
        (req,) = server.chat_requests
    rule = LLAVABENCH_RULES["llava_bench_detail"]["prompt"]
    content = (
        "[Context]\nA cat sits on a red mat.\nThe mat is in a kitchen.\n\n"
        "[Question]\nDescribe the image in detail.\n\n"
        "[Assistant 1]\nA cat rests on a red kitchen mat.\n\n[End of Assistant 1]\n\n"
        "[Assistant 2]\nA cat.\n\n[End of Assistant 2]\n\n"
        f"[System]\n{rule}\n\n"
    )
    assert req.json["messages"] == [
        {"role": "system", "content": "You are a helpful and precise assistant for checking the quality of the answer."},
        {"role": "user", "content": content},
    ]
    assert rule.startswith("We would like to request your feedback on the performance of two AI assistants")
    assert req.json["temperature"] == pytest.approx(0.2)
    assert req.json["max_tokens"] == 1024
    assert score.extra["tuples"] == {"7": [8.0, 6.0]}
    assert score.extra["judge_outputs"] == {"7": "8 6\nAssistant 1 is more detailed."}
    assert score.per_category == pytest.approx({"detail": 75.0})
    assert score.overall == pytest.approx(75.0)
    assert score.units == pytest.approx({"7": 0.75})


@pytest.mark.parametrize("review, expected", [
    ("8 6\nexplanation", (8.0, 6.0)), ("8 6", (8.0, 6.0)), ("8,6\nwhy", (8.0, 6.0)), ("7.5 9", (7.5, 9.0)),
    ("8, 6\nwhy", (-1.0, -1.0)),  # ", " -> two spaces -> three parts (official quirk)
    ("8 6 \nwhy", (-1.0, -1.0)), ("Assistant 1: 8\nAssistant 2: 6", (-1.0, -1.0)),
    ("eight six", (-1.0, -1.0)), ("", (-1.0, -1.0)), ("\n8 6", (-1.0, -1.0)),
])
def test_parse_llavabench_score(review, expected):
    assert parse_llavabench_score(review) == expected


def test_llavabench_relative_scores_per_category_and_overall():
    items = [llava_item("c1", "conv"), llava_item("c2", "conv"), llava_item("d1", "detail"),
             llava_item("x1", "complex"), llava_item("x2", "complex")]
    replies = {"ANS-c1": ["8 6\n."], "ANS-c2": ["10 9\n."], "ANS-d1": ["8 8\n."], "ANS-x1": ["9 3\n."], "ANS-x2": ["7 7\n."]}
    with FakeChatServer(responder=Script(replies)) as server:
        score = judge_llavabench(items, {i.id: f"ANS-{i.id}" for i in items}, make_judge(server))
        assert len(server.chat_requests) == 5
    assert list(score.per_category) == ["complex", "conv", "detail"]
    assert score.per_category == pytest.approx({"conv": 100 * 7.5 / 9, "detail": 100.0, "complex": 62.5})
    assert score.overall == pytest.approx(100 * 6.6 / 8.4)
    assert score.units == pytest.approx({"c1": 0.75, "c2": 0.9, "d1": 1.0, "x1": 1 / 3, "x2": 1.0})
    assert score.extra["reference_mean"] == pytest.approx({"all": 8.4, "conv": 9.0, "detail": 8.0, "complex": 8.0})
    assert score.extra["model_mean"] == pytest.approx({"all": 6.6, "conv": 7.5, "detail": 8.0, "complex": 5.0})
    assert score.extra["absolute"]["all"] == pytest.approx({"reference": 84.0, "model": 66.0})
    s = score.extra["summary"]["all"]
    assert (s["official_relative"], s["official_reference"], s["official_model"]) == (78.6, 84.0, 66.0)
    assert score.extra["summary"]["conv"]["official_relative"] == 83.3
    assert score.extra["parse_failures"] == 0


def test_llavabench_malformed_review_counts_as_minus_one_like_the_official_summary():
    items = [llava_item("c1", "conv"), llava_item("c2", "conv")]
    replies = {"ANS-c1": ["8 6\nfine"], "ANS-c2": ["Assistant 1 gets 8 and Assistant 2 gets 6."]}
    with FakeChatServer(responder=Script(replies)) as server:
        score = judge_llavabench(items, {"c1": "ANS-c1", "c2": "ANS-c2"}, make_judge(server))
    assert score.extra["tuples"] == {"c1": [8.0, 6.0], "c2": [-1.0, -1.0]}
    assert score.extra["parse_failures"] == 1
    assert score.extra["parse_failure_ids"] == ["c2"]
    # official: np.mean over all tuples, -1 included: (8 - 1) / 2 = 3.5 and (6 - 1) / 2 = 2.5
    assert score.extra["reference_mean"]["conv"] == pytest.approx(3.5)
    assert score.per_category["conv"] == pytest.approx(100 * 2.5 / 3.5)
    assert score.overall == pytest.approx(100 * 2.5 / 3.5)
    assert score.extra["relative_excluding_failures"]["all"] == pytest.approx(75.0)
    assert score.units == pytest.approx({"c1": 0.75})
    assert score.extra["units_excluded"] == ["c2"]
    assert score.extra["judge_outputs"]["c2"] == "Assistant 1 gets 8 and Assistant 2 gets 6."


def test_llavabench_summary_zero_reference_is_nan():
    out = llavabench_summary([("conv", (0.0, 5.0))])
    assert math.isnan(out["all"]["relative"])


def test_llavabench_unknown_category_is_an_error():
    item = llava_item("z", "riddle")
    with FakeChatServer(responder=lambda r: "8 6") as server:
        with pytest.raises(ValueError, match="no rule"):
            judge_llavabench([item], {"z": "a"}, make_judge(server))
        assert server.chat_requests == []


# --------------------------------------------------------------------------------------------
# caching and concurrency
# --------------------------------------------------------------------------------------------


def test_rescoring_with_the_cache_makes_no_request(tmp_path):
    mm = [mmvet_item("m1", "Qm1?", "g1", ["rec"]), mmvet_item("m2", "Qm2?", "g2", ["ocr"])]
    lb = [llava_item("l1", "conv"), llava_item("l2", "complex")]
    answers_mm = {"m1": "p1", "m2": "p2"}
    answers_lb = {"l1": "ANS-l1", "l2": "ANS-l2"}
    script = Script({"Qm1?": ["1.1", "0.4"], "Qm2?": ["1.0"], "ANS-l1": ["9 7\n."], "ANS-l2": ["8 8\n."]})
    folder = tmp_path / "judge-cache"
    with FakeChatServer(responder=script) as server:
        first_mm = judge_mmvet(mm, answers_mm, make_judge(server, AnswerCache(folder)))
        first_lb = judge_llavabench(lb, answers_lb, make_judge(server, AnswerCache(folder)))
        n = len(server.chat_requests)
        assert n == 3 + 2
        # a fresh client on the same cache folder: re-scoring is free and identical
        again_mm = judge_mmvet(mm, answers_mm, make_judge(server, AnswerCache(folder)))
        again_lb = judge_llavabench(lb, answers_lb, make_judge(server, AnswerCache(folder)))
        assert len(server.chat_requests) == n
        assert again_mm.units == first_mm.units and again_mm.extra["judge_outputs"] == first_mm.extra["judge_outputs"]
        assert again_lb.units == first_lb.units and again_lb.overall == first_lb.overall
        # the key holds the temperature and the judge model
        judge_llavabench(lb, answers_lb, make_judge(server, AnswerCache(folder)), temperature=0.0)
        assert len(server.chat_requests) == n + 2
        assert {r.json["temperature"] for r in server.chat_requests[n:]} == {0.0}
        judge_mmvet(mm, answers_mm, make_judge(server, AnswerCache(folder), model="judge-2"))
        assert len(server.chat_requests) == n + 2 + 2  # "1.1" was consumed: one request per item now
    assert first_mm.units == pytest.approx({"m1": 0.4, "m2": 1.0})


def test_concurrent_judging_gives_the_same_score():
    items = [mmvet_item(f"i{k}", f"Q{k}?", "g", ["rec"] if k % 2 else ["ocr"]) for k in range(8)]
    script = Script({f"Q{k}?": [f"0.{k}"] for k in range(8)})
    with FakeChatServer(responder=script) as server:
        serial = judge_mmvet(items, {i.id: "p" for i in items}, make_judge(server))
        parallel = judge_mmvet(items, {i.id: "p" for i in items}, make_judge(server), max_workers=4)
    assert parallel.units == serial.units
    assert parallel.overall == pytest.approx(serial.overall) == pytest.approx(100 * 2.8 / 8)
