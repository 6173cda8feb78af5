"""Benchmark readers: each benchmark's official release layout -> a list of :class:`Item`.

Every reader takes the folder the user downloaded (``--data DIR``) and returns the items in the
file's order. ``docs/benchmarks.md`` says where each release comes from and how its folder must
look. The prompts follow the LLaVA-1.5 evaluation (``llava/eval`` and ``scripts/v1_5/eval`` of
haotian-liu/LLaVA); each short-answer or multiple-choice reader takes ``prompt_suffix`` to
change the instruction appended to the question.

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

import base64
import binascii
import csv
import inspect
import io
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from attnprompt.bench.items import Item
from attnprompt.errors import AttnPromptError
from attnprompt.io import JSONError, load_json

__all__ = [
    "BENCHMARKS",
    "BenchmarkDataWarning",
    "BenchmarkSpec",
    "SHORT_ANSWER_SUFFIX",
    "VIZWIZ_SUFFIX",
    "MULTIPLE_CHOICE_SUFFIX",
    "load_benchmark",
    "load_from_hub",
    "read_llavabench",
    "read_mmbench",
    "read_mme",
    "read_mmvet",
    "read_pope",
    "read_textvqa",
    "read_vizwiz",
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
POPE_SPLITS = ("random", "popular", "adversarial")
#: MME's 14 subtasks in the official order (10 perception, then 4 cognition).
MME_SUBTASKS = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
    "artwork", "OCR", "commonsense_reasoning", "numerical_calculation", "text_translation",
    "code_reasoning",
)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_YES_NO_INSTRUCTION = re.compile(r"\s*Please answer yes or no\.\s*$")


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
            ``"mmvet-judge"`` or ``"llavabench-judge"``.
        prompt_suffix: the default text appended to every question (LLaVA-1.5's prompt).
        url: where to download the release.
    """

    name: str
    reader: Callable[..., list[Item]]
    description: str
    files: tuple[str, ...]
    layout: str
    scorer: str
    prompt_suffix: str
    url: str

    def options(self) -> list[str]:
        """The keyword options the reader accepts besides ``limit``."""
        params = inspect.signature(self.reader).parameters
        return [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p != "limit"]


# --------------------------------------------------------------------------------------------
# shared helpers


class _Log:
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


class _BadRow(Exception):
    """A row that cannot become an item (the message says why)."""


def _layout_error(bench: str, what: Path | str, kind: str = "file") -> AttnPromptError:
    spec = BENCHMARKS.get(bench)
    layout = f"; expected layout: {spec.layout}" if spec else ""
    return AttnPromptError(f"{bench}: missing {kind} {what}{layout} (see {DOCS})")


def _root(data: str | os.PathLike[str]) -> Path:
    root = Path(data).expanduser().absolute()
    return root


def _find(bench: str, root: Path, candidates: Sequence[str], kind: str = "file") -> Path:
    """The first of ``root/candidate`` that exists, else a layout error naming the first."""
    for rel in candidates:
        p = root / rel
        if (p.is_file() if kind == "file" else p.is_dir()):
            return p
    raise _layout_error(bench, root / candidates[0], kind)


