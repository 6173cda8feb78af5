"""What every benchmark module shares: the spec, the prompt suffixes, and the damaged-data policy.

Damaged data is handled the same way everywhere:

* a missing benchmark file or folder -> :class:`AttnPromptError` naming it and the layout;
* a malformed row -> skipped with a :class:`BenchmarkDataWarning` naming the file and line
  (or entry); an error if no row is usable;
* an image path in a file that is absolute or climbs out with ``..`` -> that row is skipped
  with a warning (paths are checked as written: a symlink the user placed is followed);
* a referenced image that does not exist -> the item is kept (the harness reports it per item)
  and one warning gives the count.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ...errors import AttnPromptError
from ...files.jsondata import JSONError, load_json
from ..items import Item, Score

__all__ = [
    "BenchmarkDataWarning",
    "BenchmarkSpec",
    "DOCS",
    "SHORT_ANSWER_SUFFIX",
    "VIZWIZ_SUFFIX",
    "MULTIPLE_CHOICE_SUFFIX",
]

#: LLaVA-1.5's instruction for short answers (TextVQA, POPE, MME).
SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."
#: LLaVA-1.5's instruction for VizWiz.
VIZWIZ_SUFFIX = (
    "\nWhen the provided information is insufficient, respond with 'Unanswerable'."
    "\nAnswer the question using a single word or phrase."
)
#: LLaVA-1.5's instruction for MMBench (appended after the options).
MULTIPLE_CHOICE_SUFFIX = "\nAnswer with the option's letter from the given choices directly."

DOCS = "docs/benchmarks.md"


class BenchmarkDataWarning(UserWarning):
    """A problem in the benchmark files that the reader worked around (a skipped row...)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark of the registry.

    Attributes:
        name: the key in :data:`BENCHMARKS` (``--benchmark NAME``).
        reader: ``reader(data_dir, *, limit=None, **options) -> list[Item]``.
        description: one line for ``--help`` and reports.
        files: what ``--data DIR`` must hold (relative to DIR).
        layout: the expected layout in one line (used in error messages).
        scorer: the scorer's name: ``"vqa"``, ``"pope"``, ``"mme"``, ``"mmbench"``,
            ``"mmvet-judge"``, ``"llavabench-judge"`` or ``"mmmu"``.
        prompt_suffix: the default text appended to every question (LLaVA-1.5's prompt).
        url: where to download the release.
        score: the scorer itself: ``score(items, answers, judge) -> Score`` (``judge`` is
            ``None`` for rule-based scorers, a judge client for GPT-judged benchmarks).
        hub_items: ``hub_items(row, image, n, seen, prompt_suffix, circular) -> list[Item]``,
            the mapping of one row of the benchmark's Hugging Face copy (lmms-lab schema) to
            items, or ``None`` when :func:`load_from_hub` cannot read it.
        hub_reader: for copies whose rows do not fit ``hub_items`` (several image columns,
            one configuration per subject: MMMU), ``hub_reader(rows_of, where, *, local, config,
            limit, cache, options) -> list[Item]`` reads them all (``rows_of(config)`` opens one
            configuration).
    """

    name: str
    reader: Callable[..., list[Item]]
    description: str
    files: tuple[str, ...]
    layout: str
    scorer: str
    prompt_suffix: str
    url: str
    score: Callable[[Sequence[Item], Mapping[str, str], Any], Score] | None = None
    hub_items: Callable[..., list[Item]] | None = None
    hub_reader: Callable[..., list[Item]] | None = None

    def options(self) -> list[str]:
        """The keyword options the reader accepts besides ``limit``."""
        params = inspect.signature(self.reader).parameters
        return [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p != "limit"]


class Log:
    """Per-load bookkeeping: skipped rows, missing images, duplicate ids."""

    def __init__(self, bench: str):
        self.bench = bench
        self.rows = 0
        self.skipped = 0

    def bad(self, where: str, why: str) -> None:
        self.skipped += 1
        warnings.warn(f"{self.bench}: skipping {where}: {why}", BenchmarkDataWarning, stacklevel=4)

    def warn(self, message: str) -> None:
        warnings.warn(f"{self.bench}: {message}", BenchmarkDataWarning, stacklevel=4)


class BadRow(Exception):
    """A row that cannot become an item (the message says why)."""


def layout_error(bench: str, layout: str, what: Path | str, kind: str = "file") -> AttnPromptError:
    shown = f"; expected layout: {layout}" if layout else ""
    return AttnPromptError(f"{bench}: missing {kind} {what}{shown} (see {DOCS})")


def data_root(data: str | os.PathLike[str]) -> Path:
    root = Path(data).expanduser().absolute()
    return root


def find(bench: str, layout: str, root: Path, candidates: Sequence[str], kind: str = "file") -> Path:
    """The first of ``root/candidate`` that exists, else a layout error naming the first."""
    for rel in candidates:
        p = root / rel
        if (p.is_file() if kind == "file" else p.is_dir()):
            return p
    raise layout_error(bench, layout, root / candidates[0], kind)


def image_path(base: Path, name: Any) -> Path:
    """``base/name`` for a relative image name read from a benchmark file; raises BadRow."""
    if not isinstance(name, str) or not name.strip():
        raise BadRow(f"image name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise BadRow("image name contains a NUL byte")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise BadRow(f"absolute image path {name!r} rejected (image paths must stay inside the data folder)")
    if any(part == ".." for part in posix.split("/")):
        raise BadRow(f"image path {name!r} leaves the data folder ('..' rejected)")
    return base.joinpath(*[p for p in posix.split("/") if p not in ("", ".")])


def text_field(row: dict[str, Any], key: str, *, empty_ok: bool = False) -> str:
    value = row.get(key)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise BadRow(f"field {key!r} must be a non-empty string, got {value!r}")
    return value


def id_field(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value).strip() == "":
        raise BadRow(f"field {key!r} must be an integer or a string, got {value!r}")
    return str(value)


def _not_valid(error: JSONError) -> str:
    """``not valid JSON (why)`` / ``not valid UTF-8 (byte N)``."""
    return error.reason.replace("invalid JSON", "not valid JSON", 1)


def read_json(bench: str, path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AttnPromptError(f"{bench}: cannot read {path}: {e.strerror or e}") from None
    try:
        return load_json(data)  # deep nesting or bad UTF-8: one line, not a traceback
    except JSONError as e:
        raise AttnPromptError(f"{bench}: {path} is {_not_valid(e)}; see {DOCS}") from None


def jsonl_rows(path: Path, log: Log) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; malformed lines are skipped with a warning."""
    try:
        f = open(path, "rb")  # bytes: a line that is not UTF-8 is one bad row, not a crash
    except OSError as e:
        raise AttnPromptError(f"{log.bench}: cannot read {path}: {e.strerror or e}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            log.rows += 1
            try:
                obj = load_json(line)
            except JSONError as e:
                log.bad(f"{path}:{lineno}", _not_valid(e))
                continue
            if not isinstance(obj, dict):
                log.bad(f"{path}:{lineno}", "not a JSON object")
                continue
            yield lineno, obj


def finish(items: list[Item], log: Log, source: Path | str, limit: int | None) -> list[Item]:
    """Drop duplicate ids, check the images, and fail when nothing usable is left."""
    if not items and limit == 0:
        return []
    if not items:
        if log.skipped:
            raise AttnPromptError(
                f"{log.bench}: every row of {source} is malformed ({log.skipped} skipped, see the warnings "
                f"above); expected the layout in {DOCS}"
            )
        raise AttnPromptError(f"{log.bench}: no questions found in {source} (see {DOCS})")
    seen: set[str] = set()
    unique: list[Item] = []
    for it in items:
        if it.id in seen:
            log.bad(f"item {it.id!r} of {source}", "duplicate id (the first one is kept)")
            continue
        seen.add(it.id)
        unique.append(it)
    exists: dict[str, bool] = {}
    missing_items = 0
    for it in unique:
        if it.image not in exists:
            exists[it.image] = os.path.isfile(it.image)
        missing_items += not exists[it.image]
    missing = [p for p, ok in exists.items() if not ok]
    if missing:
        log.warn(
            f"{missing_items} item(s) reference {len(missing)} image file(s) that do not exist, e.g. {missing[0]}; "
            "they are kept and will be reported as per-item errors"
        )
    return unique


def check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise AttnPromptError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def full(limit: int | None, n: int) -> bool:
    return limit is not None and n >= limit


def table_items(entries: Iterable[tuple[str, Any, Any]], limit: int | None, log: Log,
                 make: Callable[[Any, dict[str, Any]], Item]) -> list[Item]:
    """Items ``make(key, row)`` from ``(where, key, row)`` entries of a JSON table, up to ``limit``;
    a row that is not an object or that ``make`` rejects (``BadRow``) is skipped and logged at ``where``."""
    items: list[Item] = []
    for where, key, row in entries:
        if full(limit, len(items)):
            break
        log.rows += 1
        try:
            if not isinstance(row, dict):
                raise BadRow("not a JSON object")
            items.append(make(key, row))
        except BadRow as e:
            log.bad(where, str(e))
    return items


def answer_strings(answers: Any) -> tuple[str, ...]:
    """VQA-style human answers: a list of strings or of ``{"answer": ...}`` objects."""
    if not isinstance(answers, list) or not answers:
        raise BadRow(f"field 'answers' must be a non-empty list, got {answers!r}")
    out = []
    for a in answers:
        if isinstance(a, dict):
            a = a.get("answer")
        if not isinstance(a, str):
            raise BadRow(f"every answer must be a string, got {a!r}")
        out.append(a)
    return tuple(out)


def context_text(caption: Any) -> str:
    if isinstance(caption, list) and all(isinstance(c, str) for c in caption):
        return "\n".join(caption)
    if isinstance(caption, str):
        return caption
    raise BadRow(f"caption must be a string or a list of strings, got {type(caption).__name__}")


def is_none(value: Any) -> bool:
    """An empty MMBench cell (pandas writes NaN; some copies hold 'nan' or 'none')."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none")
