"""Durable files: atomic whole-file writes and fsynced JSON Lines appends.

Every write that must survive a crash goes through here, with one torn-line policy for JSON
Lines (see :func:`append_line`): a crash can only tear the *last* line of a file; a reader
never takes a torn line for a record, and the next append never glues a record onto it.

* A file with one writer at a time (an output manifest, :func:`append_jsonl`) has the torn
  line cut off before the next append, so a damaged line anywhere else means real damage and
  :func:`read_jsonl_tolerant` raises on it.
* A file shared by several processes (the answer cache) cannot cut what another process may be
  writing: the next append starts on a fresh line, and its reader skips unparseable lines.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from PIL import Image

from ..errors import AttnPromptError, one_line
from .jsondata import JSONError, json_line, load_json
from .names import StrPath

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_save_image",
    "append_line",
    "append_jsonl",
    "read_jsonl_tolerant",
    "read_bytes",
    "json_type",
]

def json_type(value: object) -> str:
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


def read_bytes(path: str, shown: str) -> bytes:
    """The whole file, or a one-line error that starts with ``shown``."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise AttnPromptError(f"{shown}: file not found") from exc
    except OSError as exc:
        raise AttnPromptError(f"{shown}: cannot read ({exc.strerror or exc})") from exc


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


def _atomic_write(path: StrPath, write: Callable[[IO[bytes]], object]) -> None:
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
        raise AttnPromptError(one_line(f"cannot write {target}: {exc.strerror or exc}")) from exc
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
            raise AttnPromptError(one_line(f"cannot write {target}: {exc.strerror or exc}")) from exc
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
    return value if isinstance(value, dict) else f"expected a JSON object, got {json_type(value)}"


def append_line(path: StrPath, line: bytes, *, shared: bool = False) -> None:
    """Append one complete line (``line`` ends with a newline) to ``path``, flushed and fsynced.

    The torn-line policy of this module: a last line without its newline is what a crash
    mid-write leaves. With ``shared=False`` (one writer at a time) an unparseable last line is
    cut off before appending, so it never ends up in the middle; a valid one that merely lacks
    its newline is terminated. With ``shared=True`` (several processes append, each line in one
    ``write``) nothing is cut, since another writer owns the file too: the line starts on a
    fresh line instead, and readers of such files skip unparseable lines.

    Raises:
        AttnPromptError: the file cannot be opened or written.
    """
    target = os.fsdecode(os.fspath(path))
    created = not os.path.exists(target)
    try:
        with open(target, "a+b", buffering=0) as handle:
            size = handle.seek(0, os.SEEK_END)
            prefix = b""
            if size and shared:
                handle.seek(size - 1)  # O_APPEND writes still go to the end
                if handle.read(1) != b"\n":
                    prefix = b"\n"  # never glue a record onto a torn fragment
            elif size:
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
        raise AttnPromptError(one_line(f"cannot append to {target}: {exc.strerror or exc}")) from exc
    if created:
        _fsync_dir(os.path.dirname(os.path.abspath(target)))


def append_jsonl(path: StrPath, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (created if missing), flushed and fsynced.

    Before appending, an unparseable last line (what a crash mid-write leaves) is cut off, so
    that it does not become a malformed line in the middle; a valid last line that merely lacks
    its newline is kept and terminated. Meant for one writer at a time (:func:`append_line`).

    Raises:
        AttnPromptError: the file cannot be opened or written.
        TypeError: ``record`` is not a dict or holds values JSON cannot encode.
    """
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    # No indent, so the line holds no raw newline (newlines in strings are escaped).
    append_line(path, json_line(record).encode("utf-8"))  # json_line: lone surrogates as escapes


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
    data = read_bytes(shown, shown)
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
