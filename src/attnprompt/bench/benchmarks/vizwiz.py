"""VizWiz-VQA val: questions from blind users, VQA accuracy (with "unanswerable")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import AttnPromptError
from ..items import Item, Score
from .common import (
    DOCS,
    VIZWIZ_SUFFIX,
    BenchmarkSpec,
    Log,
    answer_strings,
    data_root,
    find,
    finish,
    id_field,
    image_path,
    read_json,
    table_items,
    text_field,
)

__all__ = ["SPEC", "read_vizwiz"]

LAYOUT = "DIR/val.json (or DIR/Annotations/val.json) + DIR/val/<image>"


def read_vizwiz(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = VIZWIZ_SUFFIX) -> list[Item]:
    """VizWiz-VQA val: ``val.json`` (or ``Annotations/val.json``) + ``val/`` images.

    Ids are the image names without extension (one question per image); answers are the 10
    answer strings; ``category`` is the ``answer_type`` (VizWiz reports accuracy per type);
    ``meta["answerable"]`` is the 0/1 flag.
    """
    root, log = data_root(data), Log("vizwiz")
    path = find("vizwiz", LAYOUT, root, ["val.json", "Annotations/val.json"])
    images = find("vizwiz", LAYOUT, root, ["val"], "folder")
    rows = read_json("vizwiz", path)
    if not isinstance(rows, list):
        raise AttnPromptError(f"vizwiz: {path} must hold a JSON list of questions (see {DOCS})")

    def make(_: int, row: dict[str, Any]) -> Item:
        image = image_path(images, row.get("image"))
        atype = row.get("answer_type")
        return Item.asking(image.stem, str(image), text_field(row, "question"), prompt_suffix,
                           answer_strings(row.get("answers")),
                           category=atype if isinstance(atype, str) and atype else None,
                           meta={"answerable": row.get("answerable")})

    items = table_items(((f"{path} entry {i}", i, row) for i, row in enumerate(rows)), limit, log, make)
    return finish(items, log, path, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    cat = row.get("answer_type")
    return [Item.asking(id_field(row, "question_id"), str(image), text_field(row, "question"), suffix,
                        answer_strings(row.get("answers")), category=cat if isinstance(cat, str) and cat else None)]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """VQA accuracy (the official answer normalisation)."""
    from ..scorers import score_vqa

    return score_vqa(items, answers)


SPEC = BenchmarkSpec(
    "vizwiz", read_vizwiz, "VizWiz-VQA val: questions from blind users, VQA accuracy (with 'unanswerable')",
    ("val.json", "val/"), LAYOUT,
    "vqa", VIZWIZ_SUFFIX, "https://vizwiz.org/tasks-and-datasets/vqa/",
    score=score, hub_items=hub_items,
)
