"""A durable on-disk cache of generated answers.

Layout: ``<folder>/answers.jsonl``, one JSON object per line::

    {"key": "<sha256 hex>", "answer": "...", "meta": {...}, "time": 1719950000.0}

Every :meth:`AnswerCache.put` appends one complete line and fsyncs it before returning, so a
crash loses at most the answer being written. The file is shared between processes, so it
follows the shared side of :mod:`attnprompt.files.durable`'s torn-line policy: a torn line (a
crash in the middle of a write) is skipped when the file is read, and the next append starts
on a fresh line so it cannot be glued onto the fragment. When a key appears more than once, the last complete line wins.

Keys are the sha256 of a canonical JSON record of (model id, image digest, prompt, settings),
see :meth:`AnswerCache.key`. Image digests (:func:`image_digest`) hash the decoded RGB pixels
and the size, not the encoded bytes: the same picture re-saved with other PNG/JPEG options or
metadata hashes the same, and it is exactly what the endpoint client sends (it converts to RGB
before encoding).

The cache is safe to use from many threads. Several processes may append to the same file
(each line is written with one ``write`` on a file opened for appending); a process picks up
lines written by others when it misses.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from attnprompt.errors import AttnPromptError
from attnprompt.files.durable import append_line
from attnprompt.files.jsondata import JSONError, load_json

__all__ = ["AnswerCache", "image_digest", "model_identity", "CACHE_KEY_VERSION"]

#: Bump when the meaning of a key changes (old entries then simply stop matching).
CACHE_KEY_VERSION = 1

_FILE_NAME = "answers.jsonl"


def image_digest(image: Image.Image) -> str:
    """sha256 hex digest of an image's decoded RGB pixels (size included).

    Pixels, not encoded bytes: a PIL image has no canonical encoding, and the endpoint client
    sends ``image.convert("RGB")`` as PNG, so equal digests mean equal payloads.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    h = hashlib.sha256()
    h.update(f"RGB:{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise AttnPromptError(f"answer cache: cannot make a key from a non-JSON value: {e}") from e


class AnswerCache:
    """Generated answers keyed by (model, image, prompt, settings), stored under ``folder``."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AttnPromptError(f"answer cache: cannot create folder {self.folder}: {e}") from e
        self.path = self.folder / _FILE_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}
        self._offset = 0  # bytes of the file already parsed (always at a line boundary)
        self.skipped_lines = 0  # torn or unreadable lines seen so far
        with self._lock:
            self._refresh_locked()

    # -- keys ---------------------------------------------------------------------------

    @staticmethod
    def key(
        model: str,
        image: Image.Image | str | None,
        prompt: str,
        settings: Mapping[str, Any] | None = None,
    ) -> str:
        """The cache key (sha256 hex) for one request.

        ``image`` is a PIL image, an :func:`image_digest` string, or ``None`` for text-only
        requests. ``settings`` is every generation setting that changes the answer (max tokens,
        temperature, system prompt, ...); it must be JSON-serialisable, and key order does not
        matter.
        """
        digest = image_digest(image) if isinstance(image, Image.Image) else image
        record = {
            "v": CACHE_KEY_VERSION,
            "model": str(model),
            "image": digest,
            "prompt": str(prompt),
            "settings": dict(settings or {}),
        }
        return hashlib.sha256(_canonical(record).encode("utf-8")).hexdigest()

    # -- reads --------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The stored answer, or ``None``. Misses re-read lines other processes appended."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self._refresh_locked()
                hit = self._entries.get(key)
            return hit

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _refresh_locked(self) -> None:
        """Parse complete lines appended since the last read. Caller holds the lock."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as e:
            raise AttnPromptError(f"answer cache: cannot read {self.path}: {e}") from e
        end = data.rfind(b"\n")
        if end < 0:
            return  # nothing complete yet (possibly a torn or in-progress line)
        for raw in data[: end + 1].splitlines():
            if not raw.strip():
                continue
            try:
                rec = load_json(raw)
                key, answer = rec["key"], rec["answer"]
                if not isinstance(key, str) or not isinstance(answer, str):
                    raise TypeError("key and answer must be strings")
            except (JSONError, KeyError, TypeError):
                self.skipped_lines += 1  # torn write followed by later appends, or garbage
                continue
            self._entries[key] = answer
        self._offset += end + 1

    # -- writes -------------------------------------------------------------------------

    def put(self, key: str, answer: str, meta: Mapping[str, Any] | None = None) -> None:
        """Store ``answer`` under ``key`` durably (appended and fsynced before returning)."""
        if not isinstance(answer, str):
            raise AttnPromptError(f"answer cache: answers must be strings, got {type(answer).__name__}")
        rec = {"key": key, "answer": answer, "meta": dict(meta or {}), "time": time.time()}
        try:
            line = json.dumps(rec, ensure_ascii=False, default=str) + "\n"
            try:
                payload = line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: ASCII JSON escapes it and reads back equal
                payload = (json.dumps(rec, ensure_ascii=True, default=str) + "\n").encode("ascii")
        except (ValueError, RecursionError) as e:
            raise AttnPromptError(f"answer cache: cannot store entry: {e}") from e
        with self._lock:
            try:
                append_line(self.path, payload, shared=True)
            except AttnPromptError as e:
                raise AttnPromptError(f"answer cache: {e}") from e
            self._entries[key] = answer

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.folder)!r}, entries={len(self)})"


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt")


def model_identity(name: str | os.PathLike[str]) -> dict[str, Any]:
    """What tells one model apart from another with the same name, for keys of stored results.

    A hub id is its own identity. A local folder (or file) is its real path plus the name,
    size and modification time of each weight and config file in it: two folders called
    ``clip`` are different models, and a model retrained in place stops matching its old
    answers. Hashing the weights would be exact but costs seconds per gigabyte on every run.
    """
    text = os.fspath(name)
    path = Path(text).expanduser()
    if not path.exists():
        return {"id": text}
    real = path.resolve()
    files = [real] if real.is_file() else sorted(p for p in real.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    stamp = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            continue
        stamp.append([p.name, st.st_size, st.st_mtime_ns])
    return {"path": str(real), "files": stamp}
