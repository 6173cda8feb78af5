"""What identifies a stored answer in an ``eval`` run folder.

A rerun into the same ``--out`` must never report answers that other settings produced. So
every answer record carries a key: the sha256 of the target's identity (name, endpoint, every
generation setting, the model folder's identity), the condition, the exact prompt and the
bytes of the image(s) that were sent (an annotated image's file comes from the content-addressed
mask store, :mod:`attnprompt.bench.masks`, keyed by the auxiliary and every mask setting). A
rerun recomputes the answers whose key changed and keeps the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

__all__ = ["target_identity", "answer_key", "FileDigests"]

#: Bump when the meaning of a key changes (old answers then simply stop matching).
ANSWER_KEY_VERSION = 1


def _digest(record: Any) -> str:
    text = json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def target_identity(target: Any) -> dict[str, Any]:
    """The target's name, endpoint and generation settings (``target.settings()`` when it has one)."""
    settings = getattr(target, "settings", None)
    return {"name": str(target.name), "endpoint": getattr(target, "endpoint", None),
            "settings": settings() if callable(settings) else None}


def answer_key(target: dict[str, Any], condition: str, prompt: str, image: str | None) -> str:
    """The key of one answer: target identity, condition, prompt and the sent image's digest."""
    return _digest({"v": ANSWER_KEY_VERSION, "target": target, "condition": condition, "prompt": prompt,
                    "image": image})


class FileDigests:
    """sha256 of files' bytes, each file read once per run (a condition's images are shared)."""

    def __init__(self) -> None:
        self._seen: dict[str, str | None] = {}

    def __call__(self, path: str | os.PathLike[str]) -> str | None:
        """The digest, or ``None`` for a file that cannot be read (its item fails when loaded)."""
        name = os.fspath(path)
        if name not in self._seen:
            h = hashlib.sha256()
            try:
                with open(name, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                self._seen[name] = h.hexdigest()
            except (OSError, ValueError):
                self._seen[name] = None
        return self._seen[name]
