"""MMMU (validation): college-level questions over 30 subjects in 6 disciplines, images in the text.

Follows the official MMMU code (MMMU-Benchmark/MMMU, ``mmmu/utils/data_utils.py`` and
``eval_utils.py``; lmms-eval's ``tasks/mmmu`` is the same code):

* the prompt: ``construct_prompt`` with the LLaVA-1.5 configuration (``configs/llava1.5.yaml``),
  whose YAML folds to ``"{question}\\n(A) ...\\n(B) ...\\n\\nAnswer with the option's letter from
  the given choices directly."`` and ``"{question}\\nAnswer the question using a single word or
  phrase."``; the ``<image N>`` placeholders stay in the text as in the official script;
* the reply: ``parse_multi_choice_response`` / ``parse_open_response`` and their number and string
  normalisation, re-implemented here with their edge cases (see :func:`parse_multi_choice` and
  :func:`parse_open`);
* the score: ``eval_multi_choice`` / ``eval_open``, accuracy over instances, per subject and per
  discipline (``main_eval_only.py``: ``Overall-<discipline>``, subjects, ``Overall``).

Images: every question has ``image_1``; up to ``image_7`` appear as ``<image N>`` in the question
or the options. ``Item.image`` is ``image_1``: the official LLaVA-1.5 script gives the model
``image_1`` only, so a single-image target sees what published LLaVA-1.5 numbers saw.
``meta["images"]`` lists every image the prompt refers to, ordered by N (lmms-eval's
``mmmu_doc_to_visual``); targets that take several images get them all.
"""

from __future__ import annotations

import ast
import io
import os
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ...errors import AttnPromptError
from ..items import Item, Score
from .common import (
    DOCS,
    MULTIPLE_CHOICE_SUFFIX,
    SHORT_ANSWER_SUFFIX,
    BadRow,
    BenchmarkSpec,
    Log,
    check_limit,
    finish,
    full,
)

__all__ = [
    "SPEC",
    "DISCIPLINES",
    "SUBJECTS",
    "mmmu_prompt",
    "parse_multi_choice",
    "parse_open",
    "eval_multi_choice",
    "eval_open",
    "read_mmmu",
    "score_mmmu",
]

#: The official discipline -> subjects table (``DOMAIN_CAT2SUB_CAT``), in the official order.
DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"),
}
SUBJECTS: dict[str, str] = {s: d for d, ss in DISCIPLINES.items() for s in ss}  # subject -> discipline
SPLITS = ("dev", "validation", "test")
MAX_IMAGES = 7
_PLACEHOLDER = re.compile(r"<image (\d+)>")


# --------------------------------------------------------------------------------------------
# prompt


