"""The evaluation harness end to end: a miniature POPE, a scripted OpenAI-compatible target on a real
local HTTP server, the CLIP auxiliary's masks, exact scores, resume, per-item errors and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")

from attnprompt import AttnPromptError  # noqa: E402
from attnprompt.bench.conditions import CONDITIONS, Condition, get_conditions, register_condition  # noqa: E402
from attnprompt.bench.run import evaluate, read_results  # noqa: E402
from attnprompt.shapes import make_scene  # noqa: E402
from attnprompt.targets import AnswerCache, OpenAIEndpointTarget, image_digest  # noqa: E402
from attnprompt.testing_server import FakeChatServer, decode_image_url, image_urls, prompt_text  # noqa: E402

# (scene seed, question, label): 3 "yes" and 2 "no"
QUESTIONS = [
    (1, "Is there a circle in the image?", "yes"),
    (2, "Is there a star in the image?", "no"),
    (3, "Is there a square in the image?", "yes"),
    (4, "Is there a cross in the image?", "no"),
    (5, "Is there a triangle in the image?", "yes"),
]


def _make_pope(root: Path, broken: int | None = None) -> dict[str, str]:
    """A miniature POPE release (random split only); returns {image digest: label} of the originals."""
    (root / "images").mkdir(parents=True)
    digests = {}
    lines = []
    for qid, (seed, question, label) in enumerate(QUESTIONS, start=1):
        name = f"COCO_val2014_{seed:012d}.jpg"
        image = make_scene(seed).image
        if broken == qid:
            (root / "images" / name).write_bytes(b"not an image")
        else:
            image.save(root / "images" / name, format="PNG")
            digests[image_digest(image)] = label
        lines.append(json.dumps({"question_id": qid, "image": name, "text": question, "label": label}))
    for split in ("random", "popular", "adversarial"):
        (root / f"coco_pope_{split}.json").write_text("\n".join(lines) + "\n")
    return digests


class Scripted:
    """Replies "yes" on original images; the true label on annotated ones; after a step-by-step or
    self-reflection prompt it flips its previous habit to "no"."""

    def __init__(self, originals: dict[str, str]):
        self.originals = originals

    def __call__(self, request: dict) -> str:
        text = prompt_text(request)
        [url] = image_urls(request)
        if "your previous answer is yes" in text.lower() or "step by step" in text:
            return "No."
        if image_digest(decode_image_url(url)) in self.originals:
            return "Yes, there is."
        label = next(lb for _, q, lb in QUESTIONS if text.startswith(q))
        return "Yes" if label == "yes" else "No"


@pytest.fixture()
def pope(tmp_path):
    root = tmp_path / "pope"
    return root, _make_pope(root)


def _target(server: FakeChatServer, cache: Path | None = None) -> OpenAIEndpointTarget:
    return OpenAIEndpointTarget("tiny-target", base_url=server.base_url, max_retries=1, backoff=0.001,
                                cache=AnswerCache(cache) if cache else None, timeout=10)


def test_pope_end_to_end_exact_scores(pope, tmp_path, tiny_clip_dir):
    root, originals = pope
    out = tmp_path / "run"
    with FakeChatServer(responder=Scripted(originals)) as server:
        result = evaluate("pope", root, _target(server), "original,api-clip,self-reflection,step-by-step", out,
                          clip=str(tiny_clip_dir), data_options={"splits": ["random"]}, progress=False, n_boot=500)
        n_requests = len(server.chat_requests)
    c = result["conditions"]
    assert c["original"]["overall"] == pytest.approx(60.0)  # always "yes": 3 of 5
    assert c["original"]["extra"]["yes_ratio"] == pytest.approx(1.0)
    assert c["api-clip"]["overall"] == pytest.approx(100.0)  # annotated images: every answer right
    assert c["self-reflection"]["overall"] == pytest.approx(40.0)  # flips to "no": 2 of 5
    assert c["step-by-step"]["overall"] == pytest.approx(40.0)
    cmp = result["comparisons"]["api-clip"]
    assert result["baseline"] == "original"
    assert cmp["diff"] == pytest.approx(40.0) and cmp["changed"] == 2 and cmp["better"] == 2 and cmp["worse"] == 0
    assert cmp["ci"][0] <= 40.0 <= cmp["ci"][1]
    assert n_requests == 20

    # what the target was asked: the official text prompts, the earlier answer inside self-reflection
    records = [json.loads(x) for x in (out / "answers" / "self-reflection.jsonl").read_text().splitlines()]
    assert records[0]["prompt"].startswith("Is there a circle in the image?")
    assert "Your previous answer is Yes, there is.. Evaluate the quality" in records[0]["prompt"] or \
        "Your previous answer is Yes, there is. Evaluate the quality" in records[0]["prompt"]
    # masks made once by the core's manifest job into the content-addressed store
    mask_dir = out / "masks"
    assert len(list(mask_dir.glob("*.png"))) == 5 and (mask_dir / "manifest.jsonl").is_file()
    assert result["masks"]["computed"] == 5 and result["masks"]["reused"] == 0
    # report files
    assert (out / "scores.json").is_file() and (out / "table.csv").read_text().startswith("target,condition,pope")
    md = (out / "table.md").read_text()
    assert "| openai:tiny-target | api-clip | 100.00 | +40.00 [" in md


def test_rerun_resumes_without_asking_again(pope, tmp_path, tiny_clip_dir):
    root, originals = pope
    out = tmp_path / "run"
    args = dict(clip=str(tiny_clip_dir), data_options={"splits": ["random"]}, progress=False, n_boot=200)
    with FakeChatServer(responder=Scripted(originals)) as server:
        first = evaluate("pope", root, _target(server), "original,api-clip", out, **args)
        assert len(server.chat_requests) == 10
        server.clear()
        again = evaluate("pope", root, _target(server), "original,api-clip", out, **args)
        assert server.chat_requests == []
        assert again["conditions"]["api-clip"]["overall"] == first["conditions"]["api-clip"]["overall"]

        # a crash in the middle: two answers kept, then a torn line
        path = out / "answers" / "original.jsonl"
        kept = path.read_text().splitlines()[:2]
        path.write_text("\n".join(kept) + '\n{"id": "random-3", "ans')
        server.clear()
        resumed = evaluate("pope", root, _target(server), "original,api-clip", out, **args)
        assert len(server.chat_requests) == 3  # only the lost answers
        assert resumed["conditions"]["original"]["overall"] == pytest.approx(60.0)


def test_unreadable_image_fails_alone(tmp_path, tiny_clip_dir):
    root = tmp_path / "pope"
    originals = _make_pope(root, broken=2)
    with FakeChatServer(responder=Scripted(originals)) as server:
        result = evaluate("pope", root, _target(server), "original,api-clip", tmp_path / "run",
                          clip=str(tiny_clip_dir), data_options={"splits": ["random"]}, progress=False, n_boot=100)
    for name in ("original", "api-clip"):
        assert result["conditions"][name]["answered"] == 4 and result["conditions"][name]["errors"] == 1
    assert result["conditions"]["original"]["overall"] == pytest.approx(75.0)  # 3 "yes" of the 4 left
    lines = [json.loads(x) for x in (tmp_path / "run" / "answers" / "original.jsonl").read_text().splitlines()]
    [bad] = [r for r in lines if r["answer"] is None]
    assert bad["id"] == "random-2" and bad["error"]


def test_endpoint_down_is_a_clear_error(pope, tmp_path):
    from attnprompt.testing_server import unused_base_url

    root, _ = pope
    target = OpenAIEndpointTarget("tiny-target", base_url=unused_base_url(), max_retries=1, backoff=0.001, timeout=2)
    with pytest.raises(AttnPromptError, match="tiny-target|connect|Connection"):
        evaluate("pope", root, target, "original", tmp_path / "run", data_options={"splits": ["random"]},
                 progress=False)


def test_bad_requests_fail_before_any_work(pope, tmp_path):
    root, _ = pope
    with FakeChatServer() as server:
        t = _target(server)
        with pytest.raises(AttnPromptError, match="unknown condition"):
            evaluate("pope", root, t, "original,api-nothing", tmp_path / "a")
        with pytest.raises(AttnPromptError, match="GPT judge"):
            evaluate("mmvet", root, t, "original", tmp_path / "b")
        with pytest.raises(AttnPromptError, match="--aux-lvlm"):
            evaluate("pope", root, t, "original,api-lvlm", tmp_path / "c")
        with pytest.raises(AttnPromptError, match="unknown benchmark"):
            evaluate("nope", root, t, "original", tmp_path / "d")
        assert server.chat_requests == []


def test_report_merges_runs_and_cli(pope, tmp_path, tiny_clip_dir, capsys):
    from attnprompt.cli import main

    root, originals = pope
    with FakeChatServer(responder=Scripted(originals)) as server:
        rc = main(["eval", "--benchmark", "pope", "--data", str(root), "--target", "tiny-target",
                   "--endpoint", server.base_url, "--conditions", "original,api-clip", "--aux-clip",
                   str(tiny_clip_dir), "--out", str(tmp_path / "run1"), "--limit", "4", "--quiet"])
        assert rc == 0
        printed = capsys.readouterr().out
        assert "| openai:tiny-target | original |" in printed
        evaluate("pope", root, _target(server), "original,step-by-step", tmp_path / "run2",
                 data_options={"splits": ["random"]}, progress=False, n_boot=100)
    # --limit 4 counts questions: the first 4 of the random split (3 splits are read by default)
    run1 = read_results([tmp_path / "run1"])[0]
    assert run1["n_items"] == 4 and run1["conditions"]["original"]["overall"] == pytest.approx(50.0)
    assert main(["report", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(tmp_path / "merged")]) == 0
    table = capsys.readouterr().out
    assert table.count("| openai:tiny-target |") == 3  # original (merged), api-clip, step-by-step
    assert (tmp_path / "merged" / "table.csv").is_file()
    assert main(["report", str(tmp_path)]) == 2


def test_conditions_registry_is_data():
    assert [c.name for c in get_conditions("original,api-clip,masked-hint")] == ["original", "api-clip", "masked-hint"]
    hint = CONDITIONS["masked-hint"]
    assert hint.mask == "clip" and hint.prompt("Q?") == "Q? (Hint: The answer is related to the unmasked visible regions.)"
    assert CONDITIONS["self-reflection"].prompt("Q?", "cat") == (
        "Q? \n Your previous answer is cat. Evaluate the quality of the answer and provide a new answer.")
    with pytest.raises(AttnPromptError):
        CONDITIONS["self-reflection"].prompt("Q?")
    register_condition(Condition("api-clip-brief", "clip", "{question} Answer briefly."))
    try:
        assert get_conditions(["api-clip-brief"])[0].prompt("Q?") == "Q? Answer briefly."
    finally:
        CONDITIONS.pop("api-clip-brief")
    with pytest.raises(AttnPromptError):
        Condition("bad", "sam", "{question}")
    with pytest.raises(AttnPromptError):
        get_conditions("original,original")


def test_hf_target_batches_and_caches(tmp_path):
    from attnprompt.targets.hf import HFTarget
    from attnprompt.testing_lvlm import make_tiny_llava_dir

    folder = make_tiny_llava_dir(tmp_path / "llava")
    target = HFTarget(str(folder), device="cpu", max_new_tokens=3, batch_size=2, cache=AnswerCache(tmp_path / "c"))
    calls = []
    real = target.model.answer

    def counting(images, prompts, max_new_tokens):
        calls.append(len(images))
        return real(images, prompts, max_new_tokens=max_new_tokens)

    target.model.answer = counting
    images = [make_scene(s).image for s in (1, 2, 3)]
    prompts = ["what color is the circle?", "is there a star?", "what shape is the red object?"]
    first = target.answer(images, prompts)
    assert calls == [2, 1] and all(isinstance(a, str) and a for a in first)
    assert first == real(images, prompts, max_new_tokens=3)  # batching does not change greedy answers
    calls.clear()
    assert target.answer(images, prompts) == first and calls == []


def test_condition_settings_syntax():
    blur = get_conditions("api-clip:blur")[0]
    assert (blur.name, blur.mask, blur.overrides) == ("api-clip:blur", "clip", {"style": "blur"})
    crop = get_conditions(["api-lvlm:crop:margin=0.5:kernel=1"])[0]
    assert crop.mask == "lvlm" and crop.overrides == {"style": "crop", "kernel": 1, "style_params": (("margin", 0.5),)}
    assert get_conditions("api-clip:layers=0..2:comp_layer=none")[0].overrides == {"layers": (0, 1, 2),
                                                                                  "comp_layer": None}
    assert get_conditions("masked-hint:soft")[0].template == CONDITIONS["masked-hint"].template
    for bad, match in (("api-clip:sparkle", "unknown style"), ("original:blur", "takes no mask settings"),
                       ("api-clip:kernel=2", "odd"), ("api-clip:blur:colour=red", "no parameter"),
                       ("api-clip:kernel=", "KEY=VALUE"), ("api-clop:blur", "unknown condition")):
        with pytest.raises(AttnPromptError, match=match):
            get_conditions(bad)


def test_styled_conditions_get_their_own_prompt_images(pope, tmp_path, tiny_clip_dir):
    root, originals = pope
    out = tmp_path / "run"
    with FakeChatServer(responder=Scripted(originals)) as server:
        result = evaluate("pope", root, _target(server), "original,api-clip,api-clip:blur,api-clip:crop:margin=0",
                          out, clip=str(tiny_clip_dir), data_options={"splits": ["random"]}, progress=False,
                          n_boot=100)
        with pytest.raises(AttnPromptError, match="vicrop gives 2 images.*takes one"):
            evaluate("pope", root, _target(server), "api-clip:vicrop", tmp_path / "run2", clip=str(tiny_clip_dir),
                     data_options={"splits": ["random"]}, progress=False)
    assert set(result["conditions"]) == {"original", "api-clip", "api-clip:blur", "api-clip:crop:margin=0"}
    # one prompt image per item and mask setting, all in the content-addressed store
    store = out / "masks"
    assert len(list(store.glob("*.png"))) == 15 and result["masks"]["computed"] == 15
    records = [json.loads(x) for x in (store / "manifest.jsonl").read_text().splitlines()]
    crop = [r for r in records if r.get("style") == "crop"]
    assert len(crop) == 5 and all(len(r["boxes"]) == 1 for r in crop)


def test_a_custom_prompt_suffix_stays_out_of_the_auxiliary_query(tmp_path, tiny_prompter):
    from attnprompt.bench.benchmarks import load_benchmark
    from attnprompt.bench.masks import make_masks

    root = tmp_path / "pope"
    _make_pope(root)
    items = load_benchmark("pope", root, splits=["random"], prompt_suffix="\nReply in French.")
    assert all(it.question.endswith("\nReply in French.") for it in items)
    make_masks([(it.image, it.query) for it in items], tiny_prompter, tmp_path / "masks", progress=False)
    records = [json.loads(x) for x in (tmp_path / "masks" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["question"] for r in records) == sorted(it.query for it in items)
    assert not any("French" in r["question"] for r in records)
