"""File plumbing: safe image loading, manifests, atomic writes and file-name-safe stems.

Everything a batch job touches on disk goes through here, so that one bad input becomes one
:class:`~attnprompt.errors.AttnPromptError` (a single line naming the file or row) instead of a
traceback, a half-written output, or a job that dies on row 9,000 of 10,000.

No model code lives here.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _stdio
import json
import os
import re
import stat
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AttnPromptError

__all__ = [
    "MAX_PIXELS",
    "ImageLoadError",
    "load_image",
    "ManifestRow",
    "read_manifest",
    "safe_stem",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_save_image",
    "append_jsonl",
    "read_jsonl_tolerant",
    "json_line",
    "JSONError",
    "load_json",
    "unicode_problem",
    "confined_path",
]

StrPath = Union[str, "os.PathLike[str]"]
ImageSource = Union[StrPath, Image.Image, np.ndarray]

#: Largest image (width * height) :func:`load_image` accepts by default. It is twice Pillow's
#: warning threshold, i.e. the size at which Pillow itself stops with ``DecompressionBombError``,
#: so the default admits everything a plain ``Image.open`` would, but checks it up front.
MAX_PIXELS: int = 178_956_970


class ImageLoadError(AttnPromptError):
    """An image could not be loaded; the message names the file (or array) and the reason."""


class JSONError(AttnPromptError):
    """Text that is not usable JSON; :attr:`reason` is the cause without the file's name."""

    def __init__(self, what: str | None, reason: str):
        super().__init__(f"{what}: {reason}" if what else reason)
        self.reason = reason