def _options(value: Any) -> list[str]:
    """The option list: the hub stores it as the text of a Python list (read with literal_eval,
    never eval); a ``datasets`` copy may hold a real list."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip() else []
        except (ValueError, SyntaxError):
            raise BadRow(f"options {value[:60]!r} is not a list") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(o, (str, int, float)) for o in value):
        raise BadRow(f"options must be a list of strings, got {type(value).__name__}")
    return [str(o) for o in value]


def mmmu_prompt(question: str, options: Sequence[str], question_type: str, *,
                prompt_suffix: str = MULTIPLE_CHOICE_SUFFIX, open_prompt_suffix: str = SHORT_ANSWER_SUFFIX) -> str:
    """The official LLaVA-1.5 prompt of one MMMU question (``construct_prompt``).

    Multiple choice: the question, a line ``(A) option`` per option, an empty line, the
    instruction; open: the question, then the instruction on its own line.
    """
    if question_type == "multiple-choice":
        letters = "".join(f"({chr(ord('A') + i)}) {o}\n" for i, o in enumerate(options))
        return f"{question}\n{letters}{prompt_suffix}"
    return f"{question}{open_prompt_suffix}"


def _gold(answer: Any, question_type: str, n_options: int) -> tuple[str, ...]:
    """The references. Open answers with several accepted forms are stored on the hub as the text
    of a list ("['24/7', '3.429']"); the official answer file holds the list itself."""
    if question_type == "multiple-choice":
        letter = str(answer).strip().upper()
        if not re.fullmatch(r"[A-Z]", letter) or ord(letter) - ord("A") >= n_options:
            raise BadRow(f"answer {answer!r} is not one of the {n_options} option letters")
        return (letter,)
    if isinstance(answer, str) and answer.strip().startswith("[") and answer.strip().endswith("]"):
        try:
            parsed = ast.literal_eval(answer.strip())
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(a, (str, int, float)) for a in parsed):
            return tuple(str(a) for a in parsed)
    if isinstance(answer, (list, tuple)) and answer:
        return tuple(str(a) for a in answer)
    if isinstance(answer, (int, float)) or (isinstance(answer, str) and answer.strip()):
        return (str(answer),)
    raise BadRow(f"empty answer {answer!r}")


def subject_of(item_id: str) -> str:
    """The subject in an official id ``<split>_<Subject>_<n>`` (``"_".join(id.split("_")[1:-1])``)."""
    return "_".join(item_id.split("_")[1:-1])


def mmmu_item(row: Mapping[str, Any], save_image: Callable[[str, Any], Path | None], *,
              prompt_suffix: str = MULTIPLE_CHOICE_SUFFIX, open_prompt_suffix: str = SHORT_ANSWER_SUFFIX) -> Item:
    """One hub row -> an :class:`Item`. ``save_image(name, value)`` stores ``row[name]`` (PIL
    image, ``{"bytes", "path"}`` or ``None``) and returns its path, or ``None`` for no image."""
    qid = row.get("id")
    if not isinstance(qid, str) or not qid.strip():
        raise BadRow(f"field 'id' must be a non-empty string, got {qid!r}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRow("empty question")
    qtype = str(row.get("question_type") or "").strip()
    if qtype not in ("multiple-choice", "open"):
        raise BadRow(f"question_type must be 'multiple-choice' or 'open', got {qtype!r}")
    options = _options(row.get("options", "[]")) if qtype == "multiple-choice" else []
    if qtype == "multiple-choice" and len(options) < 2:
        raise BadRow(f"a multiple-choice question needs at least 2 options, found {len(options)}")
    subject = subject_of(qid)
    if subject not in SUBJECTS:
        raise BadRow(f"id {qid!r} does not name one of the 30 MMMU subjects")
    images: dict[int, Path] = {}
    for n in range(1, MAX_IMAGES + 1):
        path = save_image(f"image_{n}", row.get(f"image_{n}"))
        if path is not None:
            images[n] = path
    if 1 not in images:
        raise BadRow("no image_1")
    text = question + "".join(options)
    referred = sorted({int(n) for n in _PLACEHOLDER.findall(text) if int(n) in images}) or [1]
    instruction = prompt_suffix if qtype == "multiple-choice" else open_prompt_suffix
    prompt = mmmu_prompt(question, options, qtype, prompt_suffix=prompt_suffix, open_prompt_suffix=open_prompt_suffix)
    return Item(
        id=qid,
        image=str(images[1]),
        question=prompt,
        answers=_gold(row.get("answer"), qtype, len(options)),
        category=subject,
        meta={
            "question_type": qtype,
            "options": {chr(ord("A") + i): o for i, o in enumerate(options)},
            "discipline": SUBJECTS[subject],
            "subfield": str(row.get("subfield") or ""),
            "images": [str(images[n]) for n in referred],
        },
        # the auxiliary and a judge see the question and options without the <image N> tags
        query=_PLACEHOLDER.sub("", prompt[: len(prompt) - len(instruction)] if instruction else prompt).strip(),
        instruction=instruction,
    )


# --------------------------------------------------------------------------------------------
# reader


def _image_writer(cache: Path) -> Callable[[str, str, Any], Path | None]:
    """``write(item_id, name, value)``: store an embedded image as ``cache/<id>_<name>.<ext>``."""
    from PIL import Image, UnidentifiedImageError

    def write(qid: str, name: str, value: Any) -> Path | None:
        if value is None:
            return None
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", f"{qid}_{name}")
        if isinstance(value, Image.Image):
            path = cache / f"{stem}.png"
            if not path.is_file():
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                value.convert("RGB").save(tmp, format="PNG")
                os.replace(tmp, path)
            return path
        blob = value.get("bytes") if isinstance(value, Mapping) else value if isinstance(value, bytes) else None
        if not blob:
            raise BadRow(f"{name} holds no image bytes")
        try:
            with Image.open(io.BytesIO(blob)) as im:
                ext = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}.get(im.format or "", ".img")
        except (UnidentifiedImageError, OSError):
            raise BadRow(f"{name} does not decode to an image") from None
        path = cache / f"{stem}{ext}"
        if not (path.is_file() and path.stat().st_size == len(blob)):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        return path

    return write


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _parquet_rows(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        raise AttnPromptError(
            "mmmu: reading the parquet release needs pyarrow (pip install 'attnprompt[hub]')") from None
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=64):
                yield from batch.to_pylist()
        except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on a damaged file
            raise AttnPromptError(f"mmmu: cannot read {f} ({e}); see {DOCS}") from None


def _saved_rows(path: Path, split: str) -> Iterator[dict[str, Any]]:
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise AttnPromptError(f"mmmu: {path} was saved by `datasets`; reading it needs it (pip install 'attnprompt[hub]')") from None
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise AttnPromptError(f"mmmu: {path} has no split {split!r} (it has {', '.join(ds)})")
        ds = ds[split]
    yield from ds


def _sources(root: Path, split: str) -> tuple[list[tuple[str, Callable[[], Iterator[dict[str, Any]]]]], list[str]]:
    """The row sources found under ``root`` and the subjects that have none.

    Layouts: ``root/<Subject>/<split>-*.parquet`` (the hub repository MMMU/MMMU as downloaded),
    ``root/<Subject>/`` saved by ``save_to_disk``, or one source for all subjects:
    ``root`` saved by ``save_to_disk`` or ``root[/data]/<split>-*.parquet`` (lmms-lab/MMMU)."""
    if _is_saved_dataset(root):
        return [(str(root), lambda: _saved_rows(root, split))], []
    for flat in (root, root / "data"):
        files = sorted(flat.glob(f"{split}-*.parquet"))
        if files:
            return [(str(flat), lambda files=files: _parquet_rows(files))], []  # type: ignore[misc]
    found: list[tuple[str, Callable[[], Iterator[dict[str, Any]]]]] = []
    missing: list[str] = []
    for subject in SUBJECTS:
        folder = root / subject
        files = sorted(folder.glob(f"{split}-*.parquet")) if folder.is_dir() else []
        if files:
            found.append((str(folder), lambda files=files: _parquet_rows(files)))  # type: ignore[misc]
        elif folder.is_dir() and _is_saved_dataset(folder):
            found.append((str(folder), lambda folder=folder: _saved_rows(folder, split)))  # type: ignore[misc]
        else:
            missing.append(subject)
    return found, missing


def read_mmmu(
    data: str | os.PathLike[str], *, limit: int | None = None, split: str = "validation",
    subjects: Sequence[str] | str | None = None, image_cache_dir: str | os.PathLike[str] | None = None,
    prompt_suffix: str = MULTIPLE_CHOICE_SUFFIX, open_prompt_suffix: str = SHORT_ANSWER_SUFFIX,
) -> list[Item]:
    """MMMU from the hub release as downloaded (``DIR/<Subject>/validation-*.parquet``) or a
    ``datasets`` copy (``save_to_disk`` of all subjects, or one per subject folder).

    ``split``: ``validation`` (default; ``dev`` also works, ``test`` has no answers).
    ``subjects``: a subset (names as the folders, comma-separated or a list); by default every
    subject present, with one warning naming the missing ones. Embedded images are written once
    to ``image_cache_dir`` (default ``DIR/.attnprompt_images/<split>``). ``limit`` counts questions.
    """
    root, log = Path(data).expanduser().absolute(), Log("mmmu")
    limit = check_limit(limit)
    if split not in SPLITS:
        raise AttnPromptError(f"mmmu: unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if isinstance(subjects, str):
        subjects = [s.strip() for s in subjects.split(",") if s.strip()]
    wanted = list(subjects) if subjects else None
    if wanted is not None:
        bad = [s for s in wanted if s not in SUBJECTS]
        if bad:
            raise AttnPromptError(f"mmmu: unknown subject(s) {', '.join(bad)}; the 30 subjects: {', '.join(SUBJECTS)}")
    sources, missing = _sources(root, split)
    if not sources:
        raise AttnPromptError(
            f"mmmu: no {split} data in {root}; expected DIR/<Subject>/{split}-*.parquet (the hub repository "
            f"MMMU/MMMU), a folder saved with datasets' save_to_disk, or DIR/data/{split}-*.parquet (see {DOCS})")
    if wanted is not None:
        absent = [s for s in wanted if s in missing]
        if absent:
            raise AttnPromptError(f"mmmu: no {split} data for subject(s) {', '.join(absent)} in {root}")
    elif missing:
        log.warn(f"{len(missing)} of 30 subjects are not in {root} and are left out: {', '.join(missing)}")
    cache = Path(image_cache_dir).expanduser().absolute() if image_cache_dir is not None else root / ".attnprompt_images"
    cache = cache / split
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AttnPromptError(f"mmmu: cannot create the image cache {cache} ({e.strerror or e}); pass image_cache_dir=") from None
    write = _image_writer(cache)
    items: list[Item] = []
    for where, rows in sources:
        for n, row in enumerate(rows()):
            if full(limit, len(items)):
                break
            qid = str(row.get("id", ""))
            if wanted is not None and subject_of(qid) not in wanted:
                continue
            log.rows += 1
            try:
                items.append(mmmu_item(row, lambda name, value: write(qid, name, value), prompt_suffix=prompt_suffix,
                                       open_prompt_suffix=open_prompt_suffix))
            except BadRow as e:
                log.bad(f"{where} row {n}", str(e))
    return finish(items, log, root, limit)


# --------------------------------------------------------------------------------------------
# reply parsing (official behaviour, edge cases included)


def parse_multi_choice(response: str, options: Mapping[str, str], *, seed: str = "") -> tuple[str, bool]:
    """The letter a reply chooses, by the official ``parse_multi_choice_response``; and whether it
    was a random guess.

    1. strip the characters ``, . ! ? ; : '`` from both ends, one after the other (so "(B)." keeps
       its trailing "." after ")": only the outermost run of each is removed, in that order);
       pad with a space on both sides;
    2. candidates: every letter written ``(X)``; if none, every letter written `` X `` (spaces on
       both sides, so "B." or "B," do not count unless they were at the very end);
    3. if none and the reply has more than 5 words: every option whose text occurs in the reply
       (case-insensitive);
    4. none: a random letter (the official code draws from ``random`` seeded 42 at import; here
       the draw is seeded by ``seed``, the item id, so reruns give the same letter);
       several: the one whose last occurrence starts last (for option texts, the text's last
       occurrence); a tie keeps the first letter, as ``np.argmax``.
    """
    letters = list(options)
    for ch in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(ch)
    response = f" {response} "
    candidates = [c for c in letters if f"({c})" in response]
    bracketed = bool(candidates)
    by_text = False
    if not candidates:
        candidates = [c for c in letters if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [c for c, text in options.items() if text.lower() in response.lower()]
        by_text = bool(candidates)
    if not candidates:
        return random.Random(f"mmmu:{seed}").choice(letters), True
    if len(candidates) == 1:
        return candidates[0], False
    if by_text:
        starts = [response.lower().rfind(options[c].lower()) for c in candidates]
    elif bracketed:
        starts = [response.rfind(f"({c})") for c in candidates]
    else:
        starts = [response.rfind(f" {c} ") for c in candidates]
    return candidates[starts.index(max(starts))], False


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize_mmmu(text: str) -> list[str | float]:
    """The official ``normalize_str``: a number (after deleting commas; anything ``float()``
    reads, "inf" and "1e3" included) becomes ``[round(x, 2)]``; other text is lower-cased, and a
    single character becomes ``[" x", "x "]`` so it only matches as a word edge."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def extract_numbers(text: str) -> list[str]:
    """Every number in ``text`` as the official ``extract_numbers``: with thousands commas, in
    scientific notation, and plain (the three lists concatenated, so a number can appear twice)."""
    return _NUM_COMMAS.findall(text) + _NUM_SCIENTIFIC.findall(text) + _NUM_SIMPLE.findall(text)


