"""MMMU: the hub release layout (parquet per subject, images embedded) and a `datasets` copy, the
official prompts, the official reply parsers' edge cases, and a scored run end to end."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from PIL import Image

from attnprompt.bench.benchmarks.mmmu import (
    eval_open,
    parse_multi_choice,
    parse_open,
    read_mmmu,
    score_mmmu,
)
from attnprompt.bench.datasets import BenchmarkDataWarning, load_benchmark
from attnprompt.errors import AttnPromptError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]

# id, question, options, answer, type, subfield, number of images
ROWS = [
    ("validation_Math_1", "What is <image 1>?", "['circle', 'square', 'triangle', 'star']", "B", "multiple-choice",
     "Geometry", 1),
    ("validation_Math_2", "Which graph matches <image 1>?", "['<image 2>', '<image 3>']", "A", "multiple-choice",
     "Calculus", 3),
    ("validation_Math_3", "Compute 24 divided by 7. <image 1>", "[]", "['24/7', '3.429']", "open", "Calculus", 1),
    ("validation_Art_1", "Which city is shown in <image 1>?", "[]", "Tampa", "open", "Drawing", 1),
    ("validation_Art_2", "Which style is <image 1>?", "['baroque', 'cubism', 'rococo']", "C", "multiple-choice",
     "Painting", 1),
]
PROMPT_MC = ("What is <image 1>?\n(A) circle\n(B) square\n(C) triangle\n(D) star\n\n"
             "Answer with the option's letter from the given choices directly.")
PROMPT_OPEN = "Compute 24 divided by 7. <image 1>\nAnswer the question using a single word or phrase."


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _record(row) -> dict:
    qid, question, options, answer, qtype, subfield, n_images = row
    rec = {"id": qid, "question": question, "options": options, "explanation": "", "answer": answer,
           "question_type": qtype, "subfield": subfield, "img_type": "['Diagrams']", "topic_difficulty": "Easy"}
    for n in range(1, 8):
        rec[f"image_{n}"] = {"bytes": _png(COLORS[n - 1]), "path": f"{qid}_{n}.png"} if n <= n_images else None
    return rec


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def make_mmmu(root: Path, rows=ROWS) -> Path:
    """The hub repository MMMU/MMMU as downloaded: one folder per subject, one parquet per split."""
    by_subject: dict[str, list] = {}
    for row in rows:
        by_subject.setdefault(row[0].split("_")[1], []).append(_record(row))
    for subject, recs in by_subject.items():
        fields = [(k, pa.string()) for k in recs[0] if not k.startswith("image_")]
        fields += [(f"image_{n}", IMAGE_TYPE) for n in range(1, 8)]
        table = pa.Table.from_pylist(recs, schema=pa.schema(fields))
        (root / subject).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / subject / "validation-00000-of-00001.parquet")
    return root


def test_reader_official_layout_prompts_and_images(tmp_path):
    root = make_mmmu(tmp_path / "MMMU")
    with pytest.warns(BenchmarkDataWarning, match=r"28 of 30 subjects are not in .* left out: Art_Theory, Design, Music, Accounting") as rec:
        items = load_benchmark("mmmu", root)
    assert len([w for w in rec if issubclass(w.category, BenchmarkDataWarning)]) == 1  # one warning, not 28
    assert [it.id for it in items] == [r[0] for r in ROWS if "Art" in r[0]] + [r[0] for r in ROWS if "Math" in r[0]]
    by_id = {it.id: it for it in items}
    mc, multi, open_q = by_id["validation_Math_1"], by_id["validation_Math_2"], by_id["validation_Math_3"]
    assert mc.question == PROMPT_MC and mc.answers == ("B",) and mc.category == "Math"
    assert mc.meta["options"] == {"A": "circle", "B": "square", "C": "triangle", "D": "star"}
    assert mc.meta["discipline"] == "Science" and mc.meta["subfield"] == "Geometry"
    assert mc.query == "What is ?\n(A) circle\n(B) square\n(C) triangle\n(D) star"  # no <image N>, no instruction
    assert open_q.query == "Compute 24 divided by 7."
    assert open_q.question == PROMPT_OPEN and open_q.answers == ("24/7", "3.429")  # a list stored as text
    # image_1 is the single-image fallback; a multi-image question lists every image it refers to
    assert Image.open(multi.image).getpixel((0, 0)) == COLORS[0]
    assert [Image.open(p).getpixel((0, 0)) for p in multi.meta["images"]] == COLORS
    assert mc.meta["images"] == [mc.image]
    # options of the reader
    assert [it.id for it in load_benchmark("mmmu", root, subjects="Art")] == ["validation_Art_1", "validation_Art_2"]
    assert load_benchmark("mmmu", root, subjects=["Math"], limit=1)[0].id == "validation_Math_1"
    with pytest.raises(AttnPromptError, match="no validation data for subject.*Physics"):
        load_benchmark("mmmu", root, subjects="Physics")
    with pytest.raises(AttnPromptError, match="unknown subject"):
        load_benchmark("mmmu", root, subjects="Maths")
    with pytest.raises(AttnPromptError, match="no dev data"):
        load_benchmark("mmmu", root, split="dev")


def test_reader_datasets_layout(tmp_path):
    datasets = pytest.importorskip("datasets")
    recs = [_record(r) for r in ROWS]
    for rec in recs:
        for n in range(1, 8):
            if rec[f"image_{n}"] is not None:
                rec[f"image_{n}"] = Image.open(io.BytesIO(rec[f"image_{n}"]["bytes"]))
    features = datasets.Features({**{k: datasets.Value("string") for k in recs[0] if not k.startswith("image_")},
                                  **{f"image_{n}": datasets.Image() for n in range(1, 8)}})
    ds = datasets.Dataset.from_list(recs, features=features)
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "saved"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchmarkDataWarning)  # one source for every subject: no warning
        items = read_mmmu(tmp_path / "saved", image_cache_dir=tmp_path / "cache")
    official = read_mmmu(make_mmmu(tmp_path / "MMMU"), subjects=["Math", "Art"])
    assert sorted((it.id, it.question, it.answers, it.category) for it in items) == \
        sorted((it.id, it.question, it.answers, it.category) for it in official)
    multi = next(it for it in items if it.id == "validation_Math_2")
    assert [Image.open(p).getpixel((0, 0)) for p in multi.meta["images"]] == COLORS


def test_parse_multi_choice_official_edge_cases():
    opts = {"A": "red car", "B": "blue car", "C": "green", "D": "A"}
    cases = {
        "B": "B", "(B)": "B", "(B).": "B", "The answer is B.": "B",
        "(A) or (C)": "C",  # several bracketed letters: the one written last
        "A and C are wrong, B": "B",  # " B " at the end; "A" and "C" count too: the last one wins
        "B, C": "C",
        "'C'": "C",  # quotes stripped from both ends
        "answer: D": "D",
        # more than 5 words, no letter: option texts are searched (case-insensitive); option D's text
        # "A" occurs inside "car", after the start of "blue car", so D wins: official behaviour
        "I think it is the blue car option here": "D",
        "green is my final answer here ok": "D",
    }
    for reply, letter in cases.items():
        assert parse_multi_choice(reply, opts) == (letter, False), reply
    # of two matching option texts, the one that occurs last wins
    assert parse_multi_choice("I like the blue car very much", {"A": "red car", "B": "blue car"}) == ("B", False)
    # nothing readable: a random letter, the same one on every run, flagged as a guess
    letter, guessed = parse_multi_choice("(a)", opts, seed="validation_Math_2")
    assert guessed and letter in opts
    assert parse_multi_choice("(a)", opts, seed="validation_Math_2") == (letter, True)


def test_parse_open_official_edge_cases():
    assert sorted(map(str, parse_open("The answer is 3,000 dollars."))) == ["0.0", "3,000 dollars", "3000.0"]
    assert parse_open("x = 24/7 = 3.4286") == [3.43]  # the text after the last "=", rounded to 2 decimals
    assert sorted(map(str, parse_open("1e3"))) == ["1000.0", "3.0"]
    assert parse_open("A") == [" a", "a "]  # one character: only as a word edge
    assert parse_open("") == [""]
    assert sorted(map(str, parse_open("so x = 5\nthus the result is 7.5"))) == ["5.0", "7.5", "x = 5"]
    assert parse_open("The answer is .5") == [0.5]
    assert sorted(map(str, parse_open("The speed is 1,234.5 m/s"))) == ["1,234.5 m/s", "1234.0", "234.5"]
    # scoring: numbers by value, text by containment
    assert eval_open(("24/7", "3.429"), parse_open("x = 24/7 = 3.4286"))
    assert not eval_open(("24/7",), parse_open("x = 24/7 = 3.4286"))
    assert eval_open(("Tampa", "Florida"), parse_open("It is Tampa Bay"))
    assert eval_open(("5",), parse_open("so x = 5"))
    assert not eval_open(("A",), parse_open("banana"))  # one letter must stand at a word edge


REPLIES = {
    "validation_Math_1": "(B).",  # right
    "validation_Math_2": "B",  # wrong
    "validation_Math_3": "x = 24/7 = 3.4286",  # right: 3.43 == round(3.429, 2)
    "validation_Art_1": "It is Tampa Bay",  # right: contains "tampa"
    "validation_Art_2": "B",  # wrong
}


def test_score_exact(tmp_path):
    items = read_mmmu(make_mmmu(tmp_path / "MMMU"), subjects=["Math", "Art"])
    s = score_mmmu(items, REPLIES)
    assert s.overall == pytest.approx(60.0)
    assert s.per_category == pytest.approx({"Art and Design": 50.0, "Science": 100.0 * 2 / 3})
    assert list(s.per_category) == ["Art and Design", "Science"]  # the official order
    assert s.extra["per_subject"] == {"Art": {"num": 2, "acc": 0.5}, "Math": {"num": 3, "acc": pytest.approx(2 / 3)}}
    assert s.extra["per_subfield"]["Calculus"] == {"num": 2, "acc": 0.5}
    assert (s.extra["n_multiple_choice"], s.extra["n_open"], s.extra["random_guesses"]) == (3, 2, 0)
    assert s.units["validation_Math_2"] == 0.0 and s.units["validation_Math_3"] == 1.0


def test_end_to_end_all_images_to_a_multi_image_target(tmp_path):
    pytest.importorskip("openai")
    from attnprompt.bench.run import evaluate
    from attnprompt.targets import OpenAIEndpointTarget
    from attnprompt.testing_server import FakeChatServer, image_urls, prompt_text

    root = make_mmmu(tmp_path / "MMMU")
    seen: dict[str, int] = {}

    def respond(request: dict) -> str:
        text = prompt_text(request)
        row = next(r for r in ROWS if text.startswith(r[1]))
        seen[row[0]] = len(image_urls(request))
        return REPLIES[row[0]]

    with FakeChatServer(responder=respond) as server:
        target = OpenAIEndpointTarget("tiny", base_url=server.base_url, max_retries=0, timeout=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BenchmarkDataWarning)
            result = evaluate("mmmu", root, target, "original", tmp_path / "run", progress=False)
    score = result["conditions"]["original"]
    assert score["overall"] == pytest.approx(60.0)
    assert score["per_category"]["Science"] == pytest.approx(100.0 * 2 / 3)
    assert seen == {"validation_Math_1": 1, "validation_Math_2": 3, "validation_Math_3": 1,
                    "validation_Art_1": 1, "validation_Art_2": 1}
