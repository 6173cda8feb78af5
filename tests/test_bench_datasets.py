"""Benchmark readers on miniature copies of each official release layout (offline, fast)."""

from __future__ import annotations

import base64
import io
import json
import sys
import types
import warnings
from pathlib import Path

import pytest
from PIL import Image

from attnprompt.bench.datasets import (
    BENCHMARKS,
    MULTIPLE_CHOICE_SUFFIX,
    SHORT_ANSWER_SUFFIX,
    VIZWIZ_SUFFIX,
    BenchmarkDataWarning,
    load_benchmark,
    load_from_hub,
)
from attnprompt.bench.items import Item
from attnprompt.errors import AttnPromptError


def png(path: Path, color=(255, 0, 0), fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path, format=fmt)
    return path


def png_b64(color=(0, 0, 255), fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchmarkDataWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# MM-Vet


def make_mmvet(root: Path) -> Path:
    png(root / "images" / "v1_0.png")
    png(root / "images" / "v1_1.jpg", fmt="JPEG")
    table = {
        "v1_0": {"imagename": "v1_0.png", "question": "What is x?", "answer": "x=3", "capability": ["ocr", "math"]},
        "v1_1": {"imagename": "v1_1.jpg", "question": "Explain.", "answer": "A<OR>B", "capability": ["rec"]},
    }
    (root / "mm-vet.json").write_text(json.dumps(table))
    return root


def test_mmvet(tmp_path):
    root = make_mmvet(tmp_path / "mm-vet")
    items = no_warnings(load_benchmark, "mmvet", root)
    assert items == [
        Item("v1_0", str(root / "images" / "v1_0.png"), "What is x?", ("x=3",), "math,ocr"),
        Item("v1_1", str(root / "images" / "v1_1.jpg"), "Explain.", ("A<OR>B",), "rec"),
    ]
    assert items[0].meta == {"capabilities": ["ocr", "math"]}
    # the unzipped mm-vet/ folder may also be given through its parent
    assert no_warnings(load_benchmark, "mmvet", tmp_path, limit=1) == items[:1]
    assert load_benchmark("mmvet", root, prompt_suffix="!")[1].question == "Explain.!"


# ---------------------------------------------------------------------------------------------
# LLaVA-Bench


def make_llavabench(root: Path) -> Path:
    png(root / "images" / "001.jpg", fmt="JPEG")
    png(root / "images" / "002.jpg", fmt="JPEG")
    jsonl(root / "questions.jsonl", [
        {"image": "001.jpg", "text": "Name the sight.", "category": "conv", "question_id": 0},
        {"image": "002.jpg", "text": "Describe it.", "category": "detail", "question_id": 1},
    ])
    jsonl(root / "answers_gpt4.jsonl", [
        {"question_id": 1, "text": "A dog on grass.", "answer_id": "b"},
        {"question_id": 0, "text": "The Eiffel Tower.", "answer_id": "a"},
    ])
    jsonl(root / "context.jsonl", [
        {"id": "x", "image": "001.jpg", "caption": "Tower in Paris."},
        {"id": "y", "image": "002.jpg", "caption": ["A dog.", "Green grass."]},
    ])
    return root


def test_llavabench(tmp_path):
    root = make_llavabench(tmp_path)
    items = no_warnings(load_benchmark, "llavabench", root)
    assert items == [
        Item("0", str(root / "images" / "001.jpg"), "Name the sight.", ("The Eiffel Tower.",), "conv"),
        Item("1", str(root / "images" / "002.jpg"), "Describe it.", ("A dog on grass.",), "detail"),
    ]
    assert [it.meta for it in items] == [{"context": "Tower in Paris."}, {"context": "A dog.\nGreen grass."}]


def test_llavabench_question_without_reference_is_skipped(tmp_path):
    root = make_llavabench(tmp_path)
    jsonl(root / "answers_gpt4.jsonl", [{"question_id": 0, "text": "The Eiffel Tower."}])
    with pytest.warns(BenchmarkDataWarning, match=r"questions\.jsonl:2: no reference answer"):
        items = load_benchmark("llavabench", root)
    assert [it.id for it in items] == ["0"]


# ---------------------------------------------------------------------------------------------
# POPE


def make_pope(root: Path, images: str = "val2014") -> Path:
    png(root / images / "COCO_val2014_000000000001.jpg", fmt="JPEG")
    png(root / images / "COCO_val2014_000000000002.jpg", fmt="JPEG")
    for split, obj in (("random", "car"), ("popular", "table"), ("adversarial", "fork")):
        jsonl(root / f"coco_pope_{split}.json", [
            {"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "Is there a dog in the image?", "label": "yes"},
            {"question_id": 2, "image": "COCO_val2014_000000000002.jpg", "text": f"Is there a {obj} in the image?", "label": "no"},
        ])
    return root


def test_pope(tmp_path):
    root = make_pope(tmp_path)
    items = no_warnings(load_benchmark, "pope", root)
    img = lambda n: str(root / "val2014" / f"COCO_val2014_00000000000{n}.jpg")  # noqa: E731
    sfx = "\nAnswer the question using a single word or phrase."
    assert SHORT_ANSWER_SUFFIX == sfx
    assert items == [
        Item("random-1", img(1), "Is there a dog in the image?" + sfx, ("yes",), "random"),
        Item("random-2", img(2), "Is there a car in the image?" + sfx, ("no",), "random"),
        Item("popular-1", img(1), "Is there a dog in the image?" + sfx, ("yes",), "popular"),
        Item("popular-2", img(2), "Is there a table in the image?" + sfx, ("no",), "popular"),
        Item("adversarial-1", img(1), "Is there a dog in the image?" + sfx, ("yes",), "adversarial"),
        Item("adversarial-2", img(2), "Is there a fork in the image?" + sfx, ("no",), "adversarial"),
    ]
    assert [it.id for it in load_benchmark("pope", root, limit=3)] == ["random-1", "random-2", "popular-1"]
    only = load_benchmark("pope", root, splits=["adversarial"], prompt_suffix="")
    assert [(it.id, it.question) for it in only] == [
        ("adversarial-1", "Is there a dog in the image?"), ("adversarial-2", "Is there a fork in the image?")]


def test_pope_images_dir_option_and_default(tmp_path):
    root = make_pope(tmp_path / "pope", images="images")
    assert no_warnings(load_benchmark, "pope", root)[0].image == str(root / "images" / "COCO_val2014_000000000001.jpg")
    coco = tmp_path / "coco_val"
    png(coco / "COCO_val2014_000000000001.jpg")
    png(coco / "COCO_val2014_000000000002.jpg")
    items = no_warnings(load_benchmark, "pope", root, images_dir=coco)
    assert {it.image for it in items} == {str(coco / "COCO_val2014_000000000001.jpg"), str(coco / "COCO_val2014_000000000002.jpg")}


def test_pope_malformed_row_is_skipped_with_file_and_line(tmp_path):
    root = make_pope(tmp_path)
    path = root / "coco_pope_random.json"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", json.dumps({"question_id": 3, "image": "x.jpg", "text": "Q?", "label": "maybe"}), lines[1]]) + "\n")
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("pope", root, splits=["random"])
    msgs = [str(w.message) for w in rec]
    assert any(f"{path}:2" in m and "not valid JSON" in m for m in msgs)
    assert any(f"{path}:3" in m and "label" in m for m in msgs)
    assert [it.id for it in items] == ["random-1", "random-2"]


def test_every_row_malformed_is_an_error(tmp_path):
    root = make_pope(tmp_path)
    (root / "coco_pope_random.json").write_text("{bad\n[1, 2]\n")
    with pytest.warns(BenchmarkDataWarning), pytest.raises(AttnPromptError, match="every row .* malformed"):
        load_benchmark("pope", root, splits=["random"])


def test_path_escape_rejected(tmp_path):
    root = make_pope(tmp_path / "pope")
    png(tmp_path / "secret.jpg")
    rows = [
        {"question_id": 1, "image": "../secret.jpg", "text": "Q?", "label": "yes"},
        {"question_id": 2, "image": str(tmp_path / "secret.jpg"), "text": "Q?", "label": "yes"},
        {"question_id": 3, "image": "sub/../../secret.jpg", "text": "Q?", "label": "yes"},
        {"question_id": 4, "image": "COCO_val2014_000000000001.jpg", "text": "Q?", "label": "yes"},
    ]
    jsonl(root / "coco_pope_random.json", rows)
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("pope", root, splits=["random"])
    msgs = [str(w.message) for w in rec]
    assert sum("leaves the data folder" in m for m in msgs) == 2
    assert sum("absolute image path" in m for m in msgs) == 1
    assert [it.id for it in items] == ["random-4"]


def test_missing_image_kept_with_one_warning(tmp_path):
    root = make_pope(tmp_path)
    (root / "val2014" / "COCO_val2014_000000000002.jpg").unlink()
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("pope", root)
    assert len(items) == 6
    assert len(rec) == 1
    assert "3 item(s) reference 1 image file(s) that do not exist" in str(rec[0].message)


def test_missing_file_error_names_file_and_layout(tmp_path):
    root = make_pope(tmp_path)
    (root / "coco_pope_popular.json").unlink()
    with pytest.warns(BenchmarkDataWarning, match="split.s. popular not found"):
        assert len(load_benchmark("pope", root)) == 4  # the splits present are read
    with pytest.raises(AttnPromptError) as e:
        load_benchmark("pope", root, splits="random,popular")  # a split asked for must be there
    msg = str(e.value)
    assert str(root / "coco_pope_popular.json") in msg
    assert "expected layout" in msg and "docs/benchmarks.md" in msg
    assert "\n" not in msg
    with pytest.raises(AttnPromptError, match=r"missing file .*TextVQA_0\.5\.1_val\.json.*docs/benchmarks\.md"):
        load_benchmark("textvqa", tmp_path)
    with pytest.raises(AttnPromptError, match="does not exist"):
        load_benchmark("mmvet", tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# MME


def make_mme(release: Path) -> Path:
    base = release / "MME_Benchmark"
    # split layout (artwork, celebrity, landmark, posters, scene in the release)
    png(base / "artwork" / "images" / "10002.jpg", fmt="JPEG")
    (base / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (base / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Does this artwork exist in the form of painting? Please answer yes or no.\tYes\n"
        "Does this artwork exist in the form of glassware? Please answer yes or no.\tNo\n"
    )
    # flat layout: image beside its txt
    png(base / "OCR" / "0001.jpg", fmt="JPEG")
    (base / "OCR" / "0001.txt").write_text(
        "Is the word in the logo \"angie's\"? Please answer yes or no.\tYes\n"
        "Is the word in the logo \"angle's\"?  Please answer yes or no.\tNo\n\n"
    )
    png(base / "code_reasoning" / "0020.png")
    (base / "code_reasoning" / "0020.txt").write_text("Is this C++? Please answer yes or no.\tNo\nIs this Python? Please answer yes or no.\tYes\n")
    return release


def test_mme_both_layouts(tmp_path):
    release = make_mme(tmp_path / "MME_Benchmark_release_version")
    with pytest.warns(BenchmarkDataWarning, match="11 of the 14 subtask folders are missing") as rec:
        items = load_benchmark("mme", release)
    assert len(rec) == 1
    base = release / "MME_Benchmark"
    sfx = SHORT_ANSWER_SUFFIX
    art, ocr, code = str(base / "artwork" / "images" / "10002.jpg"), str(base / "OCR" / "0001.jpg"), str(base / "code_reasoning" / "0020.png")
    assert items == [  # official subtask order: artwork, OCR (perception), code_reasoning (cognition)
        Item("artwork/10002.jpg/0", art, "Does this artwork exist in the form of painting?" + sfx, ("yes",), "artwork"),
        Item("artwork/10002.jpg/1", art, "Does this artwork exist in the form of glassware?" + sfx, ("no",), "artwork"),
        Item("OCR/0001.jpg/0", ocr, "Is the word in the logo \"angie's\"?" + sfx, ("yes",), "OCR"),
        Item("OCR/0001.jpg/1", ocr, "Is the word in the logo \"angle's\"?" + sfx, ("no",), "OCR"),
        Item("code_reasoning/0020.png/0", code, "Is this C++?" + sfx, ("no",), "code_reasoning"),
        Item("code_reasoning/0020.png/1", code, "Is this Python?" + sfx, ("yes",), "code_reasoning"),
    ]
    assert items[2].meta == {"pair": "OCR/0001.jpg", "raw_question": "Is the word in the logo \"angie's\"? Please answer yes or no."}
    assert items[3].meta["pair"] == "OCR/0001.jpg"
    verbatim = no_warnings(load_benchmark, "mme", release / "MME_Benchmark", subtasks=["OCR"], prompt_suffix="")
    assert [it.question for it in verbatim] == [
        "Is the word in the logo \"angie's\"? Please answer yes or no.",
        "Is the word in the logo \"angle's\"?  Please answer yes or no.",
    ]
    # limit counts images: both questions of each image stay together
    assert [it.id for it in load_benchmark("mme", release, subtasks=["OCR", "code_reasoning"], limit=1)] == ["OCR/0001.jpg/0", "OCR/0001.jpg/1"]


def test_mme_bad_line_skipped(tmp_path):
    release = make_mme(tmp_path / "MME")
    txt = release / "MME_Benchmark" / "OCR" / "0001.txt"
    txt.write_text("Is it red? Please answer yes or no.\tYes\nno tab here\nIs it blue? Please answer yes or no.\tNo\n")
    with pytest.warns(BenchmarkDataWarning, match=rf"{txt}:2: expected 'question<TAB>answer'"):
        items = load_benchmark("mme", release, subtasks=["OCR"])
    assert [(it.id, it.answers) for it in items] == [("OCR/0001.jpg/0", ("yes",)), ("OCR/0001.jpg/1", ("no",))]
    txt.write_text("Is it red? Please answer yes or no.\tmaybe\nIs it blue? Please answer yes or no.\tNo\n")
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("mme", release, subtasks=["OCR"])
    msgs = [str(w.message) for w in rec]
    assert any(f"{txt}:1" in m and "Yes or No" in m for m in msgs)
    assert any("1 usable question(s), MME expects 2 per image" in m for m in msgs)
    assert [it.id for it in items] == ["OCR/0001.jpg/0"]


def test_mme_without_subtasks_is_a_layout_error(tmp_path):
    (tmp_path / "eval_tool").mkdir()
    with pytest.raises(AttnPromptError, match="no MME subtask folder"):
        load_benchmark("mme", tmp_path)


# ---------------------------------------------------------------------------------------------
# TextVQA and VizWiz


def test_textvqa(tmp_path):
    png(tmp_path / "train_images" / "003a8ae2ef43b901.jpg", fmt="JPEG")
    answers = ["nokia"] * 7 + ["nokia phone"] * 3
    data = {"dataset_name": "textvqa", "data": [
        {"question_id": 34602, "question": "what brand is this?", "image_id": "003a8ae2ef43b901", "answers": answers},
        {"question_id": 34603, "question": "no answers", "image_id": "003a8ae2ef43b901"},
        {"question_id": 34604, "question": "escape?", "image_id": "../../etc/passwd", "answers": answers},
    ]}
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(data))
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("textvqa", tmp_path)
    msgs = [str(w.message) for w in rec]
    assert any("data[1]" in m and "answers" in m for m in msgs)
    assert any("data[2]" in m and "leaves the data folder" in m for m in msgs)
    assert items == [Item("34602", str(tmp_path / "train_images" / "003a8ae2ef43b901.jpg"),
                          "what brand is this?\nAnswer the question using a single word or phrase.", tuple(answers))]
    assert load_benchmark("textvqa", tmp_path, prompt_suffix="", limit=1)[0].question == "what brand is this?"


def test_vizwiz(tmp_path):
    png(tmp_path / "val" / "VizWiz_val_00000000.jpg", fmt="JPEG")
    png(tmp_path / "val" / "VizWiz_val_00000001.jpg", fmt="JPEG")
    ans = [{"answer": a, "answer_confidence": "yes"} for a in ["unanswerable"] * 6 + ["blue"] * 4]
    rows = [
        {"image": "VizWiz_val_00000000.jpg", "question": "What color?", "answers": ans, "answerable": 0, "answer_type": "unanswerable"},
        {"image": "VizWiz_val_00000001.jpg", "question": "Is it on?", "answers": [{"answer": "yes"}] * 10, "answerable": 1, "answer_type": "yes/no"},
    ]
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "val.json").write_text(json.dumps(rows))
    items = no_warnings(load_benchmark, "vizwiz", tmp_path)
    assert VIZWIZ_SUFFIX == ("\nWhen the provided information is insufficient, respond with 'Unanswerable'."
                             "\nAnswer the question using a single word or phrase.")
    assert items == [
        Item("VizWiz_val_00000000", str(tmp_path / "val" / "VizWiz_val_00000000.jpg"), "What color?" + VIZWIZ_SUFFIX,
             ("unanswerable",) * 6 + ("blue",) * 4, "unanswerable"),
        Item("VizWiz_val_00000001", str(tmp_path / "val" / "VizWiz_val_00000001.jpg"), "Is it on?" + VIZWIZ_SUFFIX,
             ("yes",) * 10, "yes/no"),
    ]
    assert [it.meta for it in items] == [{"answerable": 0}, {"answerable": 1}]


# ---------------------------------------------------------------------------------------------
# MMBench


HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category", "split"]


def make_mmbench(root: Path, rows: list[list[str]], name: str = "mmbench_dev_20230712.tsv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("\t".join(HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


RED, GREEN = png_b64((255, 0, 0)), png_b64((0, 255, 0), fmt="JPEG")


def test_mmbench_circular(tmp_path):
    make_mmbench(tmp_path, [
        ["7", "Which animal?", "nan", "cat", "dog", "cow", "", "C", "recognition", RED, "src", "coarse", "dev"],
        ["9", "Is it day?", "The sky is bright.", "yes", "no", "nan", "nan", "A", "reasoning", GREEN, "src", "logic", "dev"],
        ["11", "Same picture?", "", "x", "y", "z", "w", "D", "recognition", "7", "src", "coarse", "dev"],
    ])
    cache = tmp_path / "cache"
    items = no_warnings(load_benchmark, "mmbench", tmp_path, image_cache_dir=cache)
    img7 = cache / "mmbench_dev_20230712" / "7.png"
    img9 = cache / "mmbench_dev_20230712" / "9.jpg"
    assert img7.read_bytes() == base64.b64decode(RED) and img9.read_bytes() == base64.b64decode(GREEN)
    sfx = MULTIPLE_CHOICE_SUFFIX
    assert sfx == "\nAnswer with the option's letter from the given choices directly."
    q = "Which animal?"
    assert items[:3] == [
        Item("7-0", str(img7), q + "\nA. cat\nB. dog\nC. cow" + sfx, ("C",), "recognition"),
        Item("7-1", str(img7), q + "\nA. dog\nB. cow\nC. cat" + sfx, ("B",), "recognition"),
        Item("7-2", str(img7), q + "\nA. cow\nB. cat\nC. dog" + sfx, ("A",), "recognition"),
    ]
    assert [it.meta for it in items[:3]] == [
        {"index": 7, "circular": "7", "shift": 0, "options": {"A": "cat", "B": "dog", "C": "cow"}, "l2_category": "coarse"},
        {"index": 7, "circular": "7", "shift": 1, "options": {"A": "dog", "B": "cow", "C": "cat"}, "l2_category": "coarse"},
        {"index": 7, "circular": "7", "shift": 2, "options": {"A": "cow", "B": "cat", "C": "dog"}, "l2_category": "coarse"},
    ]
    for it in items:  # the answer letter always points at the same option text
        assert it.meta["options"][it.answers[0]] == {7: "cow", 9: "yes", 11: "w"}[it.meta["index"]]
    assert items[3:5] == [
        Item("9-0", str(img9), "The sky is bright.\nIs it day?\nA. yes\nB. no" + sfx, ("A",), "reasoning"),
        Item("9-1", str(img9), "The sky is bright.\nIs it day?\nA. no\nB. yes" + sfx, ("B",), "reasoning"),
    ]
    assert [it.id for it in items[5:]] == ["11-0", "11-1", "11-2", "11-3"]
    assert [it.answers[0] for it in items[5:]] == ["D", "C", "B", "A"]
    assert all(it.image == str(img7) for it in items[5:])  # an all-digit image cell refers to another row
    # limit counts questions; circular=False keeps shift 0 only
    assert [it.id for it in load_benchmark("mmbench", tmp_path, image_cache_dir=cache, limit=1)] == ["7-0", "7-1", "7-2"]
    assert [it.id for it in load_benchmark("mmbench", tmp_path, image_cache_dir=cache, circular=False)] == ["7-0", "9-0", "11-0"]


def test_mmbench_default_cache_and_dev_en_name(tmp_path):
    tsv = make_mmbench(tmp_path, [["3", "Q?", "", "a", "b", "", "", "B", "c", RED, "s", "l2", "dev"]], name="MMBench_DEV_EN_V11.tsv")
    items = no_warnings(load_benchmark, "mmbench", tmp_path)
    assert items[0].image == str(tmp_path / ".attnprompt_images" / "MMBench_DEV_EN_V11" / "3.png")
    assert [it.answers for it in items] == [("B",), ("A",)]
    assert no_warnings(load_benchmark, "mmbench", tsv) == items  # the .tsv itself may be given


def test_mmbench_malformed_rows_skipped(tmp_path):
    path = make_mmbench(tmp_path, [
        ["1", "ok?", "", "a", "b", "", "", "A", "c", RED, "s", "l2", "dev"],
        ["2", "bad answer", "", "a", "b", "", "", "C", "c", RED, "s", "l2", "dev"],
        ["3", "bad image", "", "a", "b", "", "", "A", "c", "!!notbase64!!", "s", "l2", "dev"],
        ["../4", "bad index", "", "a", "b", "", "", "A", "c", RED, "s", "l2", "dev"],
        ["5", "short row"],
    ])
    with pytest.warns(BenchmarkDataWarning) as rec:
        items = load_benchmark("mmbench", tmp_path, image_cache_dir=tmp_path / "c")
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 4
    for line, why in ((3, "answer"), (4, "base64"), (5, "index"), (6, "columns")):
        assert any(f"{path}:{line}" in m and why in m for m in msgs), (line, msgs)
    assert [it.id for it in items] == ["1-0", "1-1"]
    assert sorted(p.name for p in (tmp_path / "c" / "mmbench_dev_20230712").iterdir()) == ["1.png"]


# ---------------------------------------------------------------------------------------------
# registry, options, hub


def test_registry():
    assert set(BENCHMARKS) == {"mmvet", "llavabench", "pope", "mme", "textvqa", "vizwiz", "mmbench", "mmmu"}
    assert {n: s.scorer for n, s in BENCHMARKS.items()} == {
        "mmvet": "mmvet-judge", "llavabench": "llavabench-judge", "pope": "pope", "mme": "mme",
        "textvqa": "vqa", "vizwiz": "vqa", "mmbench": "mmbench", "mmmu": "mmmu"}
    assert BENCHMARKS["vizwiz"].prompt_suffix == VIZWIZ_SUFFIX
    assert BENCHMARKS["mmvet"].prompt_suffix == ""
    assert "TextVQA_0.5.1_val.json" in BENCHMARKS["textvqa"].files
    assert BENCHMARKS["mmbench"].options() == ["image_cache_dir", "tsv", "circular", "prompt_suffix"]


def test_unknown_benchmark_option_and_limit(tmp_path):
    root = make_mmvet(tmp_path)
    with pytest.raises(AttnPromptError, match="unknown benchmark 'vqav2'"):
        load_benchmark("vqav2", root)
    with pytest.raises(AttnPromptError, match="unknown option.*images_dir.*takes prompt_suffix"):
        load_benchmark("mmvet", root, images_dir=root)
    with pytest.raises(AttnPromptError, match="limit"):
        load_benchmark("mmvet", root, limit=-1)
    assert load_benchmark("mmvet", root, limit=0) == []
    (root / "mm-vet.json").write_text("{}")
    with pytest.raises(AttnPromptError, match="no questions"):
        load_benchmark("mmvet", root)


def test_load_from_hub_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(AttnPromptError, match="pip install datasets"):
        load_from_hub("pope", "lmms-lab/POPE", "test")


def test_load_from_hub_offline_error_and_rows(monkeypatch, tmp_path):
    rows = [
        {"question_id": "1", "question": "Is there a dog in the image?", "answer": "yes", "category": "popular",
         "image": Image.new("RGB", (4, 4))},
        {"question_id": "2", "question": "Is there a cat?", "answer": "no", "category": "popular", "image": None},
    ]

    def load_dataset(hub_id, split):
        if hub_id == "offline/x":
            raise ConnectionError("Couldn't reach the Hub\nmore")
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(AttnPromptError, match=r"cannot load 'offline/x' split 'test'.*ConnectionError: Couldn't reach the Hub\); offline"):
        load_from_hub("pope", "offline/x", "test")
    with pytest.warns(BenchmarkDataWarning, match="row 1: column 'image' is not an image"):
        items = load_from_hub("pope", "lmms-lab/POPE", "test", image_cache_dir=tmp_path)
    assert items == [Item("popular-1", str(tmp_path / "000000.png"), "Is there a dog in the image?" + SHORT_ANSWER_SUFFIX, ("yes",), "popular")]
    assert (tmp_path / "000000.png").is_file()


# ---------------------------------------------------------------------------------------------
# the auxiliary's query and the target's instruction are kept apart


@pytest.mark.parametrize("suffix", [None, "\nAnswer in French, in one word.", ""])
def test_items_carry_the_query_apart_from_the_instruction(tmp_path, suffix):
    options = {} if suffix is None else {"prompt_suffix": suffix}
    items = load_benchmark("pope", make_pope(tmp_path), **options)
    want = SHORT_ANSWER_SUFFIX if suffix is None else suffix
    for it in items:
        assert it.instruction == want and it.question == it.query + want
        assert it.query.startswith("Is there a") and it.query.endswith("in the image?")  # no instruction in it
    mmvet = load_benchmark("mmvet", make_mmvet(tmp_path / "mmvet"), prompt_suffix="\nBe brief.")
    assert all(it.question.endswith("\nBe brief.") and "Be brief" not in it.query for it in mmvet)
