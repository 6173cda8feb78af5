"""Job manifests: JSON Lines or CSV rows of ``id, image, question``.

A malformed row does not stop reading: it comes back with a one-line reason, so that a batch
job can report it and go on with the rest.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AttnPromptError, one_line
from .durable import json_type, read_bytes
from .jsondata import JSONError, load_json
from .names import StrPath, unicode_problem

__all__ = ["ManifestRow", "read_manifest"]

_REQUIRED = ("id", "image", "question")
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class ManifestRow:
    """One manifest entry.

    Attributes:
        id: the item id as a string ("" when the row had no usable id).
        image: image path, made absolute against the manifest's folder when relative
            ("" when the row had no usable image).
        question: the query text ("" when missing).
        line: 1-based line of the row in the manifest file (its first line for CSV records
            that span lines).
        error: ``None`` for a usable row, else a one-line reason. Bad rows are returned rather
            than raised so that a job can report them and go on with the rest.
    """

    id: str
    image: str
    question: str
    line: int
    error: str | None = None



def _resolve_image(base: str, image: str) -> str:
    # Relative to the manifest, not the working directory, so a manifest can move with its
    # images. No normpath: ".." through a symlinked folder must keep its meaning.
    return image if os.path.isabs(image) else os.path.join(base, image)


def _row_from_object(obj: Any, base: str, line: int) -> ManifestRow:
    if not isinstance(obj, dict):
        return ManifestRow("", "", "", line, f"expected a JSON object, got {json_type(obj)}")
    problems: list[str] = []
    missing = [key for key in _REQUIRED if key not in obj]
    if missing:
        problems.append("missing key" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(k) for k in missing))

    item_id = ""
    raw_id = obj.get("id")
    if "id" in obj:
        # bool is an int subclass, but True as an id is a mistake, not the id "True".
        if isinstance(raw_id, str) or (isinstance(raw_id, int) and not isinstance(raw_id, bool)):
            item_id = str(raw_id)
            if not item_id:
                problems.append("empty 'id'")
        else:
            problems.append(f"'id' must be a string or integer, got {json_type(raw_id)}")

    image = ""
    if "image" in obj:
        raw_image = obj["image"]
        if not isinstance(raw_image, str):
            problems.append(f"'image' must be a string, got {json_type(raw_image)}")
        elif not raw_image:
            problems.append("empty 'image'")
        elif unicode_problem(raw_image):
            problems.append(f"'image' is {unicode_problem(raw_image)}")
        else:
            image = _resolve_image(base, raw_image)

    question = ""
    if "question" in obj:
        raw_question = obj["question"]
        if isinstance(raw_question, str):
            question = raw_question
            if not question.strip():
                problems.append("empty 'question'")
            elif unicode_problem(question):
                # A tokenizer would fail on it outside the per-row errors and lose the batch.
                problems.append(f"'question' is {unicode_problem(question)}")
        else:
            problems.append(f"'question' must be a string, got {json_type(raw_question)}")

    return ManifestRow(item_id, image, question, line, "; ".join(problems) or None)


def _read_jsonl_manifest(data: bytes, shown: str, base: str) -> list[ManifestRow]:
    rows: list[ManifestRow] = []
    first = True
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 BOM, as some Windows editors write
        if not raw.strip():
            continue
        if first and raw.lstrip().startswith(b"["):
            # A pretty-printed JSON array would otherwise yield one bogus error per line.
            raise AttnPromptError(
                f"manifest {shown}: found a JSON array; expected JSON Lines (one object per line)"
            )
        first = False
        try:
            obj = load_json(raw)
        except JSONError as exc:
            rows.append(ManifestRow("", "", "", number, exc.reason))
            continue
        rows.append(_row_from_object(obj, base, number))
    return rows


def _read_csv_manifest(data: bytes, shown: str, base: str) -> list[ManifestRow]:
    try:
        text = data.decode("utf-8-sig")  # -sig: Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise AttnPromptError(f"manifest {shown}: not valid UTF-8 (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    columns: dict[str, int] = {}
    rows: list[ManifestRow] = []
    end_of_previous = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = end_of_previous + 1
            end_of_previous = reader.line_num
            if header is None:
                raise AttnPromptError(f"manifest {shown}: line {line}: unreadable CSV header ({exc})") from exc
            rows.append(ManifestRow("", "", "", line, one_line(f"unreadable CSV record ({exc})")))
            continue
        line = end_of_previous + 1
        end_of_previous = reader.line_num
        if not any(field.strip() for field in record):
            continue
        if header is None:
            header = [name.strip().lower() for name in record]
            for index, name in enumerate(header):
                columns.setdefault(name, index)
            missing = [name for name in _REQUIRED if name not in columns]
            if missing:
                raise AttnPromptError(
                    f"manifest {shown}: CSV header lacks column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header)})"
                )
            continue
        if len(record) > len(header):
            # Usually an unquoted comma in the question; taking the first fields would
            # silently cut the question short.
            rows.append(
                ManifestRow("", "", "", line, f"{len(record)} fields but the header has {len(header)} (quote fields that contain commas)")
            )
            continue
        short = [name for name in _REQUIRED if columns[name] >= len(record)]
        if short:
            rows.append(
                ManifestRow("", "", "", line, f"{len(record)} fields, no value for {', '.join(short)}")
            )
            continue
        obj = {name: record[columns[name]].strip() for name in _REQUIRED}
        rows.append(_row_from_object(obj, base, line))
    if header is None:
        raise AttnPromptError(f"manifest {shown}: empty CSV file (expected a header with id,image,question)")
    return rows


def _mark_duplicates(rows: list[ManifestRow]) -> list[ManifestRow]:
    first_line: dict[str, int] = {}
    out: list[ManifestRow] = []
    for row in rows:
        if row.id and row.id in first_line:
            duplicate = f"duplicate id {row.id!r} (first on line {first_line[row.id]})"
            error = duplicate if row.error is None else f"{row.error}; {duplicate}"
            row = ManifestRow(row.id, row.image, row.question, row.line, error)
        elif row.id:
            first_line[row.id] = row.line
        out.append(row)
    return out




def read_manifest(path: StrPath) -> list[ManifestRow]:
    """Read a job manifest: JSON Lines (``.jsonl``, ``.json``, ``.ndjson``) or CSV (``.csv``).

    Each record needs ``id`` (string, or integer in JSON), ``image`` and ``question``; other
    keys/columns are ignored. CSV needs a header row naming at least those three columns;
    CSV values are stripped of surrounding spaces. Blank lines are skipped. Relative image
    paths are resolved against the manifest's folder.

    A malformed row (bad JSON, missing or mistyped field, a second use of an id) does not stop
    reading: it comes back with :attr:`ManifestRow.error` set, in file order.

    Raises:
        AttnPromptError: the file is missing or unreadable, has an unknown extension, is a
            JSON array instead of JSON Lines, or is a CSV file without the required header.
    """
    shown = os.fsdecode(os.fspath(path))
    suffix = Path(shown).suffix.lower()
    if suffix != ".csv" and suffix not in _JSONL_SUFFIXES:
        raise AttnPromptError(
            f"manifest {shown}: unknown extension {suffix or '(none)'!s}; use .jsonl, .json, .ndjson or .csv"
        )
    if os.path.isdir(shown):
        raise AttnPromptError(f"manifest {shown}: is a directory")
    data = read_bytes(shown, f"manifest {shown}")
    base = os.path.dirname(os.path.abspath(shown))
    if suffix == ".csv":
        rows = _read_csv_manifest(data, shown, base)
    else:
        rows = _read_jsonl_manifest(data, shown, base)
    return _mark_duplicates(rows)
