"""TextVQA val: questions about text in images, VQA accuracy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import AttnPromptError
from ..items import Item, Score
from .common import (
    DOCS,
    SHORT_ANSWER_SUFFIX,
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

__all__ = ["SPEC", "read_textvqa"]

LAYOUT = "DIR/TextVQA_0.5.1_val.json + DIR/train_images/<image_id>.jpg"


def read_textvqa(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = SHORT_ANSWER_SUFFIX) -> list[Item]:
    """TextVQA val: ``TextVQA_0.5.1_val.json`` (``{"data": [...]}``) + ``train_images/<image_id>.jpg``.

    Ids are the ``question_id``s; answers are the 10 human answers. The default suffix is
    LLaVA-1.5's short-answer instruction (LLaVA-1.5 also prepends OCR tokens, which this reader
    does not).
    """
    root, log = data_root(data), Log("textvqa")
    path = find("textvqa", LAYOUT, root, ["TextVQA_0.5.1_val.json"])
    images = find("textvqa", LAYOUT, root, ["train_images"], "folder")
    table = read_json("textvqa", path)
    rows = table.get("data") if isinstance(table, dict) else None
    if not isinstance(rows, list):
        raise AttnPromptError(f"textvqa: {path} must hold {{\"data\": [...]}} (see {DOCS})")

    def make(_: int, row: dict[str, Any]) -> Item:
        image = image_path(images, text_field(row, "image_id") + ".jpg")
        return Item.asking(id_field(row, "question_id"), str(image), text_field(row, "question"), prompt_suffix,
                           answer_strings(row.get("answers")))

    items = table_items(((f"{path} data[{i}]", i, row) for i, row in enumerate(rows)), limit, log, make)
    return finish(items, log, path, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    return [Item.asking(id_field(row, "question_id"), str(image), text_field(row, "question"), suffix,
                        answer_strings(row.get("answers")))]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """VQA accuracy (the official answer normalisation)."""
    from ..scorers import score_vqa

    return score_vqa(items, answers)


SPEC = BenchmarkSpec(
    "textvqa", read_textvqa, "TextVQA val: 5,000 questions about text in images, VQA accuracy",
    ("TextVQA_0.5.1_val.json", "train_images/"), LAYOUT,
    "vqa", SHORT_ANSWER_SUFFIX, "https://textvqa.org/dataset/",
    score=score, hub_items=hub_items,
)