def _key_parts(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    # the split looks for ". " before a capital letter, but the text is already lower-case: in
    # effect it splits on newlines only (official behaviour)
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys: list[str] = []
    for i, part in enumerate(parts):
        indicators = _KEY_INDICATORS + (("=",) if i == len(parts) - 1 else ())
        shortest: str | None = None
        for ind in indicators:
            if ind in part:
                tail = part.split(ind)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list[str | float]:
    """The candidate answers of an open reply, by the official ``parse_open_response``.

    The reply is stripped, its outer periods removed and lower-cased, and split into lines. In
    each line the text after the last occurrence of an indicator ("could be ", "so ", "is ",
    "thus ", "therefore ", "final ", "answer ", "result ", and "=" in the last line) is taken;
    the shortest such tail of each line is kept (an empty one, or one that is only a mark, is
    not). Without any, the whole reply is the candidate. The numbers inside the candidates are
    added, and everything is normalised with :func:`normalize_mmmu`. Order is not meaningful
    (the official code returns ``list(set(...))``); duplicates are removed here too.
    """
    keys = _key_parts(response)
    raw: list[str] = list(keys)
    for k in keys:
        raw.extend(extract_numbers(k))
    out: list[str | float] = []
    for r in raw:
        for v in normalize_mmmu(r):
            if v not in out:
                out.append(v)
    return out


def eval_multi_choice(gold: Sequence[str], pred: str) -> bool:
    """Right when the parsed letter equals a reference letter (official ``eval_multi_choice``)."""
    return pred in gold


def eval_open(gold: Sequence[str], pred: Sequence[str | float]) -> bool:
    """The official ``eval_open``: a text candidate is right when it CONTAINS a normalised text
    reference ("the answer is tampa bay" contains "tampa"); a number candidate is right when it
    equals a normalised number reference (after rounding both to 2 decimals)."""
    norm: list[str | float] = [v for g in gold for v in normalize_mmmu(g)]
    for p in pred:
        if isinstance(p, str):
            if any(isinstance(n, str) and n in p for n in norm):
                return True
        elif p in norm:
            return True
    return False


# --------------------------------------------------------------------------------------------
# score


def score_mmmu(items: Sequence[Item], answers: Mapping[str, str]) -> Score:
    """MMMU accuracy as the official ``main_eval_only.py``.

    * ``overall``: % of questions right (instance level, over every subject present).
    * ``per_category``: % right per discipline (the official ``Overall-<discipline>`` rows), in
      the official order, for the disciplines present.
    * ``units``: item id -> 1.0 / 0.0.
    * ``extra``: ``accuracy`` (fraction), ``per_discipline`` / ``per_subject`` / ``per_subfield``
      (name -> ``{"num", "acc"}`` with ``acc`` a fraction, as the official printout),
      ``n_multiple_choice``, ``n_open``, and ``random_guesses`` (multiple-choice replies no rule
      could read, answered by a seeded random letter as the official parser does).
    """
    missing = [it.id for it in items if it.id not in answers]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no answer, e.g. {missing[:5]}")
    units: dict[str, float] = {}
    guesses = 0
    groups: dict[str, dict[str, list[float]]] = {"discipline": defaultdict(list), "subject": defaultdict(list),
                                                  "subfield": defaultdict(list)}
    n_mc = 0
    for it in items:
        reply = str(answers[it.id])
        if it.meta.get("question_type") == "multiple-choice":
            n_mc += 1
            letter, guessed = parse_multi_choice(reply, it.meta["options"], seed=it.id)
            guesses += guessed
            hit = eval_multi_choice(it.answers, letter)
        else:
            hit = eval_open(it.answers, parse_open(reply))
        units[it.id] = float(hit)
        subject = it.category or subject_of(it.id)
        groups["subject"][subject].append(float(hit))
        groups["discipline"][it.meta.get("discipline") or SUBJECTS.get(subject, "other")].append(float(hit))
        if it.meta.get("subfield"):
            groups["subfield"][str(it.meta["subfield"])].append(float(hit))

    def table(group: Mapping[str, list[float]], order: Iterable[str]) -> dict[str, dict[str, float]]:
        keys = [k for k in order if k in group] + sorted(k for k in group if k not in set(order))
        return {k: {"num": len(group[k]), "acc": sum(group[k]) / len(group[k])} for k in keys}

    per_discipline = table(groups["discipline"], DISCIPLINES)
    n = len(items)
    accuracy = sum(units.values()) / n if n else 0.0
    return Score(
        overall=100.0 * accuracy,
        per_category={d: 100.0 * v["acc"] for d, v in per_discipline.items()},
        units=units,
        extra={
            "accuracy": accuracy,
            "per_discipline": per_discipline,
            "per_subject": table(groups["subject"], SUBJECTS),
            "per_subfield": table(groups["subfield"], []),
            "n_multiple_choice": n_mc,
            "n_open": n - n_mc,
            "random_guesses": guesses,
        },
    )



# --------------------------------------------------------------------------------------------
# Hugging Face copies and the registry entry


def hub_reader(rows_of: Callable[[str | None], Iterable[dict[str, Any]]], where: str, *, local: bool,
               config: str | None, limit: int | None, cache: Path, options: Mapping[str, Any]) -> list[Item]:
    """Items of a ``datasets`` copy: ``rows_of(config)`` gives the rows of one configuration; a Hub
    id (``MMMU/MMMU``) has one per subject (all, or ``subjects=``), a local copy holds them all."""
    subjects = options.get("subjects")
    if isinstance(subjects, str):
        subjects = [x.strip() for x in subjects.split(",") if x.strip()]
    bad = [x for x in subjects or [] if x not in SUBJECTS]
    if bad:
        raise AttnPromptError(f"mmmu: unknown subject(s) {', '.join(bad)}; the 30 subjects: {', '.join(SUBJECTS)}")
    configs: list[str | None] = [config] if local or config else list(subjects or SUBJECTS)
    write = _image_writer(cache)
    log = Log("mmmu")
    items: list[Item] = []
    for cfg in configs:
        for n, row in enumerate(rows_of(cfg)):
            if full(limit, len(items)):
                break
            qid = str(row.get("id", ""))
            if subjects and subject_of(qid) not in subjects:
                continue
            log.rows += 1
            try:
                items.append(mmmu_item(row, lambda k, v, qid=qid: write(qid, k, v),  # type: ignore[misc]
                                       prompt_suffix=options.get("prompt_suffix", MULTIPLE_CHOICE_SUFFIX),
                                       open_prompt_suffix=options.get("open_prompt_suffix", SHORT_ANSWER_SUFFIX)))
            except BadRow as e:
                log.bad(f"{where} row {n}", str(e))
    return finish(items, log, where, limit)


def score(items: Sequence[Item], answers: Mapping[str, str], judge: Any = None) -> Score:
    """MMMU accuracy overall, per discipline, subject and subfield."""
    return score_mmmu(items, answers)


LAYOUT = ("DIR/<Subject>/validation-*.parquet as in the hub repository MMMU/MMMU (images embedded), "
          "or a folder saved with datasets' save_to_disk")

SPEC = BenchmarkSpec(
    "mmmu", read_mmmu, "MMMU validation: 900 college-level questions, 30 subjects in 6 disciplines",
    ("<Subject>/validation-*.parquet (the hub repository MMMU/MMMU)", "or a datasets save_to_disk folder"),
    LAYOUT, "mmmu", MULTIPLE_CHOICE_SUFFIX, "https://huggingface.co/datasets/MMMU/MMMU",
    score=score, hub_reader=hub_reader,
)
