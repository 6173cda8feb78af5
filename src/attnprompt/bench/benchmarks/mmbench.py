"""MMBench dev (en): multiple choice, circular evaluation over option shifts."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...errors import AttnPromptError
from ...files.durable import atomic_write_bytes
from ..items import Item, Score
from .common import (
    DOCS,
    MULTIPLE_CHOICE_SUFFIX,
    BadRow,
    BenchmarkSpec,
    Log,
    data_root,
    finish,
    full,
    id_field,
    is_none,
    layout_error,
    text_field,
)

__all__ = ["SPEC", "read_mmbench"]

LAYOUT = "DIR/mmbench_dev_20230712.tsv (or one DIR/MMBench_DEV_EN*.tsv, or tsv=NAME); images are base64 in the TSV"


def mmbench_items(
    index: int, question: str, hint: str | None, options: list[str], answer: str, category: str | None,
    l2: str | None, image: Path, suffix: str, circular: bool,
) -> list[Item]:
    k = len(options)
    letters = [chr(ord("A") + j) for j in range(k)]
    if k < 2:
        raise BadRow(f"needs at least 2 options, found {k}")
    if answer not in letters:
        raise BadRow(f"answer {answer!r} is not one of the options {''.join(letters)}")
    correct = letters.index(answer)
    items = []
    for s in range(k if circular else 1):
        rotated = options[s:] + options[:s]
        opts = dict(zip(letters, rotated))
        text = (hint + "\n" if hint is not None else "") + question
        text += "".join(f"\n{letter}. {opt}" for letter, opt in opts.items())
        items.append(Item.asking(
            f"{index}-{s}", str(image), text, suffix, (letters[(correct - s) % k],),
            category=category, meta={"index": index, "circular": str(index), "shift": s, "options": opts, "l2_category": l2},
        ))
    return items


_IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


def _write_bytes(path: Path, blob: bytes) -> None:
    try:
        if path.is_file() and path.stat().st_size == len(blob) and path.read_bytes() == blob:
            return
        atomic_write_bytes(path, blob)
    except (OSError, AttnPromptError) as e:
        cause = e.__cause__ if isinstance(e, AttnPromptError) and e.__cause__ is not None else e
        why = getattr(cause, "strerror", None) or cause
        raise AttnPromptError(
            f"mmbench: cannot write decoded image {path} ({why}); pass image_cache_dir= a writable folder"
        ) from None


def _decode_image(cell: str) -> tuple[bytes, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        blob = base64.b64decode("".join(cell.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRow("column 'image' is not valid base64") from None
    try:
        with Image.open(io.BytesIO(blob)) as im:
            fmt = im.format or ""
    except (UnidentifiedImageError, OSError):
        raise BadRow("column 'image' does not decode to an image") from None
    return blob, _IMAGE_FORMATS.get(fmt, ".img")


def _mmbench_tsv(bench: str, root: Path, tsv: str | os.PathLike[str] | None) -> Path:
    if root.is_file() and root.suffix.lower() == ".tsv" and tsv is None:
        return root
    if tsv is not None:
        p = Path(tsv).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise layout_error(bench, LAYOUT, p)
        return p.absolute()
    default = root / "mmbench_dev_20230712.tsv"
    if default.is_file():
        return default
    found = sorted(p for p in root.glob("*.tsv") if p.name.lower().startswith("mmbench_dev_en"))
    if len(found) == 1:
        return found[0]
    if found:
        raise AttnPromptError(f"{bench}: several MMBench files in {root} ({', '.join(p.name for p in found)}); choose one with tsv=NAME")
    raise layout_error(bench, LAYOUT, default)


def read_mmbench(
    data: str | os.PathLike[str], *, limit: int | None = None, image_cache_dir: str | os.PathLike[str] | None = None,
    tsv: str | os.PathLike[str] | None = None, circular: bool = True, prompt_suffix: str = MULTIPLE_CHOICE_SUFFIX,
) -> list[Item]:
    """MMBench dev (en): ``mmbench_dev_20230712.tsv`` or one ``MMBench_DEV_EN*.tsv`` in DIR.

    Columns: index, question, hint, A, B, C, D (trailing ones may be empty), answer, category,
    l2-category, image (base64; a short all-digit cell refers to another row's image, as the
    VLMEvalKit copies store repeated images). Images are decoded to
    ``image_cache_dir/<tsv stem>/<index>.<ext>`` (default ``DIR/.attnprompt_images``).

    With ``circular`` each question with k options gives k items, shift s showing option
    ``(j + s) % k`` under letter j; ids are ``"{index}-{s}"`` and ``meta["circular"]`` groups them.
    The prompt is LLaVA-1.5's: hint (if any) + newline + question + ``"\\nA. ..."`` per option +
    ``prompt_suffix``. ``limit`` counts questions (each keeps all its shifts).
    """
    bench, log = "mmbench", Log("mmbench")
    root = data_root(data)
    path = _mmbench_tsv(bench, root, tsv)
    folder = path.parent
    cache = Path(image_cache_dir).expanduser().absolute() if image_cache_dir is not None else folder / ".attnprompt_images"
    cache = cache / (re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "mmbench")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttnPromptError(f"mmbench: cannot create the image cache {cache} ({e.strerror or e}); pass image_cache_dir=") from None

    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images exceed csv's 128 KiB default
    questions: list[tuple[int, dict[str, Any]]] = []  # (line, parsed row) in file order
    written: dict[int, Path] = {}
    pending: dict[int, int] = {}  # referenced index -> how many rows wait for it
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t")
            try:
                header = next(reader)
            except StopIteration:
                raise AttnPromptError(f"mmbench: {path} is empty (see {DOCS})") from None
            cols = {name.strip().lower(): i for i, name in enumerate(header)}
            need = [c for c in ("index", "question", "answer", "image", "a", "b") if c not in cols]
            if need:
                raise AttnPromptError(
                    f"mmbench: {path} lacks column(s) {', '.join(need)}; expected the MMBench TSV "
                    f"(index, question, hint, A-D, answer, category, l2-category, image) (see {DOCS})"
                )
            letters = []
            for j in range(26):
                if chr(ord("a") + j) not in cols:
                    break
                letters.append(chr(ord("a") + j))
            for row in reader:
                lineno = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                done = full(limit, len(questions))
                if done and not pending:
                    break
                if not done:
                    log.rows += 1
                try:
                    if len(row) != len(header):
                        raise BadRow(f"{len(row)} columns, the header has {len(header)}")
                    cell = lambda c: row[cols[c]] if c in cols else ""  # noqa: E731
                    raw_index = cell("index").strip()
                    if not re.fullmatch(r"\d{1,18}", raw_index):
                        raise BadRow(f"index must be a non-negative integer, got {raw_index!r}")
                    index = int(raw_index)
                    image_cell = cell("image").strip()
                    is_ref = re.fullmatch(r"\d{1,18}", image_cell) is not None
                    if done:  # past the limit: only fetch images that earlier rows refer to
                        if index in pending and not is_ref and index not in written:
                            blob, ext = _decode_image(image_cell)
                            written[index] = cache / f"{index}{ext}"
                            _write_bytes(written[index], blob)
                            del pending[index]
                        continue
                    question = cell("question")
                    if is_none(question):
                        raise BadRow("empty question")
                    options = []
                    for letter in letters:
                        if is_none(cell(letter)):
                            break
                        options.append(cell(letter))
                    answer = cell("answer").strip().upper()
                    if len(options) < 2:
                        raise BadRow(f"needs at least 2 options, found {len(options)}")
                    if answer not in [chr(ord("A") + j) for j in range(len(options))]:
                        raise BadRow(f"answer {cell('answer')!r} is not one of the {len(options)} options")
                    if is_ref:
                        ref = int(image_cell)
                        if ref not in written:
                            pending[ref] = pending.get(ref, 0) + 1
                    elif not image_cell:
                        raise BadRow("empty image")
                    else:
                        blob, ext = _decode_image(image_cell)
                        written[index] = cache / f"{index}{ext}"
                        _write_bytes(written[index], blob)
                        pending.pop(index, None)
                        ref = index
                    hint = None if is_none(cell("hint")) else cell("hint")
                    category = None if is_none(cell("category")) else cell("category")
                    l2 = None if is_none(cell("l2-category")) else cell("l2-category")
                    questions.append((lineno, dict(
                        index=index, question=question, hint=hint, options=options, answer=answer,
                        category=category, l2=l2, ref=ref,
                    )))
                except BadRow as e:
                    if not done:
                        log.bad(f"{path}:{lineno}", str(e))
    except csv.Error as e:
        raise AttnPromptError(f"mmbench: {path} is not a readable TSV ({e}) (see {DOCS})") from None
    finally:
        csv.field_size_limit(old_limit)

    items: list[Item] = []
    for lineno, q in questions:
        image = written.get(q["ref"])
        if image is None:
            log.bad(f"{path}:{lineno}", f"its image refers to index {q['ref']}, which has no image in the file")
            continue
        try:
            items.extend(mmbench_items(
                q["index"], q["question"], q["hint"], q["options"], q["answer"], q["category"], q["l2"],
                image, prompt_suffix, circular,
            ))
        except BadRow as e:
            log.bad(f"{path}:{lineno}", str(e))
    return finish(items, log, path, limit)


def hub_items(row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    """Items of one row of the Hugging Face copy (lmms-lab schema)."""
    options = []
    for letter in "ABCDEFGH":
        if letter not in row or is_none(row.get(letter)):
            break
        options.append(str(row[letter]))
    l2 = row.get("L2-category", row.get("l2-category"))
    return mmbench_items(
        int(id_field(row, "index")), text_field(row, "question"), None if is_none(row.get("hint")) else str(row["hint"]),
        options, str(row.get("answer", "")).strip().upper(), row.get("category") or None,
        None if is_none(l2) else str(l2), image, suffix, circular,
    )


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """MMBench circular accuracy."""
    from ..scorers import score_mmbench

    return score_mmbench(items, answers)


SPEC = BenchmarkSpec(
    "mmbench", read_mmbench, "MMBench dev (en): multiple choice, circular evaluation over option shifts",
    ("mmbench_dev_20230712.tsv (or one MMBench_DEV_EN*.tsv)",),
    LAYOUT,
    "mmbench", MULTIPLE_CHOICE_SUFFIX, "https://download.openmmlab.com/mmclassification/datasets/mmbench/mmbench_dev_20230712.tsv",
    score=score, hub_items=hub_items,
)
