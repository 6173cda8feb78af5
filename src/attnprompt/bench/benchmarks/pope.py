"""POPE (COCO): yes/no object hallucination probes in three splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import AttnPromptError
from ..items import Item, Score
from .common import (
    DOCS,
    SHORT_ANSWER_SUFFIX,
    BadRow,
    BenchmarkSpec,
    Log,
    data_root,
    find,
    finish,
    full,
    id_field,
    image_path,
    jsonl_rows,
    layout_error,
    text_field,
)

__all__ = ["SPEC", "read_pope"]

LAYOUT = "DIR/coco_pope_{random,popular,adversarial}.json (or DIR/coco/...) + DIR/val2014/ (or images/, or images_dir=)"


POPE_SPLITS = ("random", "popular", "adversarial")


def pope_item(split: str, qid: str, question: str, label: Any, image: Path, suffix: str) -> Item:
    ans = label.strip().lower() if isinstance(label, str) else None
    if ans not in ("yes", "no"):
        raise BadRow(f"label must be 'yes' or 'no', got {label!r}")
    return Item.asking(f"{split}-{qid}", str(image), question, suffix, (ans,), category=split)


def read_pope(
    data: str | os.PathLike[str], *, limit: int | None = None, images_dir: str | os.PathLike[str] | None = None,
    splits: Sequence[str] | str | None = None, prompt_suffix: str = SHORT_ANSWER_SUFFIX,
) -> list[Item]:
    """POPE (COCO): ``coco_pope_{random,popular,adversarial}.json`` (JSON lines) + COCO val2014 images.

    The question files may sit in DIR or in ``DIR/coco``. ``splits`` (a list or comma-separated)
    picks some, which must be there; by default every split present is read and one warning
    names the missing ones (a folder with only ``coco_pope_random.json`` works). Images come
    from ``images_dir`` (default ``DIR/images``, else ``DIR/val2014``). Ids are
    ``"{split}-{question_id}"`` (each file numbers its questions from 1); ``category`` is the split.
    """
    root, log = data_root(data), Log("pope")
    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    if splits is not None:
        bad = [s for s in splits if s not in POPE_SPLITS]
        if bad or not splits:
            raise AttnPromptError(f"pope: unknown split(s) {bad or splits!r}; choose from {', '.join(POPE_SPLITS)}")
        files = [
            (s, find("pope", LAYOUT, root, [f"coco_pope_{s}.json", f"coco/coco_pope_{s}.json"])) for s in splits
        ]
    else:
        found = {s: next((root / rel for rel in (f"coco_pope_{s}.json", f"coco/coco_pope_{s}.json")
                          if (root / rel).is_file()), None) for s in POPE_SPLITS}
        files = [(s, p) for s, p in found.items() if p is not None]
        if not files:
            raise layout_error("pope", LAYOUT, root / "coco_pope_random.json")
        missing = [s for s, p in found.items() if p is None]
        if missing:
            log.warn(f"split(s) {', '.join(missing)} not found in {root} (coco_pope_<split>.json); "
                     f"reading {', '.join(s for s, _ in files)}")
    if images_dir is not None:
        images = Path(images_dir).expanduser().absolute()
        if not images.is_dir():
            raise AttnPromptError(f"pope: images_dir {images} is not a folder (see {DOCS})")
    else:
        images = find("pope", LAYOUT, root, ["images", "val2014"], "folder")
    items: list[Item] = []
    for split, path in files:
        for lineno, row in jsonl_rows(path, log):
            if full(limit, len(items)):
                break
            try:
                image = image_path(images, row.get("image"))
                items.append(pope_item(split, id_field(row, "question_id"), text_field(row, "text"), row.get("label"), image, prompt_suffix))
            except BadRow as e:
                log.bad(f"{path}:{lineno}", str(e))
    return finish(items, log, files[0][1] if len(files) == 1 else root, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    split = str(row.get("category") or "pope")
    return [pope_item(split, id_field(row, "question_id"), text_field(row, "question"), row.get("answer"), image, suffix)]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """POPE accuracy, precision, recall, F1 and yes-ratio."""
    from ..scorers import score_pope

    return score_pope(items, answers)


SPEC = BenchmarkSpec(
    "pope", read_pope, "POPE (COCO): yes/no object hallucination probes, random/popular/adversarial",
    ("coco_pope_random.json", "coco_pope_popular.json", "coco_pope_adversarial.json", "images/ or val2014/"),
    LAYOUT,
    "pope", SHORT_ANSWER_SUFFIX, "https://github.com/AoiDragon/POPE/tree/e3e39262c85a6a83f26cf5094022a782cb0df58d/output/coco",
    score=score, hub_items=hub_items,
)