def load_json(data: bytes | str, what: str | None = None) -> Any:
    """``json.loads`` whose every failure is one :class:`JSONError` line, never a traceback.

    Every JSON file or line the package reads (manifests, run folders, answer caches,
    benchmark files) goes through here: besides syntax errors this covers bytes that are not
    UTF-8 and input nested so deeply that the decoder overflows the stack (``RecursionError``).
    ``what`` (a file, a file and line) starts the message.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise JSONError(what, f"not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONError(what, f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise JSONError(what, "invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise JSONError(what, _one_line(f"invalid JSON ({exc})")) from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be encoded as UTF-8 (a lone surrogate: a ``\\ud800`` JSON escape, or a
    non-UTF-8 byte in a command-line argument), or ``None`` when it is fine."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (f"not valid Unicode: lone surrogate {ascii(found.group())} at character {found.start()} "
            "(a non-UTF-8 byte or a broken \\u escape)")


def confined_path(folder: StrPath, name: object) -> Path:
    """``folder / name`` for a relative ``name`` read from a file inside ``folder``.

    Run folders (a masks folder's manifest, a job's output manifest) name their own files; a
    name that is absolute, climbs out with ``..`` or leaves through a symlink could point the
    reader at any file on the machine, so it is refused.

    Raises:
        AttnPromptError: ``name`` is not a string or does not stay inside ``folder``.
    """
    if not isinstance(name, str) or not name or "\0" in name or unicode_problem(name):
        raise AttnPromptError(f"{os.fsdecode(os.fspath(folder))}: bad file name {name!r:.80} in its manifest")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if os.path.isabs(name) or (path != root and root not in path.parents):
        raise AttnPromptError(
            f"{os.fsdecode(os.fspath(folder))}: its manifest names {name!r:.80}, outside the folder; refused")
    return path


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def _one_line(text: object) -> str:
    # Error messages must stay one line even when a file name or a Pillow message has newlines.
    return re.sub(r"[\r\n]+", " ", str(text))


def _fail(what: str, reason: str) -> ImageLoadError:
    return ImageLoadError(_one_line(f"cannot load image {what}: {reason}"))


def _check_size(what: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _fail(what, f"zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise _fail(
            what,
            f"image too large ({width}x{height} = {width * height} pixels, limit {max_pixels}); "
            "refused as a possible decompression bomb",
        )


def _scale16(values: np.ndarray) -> np.ndarray:
    # value / 257 maps 0..65535 exactly onto 0..255; (v + 128) // 257 is that division rounded
    # to nearest in integers (no ties exist: 257 is odd), so 65535 -> 255 and 257 * k -> k.
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGB")


def _to_rgb(image: Image.Image, what: str) -> Image.Image:
    """Convert any Pillow mode to RGB, scaling wide modes instead of letting Pillow clip them."""
    mode = image.mode
    if mode.startswith("I;16"):
        # Pillow's own I;16 -> RGB clips at 255, turning almost every 16-bit photo white.
        return _gray_to_rgb(_scale16(np.asarray(image)))
    if mode == "I":
        values = np.asarray(image)
        # Mode I is what 16-bit PNGs/TIFFs often decode to; 8-bit data stored as I must not
        # be darkened by /257, so the scale is chosen from the data.
        if int(values.max()) > 255:
            return _gray_to_rgb(_scale16(values))
        return _gray_to_rgb(np.clip(values, 0, 255))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        # Rounded rather than truncated (Pillow's F -> L truncates) to match the 16-bit path.
        return _gray_to_rgb(np.rint(np.clip(values, 0.0, 255.0)))
    if mode == "P" and "transparency" in image.info:
        # Through RGBA: same colours, but without Pillow's warning that byte transparency
        # "should be converted to RGBA" (we drop alpha on purpose, see load_image).
        return image.convert("RGBA").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        pass
    try:
        # Some alpha/premultiplied modes only convert via RGBA.
        return image.convert("RGBA").convert("RGB")
    except ValueError as exc:
        raise _fail(what, f"unsupported image mode {mode!r}") from exc


def _exif_transposed(image: Image.Image) -> Image.Image:
    try:
        result = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001
        # EXIF is metadata: a malformed tag must not make readable pixels unreadable, so the
        # image is used as stored.
        return image
    return image if result is None else result


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> Image.Image:
    what = f"<array shape={tuple(array.shape)} dtype={array.dtype}>"
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        height, width = array.shape[:2]
    elif array.ndim == 2:
        height, width = array.shape
    else:
        raise _fail(what, "expected an HxW, HxWx1, HxWx3 or HxWx4 array")
    _check_size(what, (width, height), max_pixels)

    if array.dtype == np.bool_:
        data = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype == np.uint8:
        data = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise _fail(what, "float array contains NaN or infinity")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            # Guessing between [0, 1] and [0, 255] silently ruins images; make the caller say.
            raise _fail(what, f"float arrays must lie in [0, 1], found [{lo:g}, {hi:g}]")
        data = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype == np.uint16:
        data = _scale16(array)  # same convention as 16-bit image files
    elif np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise _fail(what, f"integer array values must lie in [0, 255], found [{lo}, {hi}]")
        data = array.astype(np.uint8)
    else:
        raise _fail(what, f"unsupported array dtype {array.dtype}")

    if data.ndim == 3:
        data = data[:, :, 0] if data.shape[2] == 1 else data[:, :, :3]  # alpha dropped
    if data.ndim == 2:
        return _gray_to_rgb(data)
    return Image.fromarray(np.ascontiguousarray(data, dtype=np.uint8)).convert("RGB")


def _finish(image: Image.Image, what: str) -> Image.Image:
    rgb = _to_rgb(_exif_transposed(image), what)
    # The caller owns the result: never hand back the caller's (or a file-backed) object.
    return rgb.copy() if rgb is image else rgb


_BOMB_MESSAGE = "image too large, refused as a possible decompression bomb"

# warnings.catch_warnings swaps process-wide state, and jobs decode images on worker threads;
# the lock keeps our own threads from restoring each other's filters. It covers only the
# header read, so decoding stays parallel.
_OPEN_LOCK = threading.Lock()


def _open_lazily(what: str) -> Image.Image:
    # Pillow's bomb check warns from half our default limit; our explicit check is the
    # authority, so that warning is silenced instead of leaking to the user's terminal. Its
    # DecompressionBombError (above 2 * Image.MAX_IMAGE_PIXELS) still refuses.
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(what)  # reads the header only
        except FileNotFoundError as exc:
            raise _fail(what, "file not found") from exc
        except PermissionError as exc:
            raise _fail(what, "permission denied") from exc
        except IsADirectoryError as exc:
            raise _fail(what, "is a directory") from exc
        except UnidentifiedImageError as exc:
            raise _fail(what, "not a recognised image file") from exc
        except Image.DecompressionBombError as exc:
            raise _fail(what, f"{_BOMB_MESSAGE} ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types on bad headers
            raise _fail(what, f"unreadable image header ({type(exc).__name__}: {exc})") from exc


def _decode(image: Image.Image, what: str) -> None:
    try:
        # A full load, so a truncated file fails here rather than as gray padding later (we
        # never set ImageFile.LOAD_TRUNCATED_IMAGES).
        image.load()
    except Image.DecompressionBombError as exc:
        raise _fail(what, f"{_BOMB_MESSAGE} ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        raise _fail(what, f"corrupt or truncated image data ({type(exc).__name__}: {exc})") from exc


def _load_file(path: StrPath, max_pixels: int) -> Image.Image:
    what = os.fsdecode(os.fspath(path))
    if os.path.isdir(what):
        raise _fail(what, "is a directory")
    with _open_lazily(what) as opened:
        _check_size(what, opened.size, max_pixels)  # before a single pixel is decoded
        _decode(opened, what)
        _check_size(what, opened.size, max_pixels)  # multi-frame formats may grow the canvas
        return _finish(opened, what)


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Load ``source`` as a fresh RGB image.

    Args:
        source: a file path, a PIL image, or a numpy array. Arrays may be ``uint8`` (HxW,
            HxWx1, HxWx3, HxWx4), ``bool`` (0/255), float in ``[0, 1]`` (scaled by 255 and
            rounded), ``uint16`` (scaled like 16-bit files) or other integers within
            ``[0, 255]``.
        max_pixels: refuse images with more than this many pixels (default :data:`MAX_PIXELS`).
            The check runs on the header, before decoding. Limits above Pillow's own hard limit
            (``2 * PIL.Image.MAX_IMAGE_PIXELS``) also need that global raised.

    Returns:
        A loaded RGB image that shares nothing with ``source``; file handles are closed.

    Conversion rules:
        * EXIF orientation is applied (``ImageOps.exif_transpose``).
        * Alpha is dropped, not composited, as ``convert("RGB")`` does; this is what CLIP
          processors and the official implementation feed the model.
        * 16-bit modes (``I;16*``, and ``I`` when its maximum exceeds 255) are scaled by 1/257
          and rounded instead of being clipped at 255; ``F`` is clipped to ``[0, 255]`` and
          rounded; CMYK, palette, 1-bit and the rest use Pillow's ``convert("RGB")``.

    Raises:
        ImageLoadError: missing file, directory, not an image, corrupt or truncated data,
            zero size, too many pixels, or an unsupported array/mode.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, limit)
    if isinstance(source, Image.Image):
        what = str(getattr(source, "filename", "") or "<PIL image>")
        _check_size(what, source.size, limit)
        _decode(source, what)  # a lazily opened image may still be truncated
        return _finish(source, what)
    if isinstance(source, (str, os.PathLike)):
        return _load_file(source, limit)
    raise ImageLoadError(
        f"cannot load image of type {type(source).__name__}: expected a path, a PIL image or a numpy array"
    )


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------

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


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _resolve_image(base: str, image: str) -> str:
    # Relative to the manifest, not the working directory, so a manifest can move with its
    # images. No normpath: ".." through a symlinked folder must keep its meaning.
    return image if os.path.isabs(image) else os.path.join(base, image)


def _row_from_object(obj: Any, base: str, line: int) -> ManifestRow:
    if not isinstance(obj, dict):
        return ManifestRow("", "", "", line, f"expected a JSON object, got {_json_type(obj)}")
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
            # An id with a lone surrogate stays usable: output names come from safe_stem and
            # records are written with JSON escapes (see append_jsonl).
        else:
            problems.append(f"'id' must be a string or integer, got {_json_type(raw_id)}")

    image = ""
    if "image" in obj:
        raw_image = obj["image"]
        if not isinstance(raw_image, str):
            problems.append(f"'image' must be a string, got {_json_type(raw_image)}")
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
            problems.append(f"'question' must be a string, got {_json_type(raw_question)}")

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
    reader = csv.reader(_stdio.StringIO(text, newline=""))
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
            rows.append(ManifestRow("", "", "", line, _one_line(f"unreadable CSV record ({exc})")))
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


def _read_bytes(path: str, shown: str) -> bytes:
    """The whole file, or a one-line error that starts with ``shown``."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise AttnPromptError(f"{shown}: file not found") from exc
    except OSError as exc:
        raise AttnPromptError(f"{shown}: cannot read ({exc.strerror or exc})") from exc


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
    data = _read_bytes(shown, f"manifest {shown}")
    base = os.path.dirname(os.path.abspath(shown))
    if suffix == ".csv":
        rows = _read_csv_manifest(data, shown, base)
    else:
        rows = _read_jsonl_manifest(data, shown, base)
    return _mark_duplicates(rows)


