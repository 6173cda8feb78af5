"""MME: 14 yes/no subtasks, two questions per image (acc and acc+)."""

from __future__ import annotations

import os
import re
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
    finish,
    full,
    layout_error,
    text_field,
)

__all__ = ["SPEC", "read_mme"]

LAYOUT = (
    "DIR = MME_Benchmark_release_version (or its MME_Benchmark/) with one folder per subtask: "
    "images/ + questions_answers_YN/*.txt, or each image beside its .txt"
)


MME_SUBTASKS = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
    "artwork", "OCR", "commonsense_reasoning", "numerical_calculation", "text_translation",
    "code_reasoning",
)


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


_YES_NO_INSTRUCTION = re.compile(r"\s*Please answer yes or no\.\s*$")


def mme_question(raw: str, suffix: str) -> str:
    """The question the auxiliary sees; the target sees it plus ``suffix``.

    LLaVA-1.5 (and lmms-eval) replace MME's " Please answer yes or no." by their instruction;
    without one, MME's question is kept verbatim.
    """
    if suffix:
        return _YES_NO_INSTRUCTION.sub("", raw)
    return raw


def mme_item(subtask: str, pair: str, image: Path, i: int, raw: str, answer: str, suffix: str) -> Item:
    ans = answer.strip().lower()
    if ans not in ("yes", "no"):
        raise BadRow(f"answer must be Yes or No, got {answer!r}")
    return Item.asking(
        f"{pair}/{i}", str(image), mme_question(raw.strip(), suffix), suffix, (ans,),
        category=subtask, meta={"pair": pair, "raw_question": raw.strip()},
    )


def _mme_root(root: Path) -> Path:
    for rel in ("", "MME_Benchmark", "MME_Benchmark_release_version", "MME_Benchmark_release_version/MME_Benchmark"):
        base = root / rel if rel else root
        if any((base / t).is_dir() for t in MME_SUBTASKS):
            return base
    raise AttnPromptError(
        f"mme: no MME subtask folder (existence/, count/, ..., code_reasoning/) in {root} or its MME_Benchmark/; "
        f"expected layout: {LAYOUT} (see {DOCS})"
    )


def read_mme(
    data: str | os.PathLike[str], *, limit: int | None = None, subtasks: Sequence[str] | None = None,
    prompt_suffix: str = SHORT_ANSWER_SUFFIX,
) -> list[Item]:
    """MME: ``MME_Benchmark_release_version``, one folder per subtask.

    A subtask folder holds either ``images/`` + ``questions_answers_YN/<stem>.txt`` or each image
    beside its ``<stem>.txt``; each txt line is ``question<TAB>Yes|No``. With a non-empty
    ``prompt_suffix`` the question's own " Please answer yes or no." is replaced by the suffix (as
    LLaVA-1.5 does); ``prompt_suffix=""`` keeps MME's question verbatim. ``meta["pair"]`` is
    ``"{subtask}/{image name}"`` (shared by the image's two questions, for acc+) and
    ``meta["raw_question"]`` the line's question as in the txt file. ``limit`` counts images.
    """
    root, log = data_root(data), Log("mme")
    base = _mme_root(root)
    if isinstance(subtasks, str):
        subtasks = [s for s in subtasks.split(",") if s]
    wanted = list(subtasks) if subtasks is not None else list(MME_SUBTASKS)
    unknown = [s for s in wanted if s not in MME_SUBTASKS]
    if unknown or not wanted:
        raise AttnPromptError(f"mme: unknown subtask(s) {unknown or wanted!r}; choose from {', '.join(MME_SUBTASKS)}")
    absent = [s for s in wanted if not (base / s).is_dir()]
    if subtasks is not None and absent:
        raise layout_error("mme", LAYOUT, base / absent[0], "folder")
    if absent:
        log.warn(f"{len(absent)} of the 14 subtask folders are missing in {base}: {', '.join(absent)}")
    items: list[Item] = []
    n_images = 0
    for subtask in wanted:
        folder = base / subtask
        if not folder.is_dir():
            continue
        if (folder / "images").is_dir() and (folder / "questions_answers_YN").is_dir():
            img_dir, qa_dir = folder / "images", folder / "questions_answers_YN"
        else:
            img_dir = qa_dir = folder
        by_stem: dict[str, Path] = {}
        for p in sorted(img_dir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS and p.stem not in by_stem:
                by_stem[p.stem] = p
        for txt in sorted(p for p in qa_dir.iterdir() if p.suffix == ".txt" and p.is_file()):
            if full(limit, n_images):
                break
            n_images += 1
            image = by_stem.get(txt.stem, img_dir / f"{txt.stem}.jpg")  # a missing one is reported later
            got = 0
            with open(txt, encoding="utf-8-sig", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    log.rows += 1
                    parts = line.strip().split("\t")
                    try:
                        if len(parts) != 2 or not parts[0].strip():
                            raise BadRow("expected 'question<TAB>answer'")
                        items.append(mme_item(subtask, f"{subtask}/{image.name}", image, got, parts[0], parts[1], prompt_suffix))
                        got += 1
                    except BadRow as e:
                        log.bad(f"{txt}:{lineno}", str(e))
            if got != 2:
                log.warn(f"{txt} has {got} usable question(s), MME expects 2 per image (acc+ needs both)")
    return finish(items, log, base, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    subtask = text_field(row, "category")
    pair = f"{subtask}/{os.path.basename(str(row.get('question_id') or n))}"
    seen[pair] = seen.get(pair, 0) + 1
    return [mme_item(subtask, pair, image, seen[pair] - 1, text_field(row, "question"), text_field(row, "answer"), suffix)]


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """MME points (acc + acc+ per subtask); a pair with a missing answer is scored, not refused."""
    from ..scorers import score_mme

    return score_mme(items, answers, strict_pairs=False)


SPEC = BenchmarkSpec(
    "mme", read_mme, "MME: 14 yes/no subtasks, two questions per image (acc and acc+)",
    ("<subtask>/images/ + <subtask>/questions_answers_YN/", "or <subtask>/<stem>.{jpg,png} + <subtask>/<stem>.txt"),
    LAYOUT,
    "mme", SHORT_ANSWER_SUFFIX, "https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation",
    score=score, hub_items=hub_items,
)
