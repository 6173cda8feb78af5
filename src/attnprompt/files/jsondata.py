"""JSON text read and written as untrusted data: one-line errors in, always-encodable lines out.

Every JSON file or line the package reads (manifests, output manifests, run folders, answer
caches, benchmark files) goes through :func:`load_json`, so syntax errors, bytes that are not
UTF-8 and input nested so deeply that the decoder overflows the stack (``RecursionError``) are
one :class:`JSONError` each, which readers turn into a per-row or per-file error.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import AttnPromptError, one_line

__all__ = ["JSONError", "load_json", "json_line"]


class JSONError(AttnPromptError):
    """Text that is not usable JSON; :attr:`reason` is the cause without the file's name."""

    def __init__(self, what: str | None, reason: str):
        super().__init__(f"{what}: {reason}" if what else reason)
        self.reason = reason


def load_json(data: bytes | str, what: str | None = None) -> Any:
    """``json.loads`` whose every failure is one :class:`JSONError` line, never a traceback.

    ``what`` (a file, a file and line) starts the message. Bytes are decoded as UTF-8 (a BOM
    is allowed).
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
        raise JSONError(what, one_line(f"invalid JSON ({exc})")) from None


def json_line(record: dict[str, Any]) -> str:
    """``record`` as one JSON line (newline included) that always encodes as UTF-8.

    No indent, so the line holds no raw newline (newlines in strings are escaped). Text is kept
    as is, except in a record holding a lone surrogate (an id from a ``"\\udc80"`` escape): it
    has no UTF-8 form, so that record is written as ASCII JSON, whose escapes read back equal.
    """
    text = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True) + "\n"
    return text
