"""Names on disk: path types, file-name-safe stems made from untrusted ids, paths confined to
the folder that names them, and the check that text has a UTF-8 form at all."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Union

from ..errors import AttnPromptError

__all__ = ["StrPath", "safe_stem", "unicode_problem", "confined_path"]

StrPath = Union[str, "os.PathLike[str]"]

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
    shown = os.fsdecode(os.fspath(folder))
    if not isinstance(name, str) or not name or "\0" in name or unicode_problem(name):
        raise AttnPromptError(f"{shown}: bad file name {name!r:.80} in its manifest")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if os.path.isabs(name) or (path != root and root not in path.parents):
        raise AttnPromptError(f"{shown}: its manifest names {name!r:.80}, outside the folder; refused")
    return path