def _image_path(base: Path, name: Any) -> Path:
    """``base/name`` for a relative image name read from a benchmark file; raises _BadRow."""
    if not isinstance(name, str) or not name.strip():
        raise _BadRow(f"image name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise _BadRow("image name contains a NUL byte")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise _BadRow(f"absolute image path {name!r} rejected (image paths must stay inside the data folder)")
    if any(part == ".." for part in posix.split("/")):
        raise _BadRow(f"image path {name!r} leaves the data folder ('..' rejected)")
    return base.joinpath(*[p for p in posix.split("/") if p not in ("", ".")])


def _str(row: dict[str, Any], key: str, *, empty_ok: bool = False) -> str:
    value = row.get(key)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise _BadRow(f"field {key!r} must be a non-empty string, got {value!r}")
    return value


def _id(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value).strip() == "":
        raise _BadRow(f"field {key!r} must be an integer or a string, got {value!r}")
    return str(value)


def _not_valid(error: JSONError) -> str:
    """``not valid JSON (why)`` / ``not valid UTF-8 (byte N)``."""
    return error.reason.replace("invalid JSON", "not valid JSON", 1)


def _read_json(bench: str, path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AttnPromptError(f"{bench}: cannot read {path}: {e.strerror or e}") from None
    try:
        return load_json(data)
    except JSONError as e:
        raise AttnPromptError(f"{bench}: {path} is {_not_valid(e)}; see {DOCS}") from None


def _jsonl(path: Path, log: _Log) -> Iterator[tuple[int, dict[str, Any]]]:
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


def _finish(items: list[Item], log: _Log, source: Path | str, limit: int | None) -> list[Item]:
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


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise AttnPromptError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def _full(limit: int | None, n: int) -> bool:
    return limit is not None and n >= limit


def _table_items(entries: Iterable[tuple[str, Any, Any]], limit: int | None, log: _Log,
                 make: Callable[[Any, dict[str, Any]], Item]) -> list[Item]:
    """Items ``make(key, row)`` from ``(where, key, row)`` entries of a JSON table, up to ``limit``;
    a row that is not an object or that ``make`` rejects (``_BadRow``) is skipped and logged at ``where``."""
    items: list[Item] = []
    for where, key, row in entries:
        if _full(limit, len(items)):
            break
        log.rows += 1
        try:
            if not isinstance(row, dict):
                raise _BadRow("not a JSON object")
            items.append(make(key, row))
        except _BadRow as e:
            log.bad(where, str(e))
    return items


# --------------------------------------------------------------------------------------------
# item builders (shared by the local readers and load_from_hub)


def _mmvet_item(qid: str, image: Path, row: dict[str, Any], suffix: str) -> Item:
    caps = row.get("capability")
    if isinstance(caps, str):  # the hub copies store "rec,ocr"
        caps = [c.strip() for c in caps.split(",") if c.strip()]
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c for c in caps):
        raise _BadRow(f"field 'capability' must be a non-empty list of strings, got {caps!r}")
    return Item(
        id=qid, image=str(image), question=_str(row, "question") + suffix, answers=(_str(row, "answer", empty_ok=True),),
        category=",".join(sorted(caps)), meta={"capabilities": list(caps)},
    )


def _context_text(caption: Any) -> str:
    if isinstance(caption, list) and all(isinstance(c, str) for c in caption):
        return "\n".join(caption)
    if isinstance(caption, str):
        return caption
    raise _BadRow(f"caption must be a string or a list of strings, got {type(caption).__name__}")


def _pope_item(split: str, qid: str, question: str, label: Any, image: Path, suffix: str) -> Item:
    ans = label.strip().lower() if isinstance(label, str) else None
    if ans not in ("yes", "no"):
        raise _BadRow(f"label must be 'yes' or 'no', got {label!r}")
    return Item(id=f"{split}-{qid}", image=str(image), question=question + suffix, answers=(ans,), category=split)


def _mme_question(raw: str, suffix: str) -> str:
    # LLaVA-1.5 (and lmms-eval) replace MME's " Please answer yes or no." by their instruction.
    if suffix:
        return _YES_NO_INSTRUCTION.sub("", raw) + suffix
    return raw


def _mme_item(subtask: str, pair: str, image: Path, i: int, raw: str, answer: str, suffix: str) -> Item:
    ans = answer.strip().lower()
    if ans not in ("yes", "no"):
        raise _BadRow(f"answer must be Yes or No, got {answer!r}")
    return Item(
        id=f"{pair}/{i}", image=str(image), question=_mme_question(raw.strip(), suffix), answers=(ans,),
        category=subtask, meta={"pair": pair, "raw_question": raw.strip()},
    )


def _answer_strings(answers: Any) -> tuple[str, ...]:
    """VQA-style human answers: a list of strings or of ``{"answer": ...}`` objects."""
    if not isinstance(answers, list) or not answers:
        raise _BadRow(f"field 'answers' must be a non-empty list, got {answers!r}")
    out = []
    for a in answers:
        if isinstance(a, dict):
            a = a.get("answer")
        if not isinstance(a, str):
            raise _BadRow(f"every answer must be a string, got {a!r}")
        out.append(a)
    return tuple(out)


def _is_none(value: Any) -> bool:
    """An empty MMBench cell (pandas writes NaN; some copies hold 'nan' or 'none')."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none")


def _mmbench_items(
    index: int, question: str, hint: str | None, options: list[str], answer: str, category: str | None,
    l2: str | None, image: Path, suffix: str, circular: bool,
) -> list[Item]:
    k = len(options)
    letters = [chr(ord("A") + j) for j in range(k)]
    if k < 2:
        raise _BadRow(f"needs at least 2 options, found {k}")
    if answer not in letters:
        raise _BadRow(f"answer {answer!r} is not one of the options {''.join(letters)}")
    correct = letters.index(answer)
    items = []
    for s in range(k if circular else 1):
        rotated = options[s:] + options[:s]
        opts = dict(zip(letters, rotated))
        text = (hint + "\n" if hint is not None else "") + question
        text += "".join(f"\n{letter}. {opt}" for letter, opt in opts.items()) + suffix
        items.append(Item(
            id=f"{index}-{s}", image=str(image), question=text, answers=(letters[(correct - s) % k],),
            category=category, meta={"index": index, "circular": str(index), "shift": s, "options": opts, "l2_category": l2},
        ))
    return items


# --------------------------------------------------------------------------------------------
# readers


def read_mmvet(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = "") -> list[Item]:
    """MM-Vet: ``mm-vet.json`` (``"v1_0": {imagename, question, answer, capability}``) + ``images/``.

    Item ids are the json keys; ``category`` joins the sorted capabilities with ``","``.
    """
    root, log = _root(data), _Log("mmvet")
    path = _find("mmvet", root, ["mm-vet.json", "mm-vet/mm-vet.json"])
    images = path.parent / "images"
    if not images.is_dir():
        raise _layout_error("mmvet", images, "folder")
    table = _read_json("mmvet", path)
    if not isinstance(table, dict):
        raise AttnPromptError(f"mmvet: {path} must hold a JSON object keyed by question id (see {DOCS})")
    items = _table_items(
        ((f"{path} entry {key!r}", key, row) for key, row in table.items()), limit, log,
        lambda key, row: _mmvet_item(key, _image_path(images, row.get("imagename")), row, prompt_suffix),
    )
    return _finish(items, log, path, limit)


def read_llavabench(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = "") -> list[Item]:
    """LLaVA-Bench (in-the-wild): ``questions.jsonl``, ``answers_gpt4.jsonl``, ``context.jsonl``, ``images/``.

    The GPT-4 answer (matched by ``question_id``) is the reference; ``meta["context"]`` is the
    image's caption (a list of captions is joined by newlines, as LLaVA's judge script does).
    """
    root, log = _root(data), _Log("llavabench")
    qpath = _find("llavabench", root, ["questions.jsonl"])
    apath = _find("llavabench", root, ["answers_gpt4.jsonl"])
    cpath = _find("llavabench", root, ["context.jsonl"])
    images = _find("llavabench", root, ["images"], "folder")
    refs: dict[str, str] = {}
    for lineno, row in _jsonl(apath, log):
        try:
            refs.setdefault(_id(row, "question_id"), _str(row, "text"))
        except _BadRow as e:
            log.bad(f"{apath}:{lineno}", str(e))
    contexts: dict[str, str] = {}
    for lineno, row in _jsonl(cpath, log):
        try:
            contexts.setdefault(_str(row, "image"), _context_text(row.get("caption")))
        except _BadRow as e:
            log.bad(f"{cpath}:{lineno}", str(e))
    items: list[Item] = []
    for lineno, row in _jsonl(qpath, log):
        if _full(limit, len(items)):
            break
        try:
            qid, name = _id(row, "question_id"), _str(row, "image")
            image = _image_path(images, name)
            if qid not in refs:
                raise _BadRow(f"no reference answer for question_id {qid} in {apath.name}")
            if name not in contexts:
                raise _BadRow(f"no caption for image {name!r} in {cpath.name}")
            category = row.get("category")
            items.append(Item(
                id=qid, image=str(image), question=_str(row, "text") + prompt_suffix, answers=(refs[qid],),
                category=category if isinstance(category, str) and category else None,
                meta={"context": contexts[name]},
            ))
        except _BadRow as e:
            log.bad(f"{qpath}:{lineno}", str(e))
    return _finish(items, log, qpath, limit)


def read_pope(
    data: str | os.PathLike[str], *, limit: int | None = None, images_dir: str | os.PathLike[str] | None = None,
    splits: Sequence[str] = POPE_SPLITS, prompt_suffix: str = SHORT_ANSWER_SUFFIX,
) -> list[Item]:
    """POPE (COCO): ``coco_pope_{random,popular,adversarial}.json`` (JSON lines) + COCO val2014 images.

    The question files may sit in DIR or in ``DIR/coco``. Images come from ``images_dir``
    (default ``DIR/images``, else ``DIR/val2014``). Ids are ``"{split}-{question_id}"`` (each file
    numbers its questions from 1); ``category`` is the split.
    """
    root, log = _root(data), _Log("pope")
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    bad = [s for s in splits if s not in POPE_SPLITS]
    if bad or not splits:
        raise AttnPromptError(f"pope: unknown split(s) {bad or splits!r}; choose from {', '.join(POPE_SPLITS)}")
    files = [
        (s, _find("pope", root, [f"coco_pope_{s}.json", f"coco/coco_pope_{s}.json"])) for s in splits
    ]
    if images_dir is not None:
        images = Path(images_dir).expanduser().absolute()
        if not images.is_dir():
            raise AttnPromptError(f"pope: images_dir {images} is not a folder (see {DOCS})")
    else:
        images = _find("pope", root, ["images", "val2014"], "folder")
    items: list[Item] = []
    for split, path in files:
        for lineno, row in _jsonl(path, log):
            if _full(limit, len(items)):
                break
            try:
                image = _image_path(images, row.get("image"))
                items.append(_pope_item(split, _id(row, "question_id"), _str(row, "text"), row.get("label"), image, prompt_suffix))
            except _BadRow as e:
                log.bad(f"{path}:{lineno}", str(e))
    return _finish(items, log, files[0][1] if len(files) == 1 else root, limit)


def _mme_root(root: Path) -> Path:
    for rel in ("", "MME_Benchmark", "MME_Benchmark_release_version", "MME_Benchmark_release_version/MME_Benchmark"):
        base = root / rel if rel else root
        if any((base / t).is_dir() for t in MME_SUBTASKS):
            return base
    raise AttnPromptError(
        f"mme: no MME subtask folder (existence/, count/, ..., code_reasoning/) in {root} or its MME_Benchmark/; "
        f"expected layout: {BENCHMARKS['mme'].layout} (see {DOCS})"
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
    root, log = _root(data), _Log("mme")
    base = _mme_root(root)
    if isinstance(subtasks, str):
        subtasks = [s for s in subtasks.split(",") if s]
    wanted = list(subtasks) if subtasks is not None else list(MME_SUBTASKS)
    unknown = [s for s in wanted if s not in MME_SUBTASKS]
    if unknown or not wanted:
        raise AttnPromptError(f"mme: unknown subtask(s) {unknown or wanted!r}; choose from {', '.join(MME_SUBTASKS)}")
    absent = [s for s in wanted if not (base / s).is_dir()]
    if subtasks is not None and absent:
        raise _layout_error("mme", base / absent[0], "folder")
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
            if _full(limit, n_images):
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
                            raise _BadRow("expected 'question<TAB>answer'")
                        items.append(_mme_item(subtask, f"{subtask}/{image.name}", image, got, parts[0], parts[1], prompt_suffix))
                        got += 1
                    except _BadRow as e:
                        log.bad(f"{txt}:{lineno}", str(e))
            if got != 2:
                log.warn(f"{txt} has {got} usable question(s), MME expects 2 per image (acc+ needs both)")
    return _finish(items, log, base, limit)


def read_textvqa(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = SHORT_ANSWER_SUFFIX) -> list[Item]:
    """TextVQA val: ``TextVQA_0.5.1_val.json`` (``{"data": [...]}``) + ``train_images/<image_id>.jpg``.

    Ids are the ``question_id``s; answers are the 10 human answers. The default suffix is
    LLaVA-1.5's short-answer instruction (LLaVA-1.5 also prepends OCR tokens, which this reader
    does not).
    """
    root, log = _root(data), _Log("textvqa")
    path = _find("textvqa", root, ["TextVQA_0.5.1_val.json"])
    images = _find("textvqa", root, ["train_images"], "folder")
    table = _read_json("textvqa", path)
    rows = table.get("data") if isinstance(table, dict) else None
    if not isinstance(rows, list):
        raise AttnPromptError(f"textvqa: {path} must hold {{\"data\": [...]}} (see {DOCS})")

    def make(_: int, row: dict[str, Any]) -> Item:
        image = _image_path(images, _str(row, "image_id") + ".jpg")
        return Item(id=_id(row, "question_id"), image=str(image), question=_str(row, "question") + prompt_suffix,
                    answers=_answer_strings(row.get("answers")))

    items = _table_items(((f"{path} data[{i}]", i, row) for i, row in enumerate(rows)), limit, log, make)
    return _finish(items, log, path, limit)


def read_vizwiz(data: str | os.PathLike[str], *, limit: int | None = None, prompt_suffix: str = VIZWIZ_SUFFIX) -> list[Item]:
    """VizWiz-VQA val: ``val.json`` (or ``Annotations/val.json``) + ``val/`` images.

    Ids are the image names without extension (one question per image); answers are the 10
    answer strings; ``category`` is the ``answer_type`` (VizWiz reports accuracy per type);
    ``meta["answerable"]`` is the 0/1 flag.
    """
    root, log = _root(data), _Log("vizwiz")
    path = _find("vizwiz", root, ["val.json", "Annotations/val.json"])
    images = _find("vizwiz", root, ["val"], "folder")
    rows = _read_json("vizwiz", path)
    if not isinstance(rows, list):
        raise AttnPromptError(f"vizwiz: {path} must hold a JSON list of questions (see {DOCS})")

    def make(_: int, row: dict[str, Any]) -> Item:
        image = _image_path(images, row.get("image"))
        atype = row.get("answer_type")
        return Item(id=image.stem, image=str(image), question=_str(row, "question") + prompt_suffix,
                    answers=_answer_strings(row.get("answers")),
                    category=atype if isinstance(atype, str) and atype else None,
                    meta={"answerable": row.get("answerable")})

    items = _table_items(((f"{path} entry {i}", i, row) for i, row in enumerate(rows)), limit, log, make)
    return _finish(items, log, path, limit)


_IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


def _write_bytes(path: Path, blob: bytes) -> None:
    try:
        if path.is_file() and path.stat().st_size == len(blob) and path.read_bytes() == blob:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError as e:
        raise AttnPromptError(
            f"mmbench: cannot write decoded image {path} ({e.strerror or e}); pass image_cache_dir= a writable folder"
        ) from None


def _decode_image(cell: str) -> tuple[bytes, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        blob = base64.b64decode("".join(cell.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _BadRow("column 'image' is not valid base64") from None
    try:
        with Image.open(io.BytesIO(blob)) as im:
            fmt = im.format or ""
    except (UnidentifiedImageError, OSError):
        raise _BadRow("column 'image' does not decode to an image") from None
    return blob, _IMAGE_FORMATS.get(fmt, ".img")


def _mmbench_tsv(bench: str, root: Path, tsv: str | os.PathLike[str] | None) -> Path:
    if root.is_file() and root.suffix.lower() == ".tsv" and tsv is None:
        return root
    if tsv is not None:
        p = Path(tsv).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise _layout_error(bench, p)
        return p.absolute()
    default = root / "mmbench_dev_20230712.tsv"
    if default.is_file():
        return default
    found = sorted(p for p in root.glob("*.tsv") if p.name.lower().startswith("mmbench_dev_en"))
    if len(found) == 1:
        return found[0]
    if found:
        raise AttnPromptError(f"{bench}: several MMBench files in {root} ({', '.join(p.name for p in found)}); choose one with tsv=NAME")
    raise _layout_error(bench, default)


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
    bench, log = "mmbench", _Log("mmbench")
    root = _root(data)
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
                done = _full(limit, len(questions))
                if done and not pending:
                    break
                if not done:
                    log.rows += 1
                try:
                    if len(row) != len(header):
                        raise _BadRow(f"{len(row)} columns, the header has {len(header)}")
                    cell = lambda c: row[cols[c]] if c in cols else ""  # noqa: E731
                    raw_index = cell("index").strip()
                    if not re.fullmatch(r"\d{1,18}", raw_index):
                        raise _BadRow(f"index must be a non-negative integer, got {raw_index!r}")
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
                    if _is_none(question):
                        raise _BadRow("empty question")
                    options = []
                    for letter in letters:
                        if _is_none(cell(letter)):
                            break
                        options.append(cell(letter))
                    answer = cell("answer").strip().upper()
                    if len(options) < 2:
                        raise _BadRow(f"needs at least 2 options, found {len(options)}")
                    if answer not in [chr(ord("A") + j) for j in range(len(options))]:
                        raise _BadRow(f"answer {cell('answer')!r} is not one of the {len(options)} options")
                    if is_ref:
                        ref = int(image_cell)
                        if ref not in written:
                            pending[ref] = pending.get(ref, 0) + 1
                    elif not image_cell:
                        raise _BadRow("empty image")
                    else:
                        blob, ext = _decode_image(image_cell)
                        written[index] = cache / f"{index}{ext}"
                        _write_bytes(written[index], blob)
                        pending.pop(index, None)
                        ref = index
                    hint = None if _is_none(cell("hint")) else cell("hint")
                    category = None if _is_none(cell("category")) else cell("category")
                    l2 = None if _is_none(cell("l2-category")) else cell("l2-category")
                    questions.append((lineno, dict(
                        index=index, question=question, hint=hint, options=options, answer=answer,
                        category=category, l2=l2, ref=ref,
                    )))
                except _BadRow as e:
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
            items.extend(_mmbench_items(
                q["index"], q["question"], q["hint"], q["options"], q["answer"], q["category"], q["l2"],
                image, prompt_suffix, circular,
            ))
        except _BadRow as e:
            log.bad(f"{path}:{lineno}", str(e))
    return _finish(items, log, path, limit)


# --------------------------------------------------------------------------------------------
# registry


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "mmvet", read_mmvet, "MM-Vet: open-ended questions integrating 6 capabilities, graded by a GPT judge",
            ("mm-vet.json", "images/"), "DIR/mm-vet.json + DIR/images/ (the unzipped mm-vet.zip)",
            "mmvet-judge", "", "https://github.com/yuweihao/MM-Vet/releases/download/v1/mm-vet.zip",
        ),
        BenchmarkSpec(
            "llavabench", read_llavabench, "LLaVA-Bench (in-the-wild): 60 questions on 24 images, graded by a GPT judge",
            ("questions.jsonl", "answers_gpt4.jsonl", "context.jsonl", "images/"),
            "DIR/questions.jsonl + DIR/answers_gpt4.jsonl + DIR/context.jsonl + DIR/images/",
            "llavabench-judge", "", "https://huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
        ),
        BenchmarkSpec(
            "pope", read_pope, "POPE (COCO): yes/no object hallucination probes, random/popular/adversarial",
            ("coco_pope_random.json", "coco_pope_popular.json", "coco_pope_adversarial.json", "images/ or val2014/"),
            "DIR/coco_pope_{random,popular,adversarial}.json (or DIR/coco/...) + DIR/val2014/ (or images/, or images_dir=)",
            "pope", SHORT_ANSWER_SUFFIX, "https://github.com/AoiDragon/POPE/tree/e3e39262c85a6a83f26cf5094022a782cb0df58d/output/coco",
        ),
        BenchmarkSpec(
            "mme", read_mme, "MME: 14 yes/no subtasks, two questions per image (acc and acc+)",
            ("<subtask>/images/ + <subtask>/questions_answers_YN/", "or <subtask>/<stem>.{jpg,png} + <subtask>/<stem>.txt"),
            "DIR = MME_Benchmark_release_version (or its MME_Benchmark/) with one folder per subtask: "
            "images/ + questions_answers_YN/*.txt, or each image beside its .txt",
            "mme", SHORT_ANSWER_SUFFIX, "https://github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation",
        ),
        BenchmarkSpec(
            "textvqa", read_textvqa, "TextVQA val: 5,000 questions about text in images, VQA accuracy",
            ("TextVQA_0.5.1_val.json", "train_images/"), "DIR/TextVQA_0.5.1_val.json + DIR/train_images/<image_id>.jpg",
            "vqa", SHORT_ANSWER_SUFFIX, "https://textvqa.org/dataset/",
        ),
        BenchmarkSpec(
            "vizwiz", read_vizwiz, "VizWiz-VQA val: questions from blind users, VQA accuracy (with 'unanswerable')",
            ("val.json", "val/"), "DIR/val.json (or DIR/Annotations/val.json) + DIR/val/<image>",
            "vqa", VIZWIZ_SUFFIX, "https://vizwiz.org/tasks-and-datasets/vqa/",
        ),
        BenchmarkSpec(
            "mmbench", read_mmbench, "MMBench dev (en): multiple choice, circular evaluation over option shifts",
            ("mmbench_dev_20230712.tsv (or one MMBench_DEV_EN*.tsv)",),
            "DIR/mmbench_dev_20230712.tsv (or one DIR/MMBench_DEV_EN*.tsv, or tsv=NAME); images are base64 in the TSV",
            "mmbench", MULTIPLE_CHOICE_SUFFIX, "https://download.openmmlab.com/mmclassification/datasets/mmbench/mmbench_dev_20230712.tsv",
        ),
    )
}


def _spec(name: str) -> BenchmarkSpec:
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise AttnPromptError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return spec


def _check_options(spec: BenchmarkSpec, options: dict[str, Any]) -> None:
    allowed = spec.options()
    extra = [k for k in options if k not in allowed]
    if extra:
        raise AttnPromptError(
            f"{spec.name}: unknown option(s) {', '.join(extra)}; it takes {', '.join(allowed) or 'none'}"
        )


def load_benchmark(name: str, data: str | os.PathLike[str], *, limit: int | None = None, **options: Any) -> list[Item]:
    """The items of benchmark ``name`` read from its official release folder ``data``.

    ``limit`` keeps the first units of the file: questions, except MME (images: both questions
    of each) and MMBench (questions: all circular shifts of each). ``options`` go to the reader
    (``prompt_suffix`` for all; ``images_dir``/``splits`` for POPE; ``subtasks`` for MME;
    ``image_cache_dir``/``tsv``/``circular`` for MMBench). Raises :class:`AttnPromptError` for an
    unknown benchmark or option, a missing file, or data with no usable row.
    """
    spec = _spec(name)
    _check_options(spec, options)
    data_path = Path(data).expanduser()
    if not data_path.exists():
        raise AttnPromptError(f"{name}: data folder {data_path} does not exist; expected layout: {spec.layout} (see {DOCS})")
    return spec.reader(data_path, limit=_check_limit(limit), **options)


# --------------------------------------------------------------------------------------------
# Hugging Face Hub copies (optional; lmms-lab schemas)


def _hub_items(name: str, row: dict[str, Any], image: Path, n: int, seen: dict[str, int], suffix: str, circular: bool) -> list[Item]:
    if name == "pope":
        split = str(row.get("category") or "pope")
        return [_pope_item(split, _id(row, "question_id"), _str(row, "question"), row.get("answer"), image, suffix)]
    if name == "mme":
        subtask = _str(row, "category")
        pair = f"{subtask}/{os.path.basename(str(row.get('question_id') or n))}"
        seen[pair] = seen.get(pair, 0) + 1
        return [_mme_item(subtask, pair, image, seen[pair] - 1, _str(row, "question"), _str(row, "answer"), suffix)]
    if name == "mmvet":
        return [_mmvet_item(_id(row, "question_id"), image, row, suffix)]
    if name == "llavabench":
        return [Item(_id(row, "question_id"), str(image), _str(row, "question") + suffix, (_str(row, "gpt_answer"),),
                     row.get("category") or None, {"context": _context_text(row.get("caption", ""))})]
    if name in ("textvqa", "vizwiz"):
        cat = row.get("answer_type") if name == "vizwiz" else None
        return [Item(_id(row, "question_id"), str(image), _str(row, "question") + suffix,
                     _answer_strings(row.get("answers")), cat if isinstance(cat, str) and cat else None)]
    if name == "mmbench":
        options = []
        for letter in "ABCDEFGH":
            if letter not in row or _is_none(row.get(letter)):
                break
            options.append(str(row[letter]))
        l2 = row.get("L2-category", row.get("l2-category"))
        return _mmbench_items(
            int(_id(row, "index")), _str(row, "question"), None if _is_none(row.get("hint")) else str(row["hint"]),
            options, str(row.get("answer", "")).strip().upper(), row.get("category") or None,
            None if _is_none(l2) else str(l2), image, suffix, circular,
        )
    raise AttnPromptError(f"load_from_hub does not support {name!r}")


def load_from_hub(
    name: str, hub_id: str, split: str, *, limit: int | None = None, image_cache_dir: str | os.PathLike[str] | None = None,
    prompt_suffix: str | None = None, circular: bool = True, config: str | None = None,
) -> list[Item]:
    """The items of benchmark ``name`` from a Hugging Face dataset in the lmms-lab schema.

    ``config`` is the dataset configuration (``"en"`` for lmms-lab/MMBench). Needs the optional ``datasets`` package and network access (or its cache). Images are saved
    as PNG under ``image_cache_dir`` (default ``~/.cache/attnprompt/hub/<hub_id>/<split>``), named
    by row number. ``limit`` counts rows. The official files (:func:`load_benchmark`) remain the
    reference; the hub copies re-encode images and differ in small ways (see ``docs/benchmarks.md``).
    """
    spec = _spec(name)
    limit = _check_limit(limit)
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise AttnPromptError(
            "load_from_hub needs the 'datasets' package (pip install datasets); or download the official "
            f"files and use load_benchmark / --data (see {DOCS})"
        ) from None
    try:
        ds = datasets.load_dataset(hub_id, config, split=split) if config else datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # network, auth, unknown split...: one clear line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise AttnPromptError(
            f"cannot load {hub_id!r} split {split!r} from the Hugging Face Hub ({type(e).__name__}: {first}); "
            f"offline? download the official files and use --data (see {DOCS})"
        ) from None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{hub_id}/{split}")
    cache = Path(image_cache_dir).expanduser().absolute() if image_cache_dir is not None else (
        Path.home() / ".cache" / "attnprompt" / "hub" / safe
    )
    cache.mkdir(parents=True, exist_ok=True)
    suffix = spec.prompt_suffix if prompt_suffix is None else prompt_suffix
    log = _Log(name)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(ds):
        if _full(limit, n):
            break
        log.rows += 1
        try:
            img = row.get("image")
            if not hasattr(img, "save"):
                raise _BadRow("column 'image' is not an image")
            path = cache / f"{n:06d}.png"
            if not path.is_file():
                img.convert("RGB").save(path)
            items.extend(_hub_items(name, row, path, n, seen, suffix, circular))
        except _BadRow as e:
            log.bad(f"{hub_id} [{split}] row {n}", str(e))
    return _finish(items, log, f"{hub_id} [{split}]", limit)