# ---------------------------------------------------------------------------------------------
# output names
# ---------------------------------------------------------------------------------------------

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# An id that already ends like one of our hash suffixes gets a suffix of its own, so that no
# untouched id can equal the stem made for a different, rewritten id.
_HASH_TAIL = re.compile(r"-[0-9a-f]{10}\Z")
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(10)] + [f"LPT{i}" for i in range(10)]
)
_HASH_LEN = 10


def safe_stem(item_id: str, max_len: int = 80) -> str:
    """A file-name stem for ``item_id``: portable, traversal-free and collision-free.

    Characters outside ``[A-Za-z0-9._-]`` become ``_``; leading and trailing dots are removed
    (no hidden files, no ``..``; Windows drops trailing dots); Windows device names (``CON``,
    ``NUL``, ``COM1``, ...; also with an extension) get a ``_`` prefix. Whenever the result
    differs from ``item_id`` or is cut to ``max_len``, ``-`` plus the first 10 hex digits of
    ``sha1(item_id)`` is appended, so ``"a/b"``, ``"a_b"`` and ``"a b"`` stay distinct. The
    result is at most ``max_len`` characters and deterministic.

    Ids with upper-case letters also get the suffix, so ids differing only in case
    (``"A"``/``"a"``) cannot collide on case-insensitive file systems (macOS, Windows).
    """
    if not isinstance(item_id, str):
        raise TypeError(f"item_id must be a str, got {type(item_id).__name__}")
    if max_len < _HASH_LEN + 2:
        raise ValueError(f"max_len must be at least {_HASH_LEN + 2}, got {max_len}")
    cleaned = _UNSAFE_CHARS.sub("_", item_id).strip(".") or "_"
    if cleaned.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        cleaned = "_" + cleaned
    if cleaned == item_id.lower() and len(cleaned) <= max_len and not _HASH_TAIL.search(item_id):
        return cleaned
    digest = hashlib.sha1(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    return f"{cleaned[: max_len - _HASH_LEN - 1]}-{digest}"


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------

_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def _new_file_mode() -> int:
    # NamedTemporaryFile creates 0600 files; without this every output would end up private.
    try:
        with open("/proc/self/status", encoding="ascii") as status:  # race-free where available
            for entry in status:
                if entry.startswith("Umask:"):
                    return 0o666 & ~int(entry.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; not possible (or needed) on Windows.
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: StrPath, write: Callable[[IO[bytes]], None]) -> None:
    target = os.fsdecode(os.fspath(path))
    directory = os.path.dirname(os.path.abspath(target))
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = _new_file_mode()
    try:
        handle = tempfile.NamedTemporaryFile(
            mode="wb", dir=directory, prefix=f".{os.path.basename(target)[:40]}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        raise AttnPromptError(_one_line(f"cannot write {target}: {exc.strerror or exc}")) from exc
    temp_path = handle.name
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(temp_path, mode)
        os.replace(temp_path, target)
    except BaseException as exc:
        # BaseException: an interrupted job must not leave .tmp litter either. The target is
        # untouched because os.replace is the only step that changes it.
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        if isinstance(exc, OSError):
            raise AttnPromptError(_one_line(f"cannot write {target}: {exc.strerror or exc}")) from exc
        raise
    _fsync_dir(directory)


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new, never half.

    The bytes go to a temporary file in the same folder, are fsynced, and replace ``path`` with
    ``os.replace``; on failure the temporary file is removed and ``path`` is left as it was.
    An existing file keeps its permissions; a new one gets the usual umask-based mode.

    Raises:
        AttnPromptError: the folder is missing or not writable, the disk is full, etc.
    """
    payload = bytes(data)
    _atomic_write(path, lambda handle: handle.write(payload))


def atomic_write_text(path: StrPath, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text; newlines are written as given (no translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_save_image(image: Image.Image, path: StrPath, format: str | None = None, **params: Any) -> None:
    """Save ``image`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        image: any PIL image the chosen format can store (e.g. JPEG takes no alpha).
        path: destination.
        format: Pillow format name; ``None`` infers it from the suffix: ``.png``,
            ``.jpg``/``.jpeg``, ``.webp``, ``.bmp``, ``.tif``/``.tiff``.
        **params: passed to ``Image.save`` (``quality=``, ``compress_level=``, ...).

    Raises:
        AttnPromptError: unsupported suffix or format, or the image cannot be written.
    """
    target = os.fsdecode(os.fspath(path))
    if format is None:
        suffix = Path(target).suffix.lower()
        if suffix not in _SUFFIX_FORMATS:
            raise AttnPromptError(
                f"cannot write {target}: unsupported image suffix {suffix or '(none)'}; "
                f"use one of {', '.join(sorted(_SUFFIX_FORMATS))}"
            )
        fmt = _SUFFIX_FORMATS[suffix]
    else:
        fmt = format.upper()
    Image.init()
    if fmt not in Image.SAVE:
        raise AttnPromptError(f"cannot write {target}: this Pillow cannot save {fmt} images")
    _atomic_write(target, lambda handle: image.save(handle, format=fmt, **params))


# ---------------------------------------------------------------------------------------------
# append-only JSON Lines (resumable output manifests)
# ---------------------------------------------------------------------------------------------

_TAIL_BLOCK = 1 << 16


def _last_line(handle: IO[bytes], size: int) -> tuple[int, bytes]:
    """Offset and bytes of the last non-blank line (to EOF); reads backwards, not the file."""
    buffer = b""
    position = size
    while position > 0:
        step = min(_TAIL_BLOCK, position)
        position -= step
        handle.seek(position)
        buffer = handle.read(step) + buffer
        content = buffer.rstrip()
        if not content:
            continue
        newline = content.rfind(b"\n")
        if newline >= 0:
            return position + newline + 1, buffer[newline + 1:]
    return 0, buffer


def _parse_record(raw: bytes) -> dict[str, Any] | str:
    """The record on this line, or the reason it is not one."""
    try:
        value = load_json(raw)
    except JSONError as exc:
        return exc.reason
    return value if isinstance(value, dict) else f"expected a JSON object, got {_json_type(value)}"


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one JSON line (newline included) that always encodes as UTF-8.

    No indent, so the line holds no raw newline (newlines in strings are escaped). Text is kept
    as is, except in a record holding a lone surrogate (an id from a ``"\\udc80"`` escape): it has
    no UTF-8 form, so that record is written as ASCII JSON, whose escapes read back equal.
    """
    text = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True) + "\n"
    return text


def append_jsonl(path: StrPath, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (created if missing), flushed and fsynced.

    Before appending, an unparseable last line (what a crash mid-write leaves) is cut off, so
    that it does not become a malformed line in the middle; a valid last line that merely lacks
    its newline is kept and terminated. Meant for one writer at a time.

    Raises:
        AttnPromptError: the file cannot be opened or written.
        TypeError: ``record`` is not a dict or holds values JSON cannot encode.
    """
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    line = json_line(record).encode("utf-8")
    target = os.fsdecode(os.fspath(path))
    created = not os.path.exists(target)
    try:
        with open(target, "a+b", buffering=0) as handle:
            size = handle.seek(0, os.SEEK_END)
            prefix = b""
            if size:
                start, tail = _last_line(handle, size)
                if tail.strip():
                    if not isinstance(_parse_record(tail.strip()), dict):
                        handle.truncate(start)
                    elif not tail.endswith(b"\n"):
                        prefix = b"\n"
            data = memoryview(prefix + line)
            while data:
                written = handle.write(data)  # O_APPEND: always at the (new) end
                data = data[written or 0:]
            os.fsync(handle.fileno())
    except OSError as exc:
        raise AttnPromptError(_one_line(f"cannot append to {target}: {exc.strerror or exc}")) from exc
    if created:
        _fsync_dir(os.path.dirname(os.path.abspath(target)))


def read_jsonl_tolerant(path: StrPath) -> list[dict[str, Any]]:
    """Read a JSON Lines file written by :func:`append_jsonl`.

    Blank lines are skipped. An unparseable *last* line is taken for a write cut short by a
    crash and silently dropped; an unparseable line (or a non-object) anywhere else means the
    file is damaged and raises.

    Raises:
        AttnPromptError: the file is missing or unreadable, or a line other than the last is
            malformed (the message names the line).
    """
    shown = os.fsdecode(os.fspath(path))
    data = _read_bytes(shown, shown)
    lines = data.split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    records: list[dict[str, Any]] = []
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        record = _parse_record(raw)
        if not isinstance(record, dict):
            if index == last:
                break
            raise AttnPromptError(f"{shown}: line {index + 1}: malformed line: {record}")
        records.append(record)
    return records
