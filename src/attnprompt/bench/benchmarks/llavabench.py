"""LLaVA-Bench (in-the-wild): 60 questions on 24 images, graded by a GPT judge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..items import Item, Score
from .common import (
    BadRow,
    BenchmarkSpec,
    Log,
    context_text,
    data_root,
    find,
    finish,
    full,
    id_field,
    image_path,
    jsonl_rows,
    text_field,
)

__all__ = ["SPEC", "read_llavabench"]

LAYOUT = "DIR/questions.jsonl + DIR/answers_gpt4.jsonl + DIR/context.jsonl + DIR/images/"


def read_llavabench(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = "") -> list[Item]:
    """LLaVA-Bench (in-the-wild): ``questions.jsonl``, ``answers_gpt4.jsonl``, ``context.jsonl``, ``images/``.

    The GPT-4 answer (matched by ``question_id``) is the reference; ``meta["context"]`` is the
    image's caption (a list of captions is joined by newlines, as LLaVA's judge script does).
    """
    root, log = data_root(data), Log("llavabench")
    qpath = find("llavabench", LAYOUT, root, ["questions.jsonl"])
    apath = find("llavabench", LAYOUT, root, ["answers_gpt4.jsonl"])
    cpath = find("llavabench", LAYOUT, root, ["context.jsonl"])
    images = find("llavabench", LAYOUT, root, ["images"], "folder")
    refs: dict[str, str] = {}
    for lineno, row in jsonl_rows(apath, log):
        try:
            refs.setdefault(id_field(row, "question_id"), text_field(row, "text"))
        except BadRow as e:
            log.bad(f"{apath}:{lineno}", str(e))
    contexts: dict[str, str] = {}
    for lineno, row in jsonl_rows(cpath, log):
        try:
            contexts.setdefault(text_field(row, "image"), context_text(row.get("caption")))
        except BadRow as e:
            log.bad(f"{cpath}:{lineno}", str(e))
    items: list[Item] = []
    for lineno, row in jsonl_rows(qpath, log):
        if full(limit, len(items)):
            break
        try:
            qid, name = id_field(row, "question_id"), text_field(row, "image")
            image = image_path(images, name)
            if qid not in refs:
                raise BadRow(f"no reference answer for question_id {qid} in {apath.name}")
            if name not in contexts:
                raise BadRow(f"no caption for image {name!r} in {cpath.name}")
            category = row.get("category")
            items.append(Item.asking(
                qid, str(image), text_field(row, "text"), prompt_suffix, (refs[qid],),
                category=category if isinstance(category, str) and category else None,
                meta={"context": contexts[name]},
            ))
        except BadRow as e:
            log.bad(f"{qpath}:{lineno}", str(e))
    return finish(items, log, qpath, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    return [Item.asking(id_field(row, "question_id"), str(image), text_field(row, "question"), suffix,
                        (text_field(row, "gpt_answer"),), category=row.get("category") or None,
                        meta={"context": context_text(row.get("caption", ""))})]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """LLaVA-Bench's GPT-judged relative score."""
    from ..judges import judge_llavabench

    return judge_llavabench(items, answers, judge)


SPEC = BenchmarkSpec(
    "llavabench", read_llavabench, "LLaVA-Bench (in-the-wild): 60 questions on 24 images, graded by a GPT judge",
    ("questions.jsonl", "answers_gpt4.jsonl", "context.jsonl", "images/"),
    LAYOUT,
    "llavabench-judge", "", "https://huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
    score=score, hub_items=hub_items,
)
