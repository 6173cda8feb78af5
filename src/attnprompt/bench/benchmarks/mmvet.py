"""MM-Vet: open-ended questions integrating six capabilities, graded by a GPT judge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import AttnPromptError
from ..items import Item, Score
from .common import (
    DOCS,
    BadRow,
    BenchmarkSpec,
    Log,
    data_root,
    find,
    finish,
    id_field,
    image_path,
    layout_error,
    read_json,
    table_items,
    text_field,
)

__all__ = ["SPEC", "read_mmvet"]

LAYOUT = "DIR/mm-vet.json + DIR/images/ (the unzipped mm-vet.zip)"


def mmvet_item(qid: str, image: Path, row: dict[str, Any], suffix: str) -> Item:
    caps = row.get("capability")
    if isinstance(caps, str):  # the hub copies store "rec,ocr"
        caps = [c.strip() for c in caps.split(",") if c.strip()]
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c for c in caps):
        raise BadRow(f"field 'capability' must be a non-empty list of strings, got {caps!r}")
    return Item.asking(
        qid, str(image), text_field(row, "question"), suffix, (text_field(row, "answer", empty_ok=True),),
        category=",".join(sorted(caps)), meta={"capabilities": list(caps)},
    )


def read_mmvet(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = "") -> list[Item]:
    """MM-Vet: ``mm-vet.json`` (``"v1_0": {imagename, question, answer, capability}``) + ``images/``.

    Item ids are the json keys; ``category`` joins the sorted capabilities with ``","``.
    """
    root, log = data_root(data), Log("mmvet")
    path = find("mmvet", LAYOUT, root, ["mm-vet.json", "mm-vet/mm-vet.json"])
    images = path.parent / "images"
    if not images.is_dir():
        raise layout_error("mmvet", LAYOUT, images, "folder")
    table = read_json("mmvet", path)
    if not isinstance(table, dict):
        raise AttnPromptError(f"mmvet: {path} must hold a JSON object keyed by question id (see {DOCS})")
    items = table_items(
        ((f"{path} entry {key!r}", key, row) for key, row in table.items()), limit, log,
        lambda key, row: mmvet_item(key, image_path(images, row.get("imagename")), row, prompt_suffix),
    )
    return finish(items, log, path, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    return [mmvet_item(id_field(row, "question_id"), image, row, suffix)]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """MM-Vet's GPT-judged score."""
    from ..judges import judge_mmvet

    return judge_mmvet(items, answers, judge)


SPEC = BenchmarkSpec(
    "mmvet", read_mmvet, "MM-Vet: open-ended questions integrating 6 capabilities, graded by a GPT judge",
    ("mm-vet.json", "images/"), LAYOUT,
    "mmvet-judge", "", "https://github.com/yuweihao/MM-Vet/releases/download/v1/mm-vet.zip",
    score=score, hub_items=hub_items,
)
