"""The one exception type users see, and the small helpers that keep errors to one line."""

from __future__ import annotations

import re

__all__ = ["AttnPromptError", "ROW_ERRORS", "first_line", "one_line"]


class AttnPromptError(Exception):
    """A user-facing error whose message is one clear line.

    The CLI prints these as ``error: <message>`` without a traceback; anything else is a bug
    and keeps its traceback.
    """


#: What a batch job records against one row (one image, one question) and then goes on: our own
#: errors, bad values, files it cannot read, and RuntimeError, which torch raises for failures
#: specific to one input (a shape it cannot take, out of memory on a large image). Anything else
#: is a bug and stops the job.
ROW_ERRORS: tuple[type[Exception], ...] = (AttnPromptError, ValueError, RuntimeError, OSError)


def one_line(text: object) -> str:
    """``text`` with its line breaks turned into spaces (file names and Pillow messages have them)."""
    return re.sub(r"[\r\n]+", " ", str(text))


def first_line(exc: BaseException, limit: int | None = 300, *, empty: str | None = None) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (``None``: no limit).

    A message with no text gives ``empty``, by default the exception's type name.
    """
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).strip().splitlines()  # no terminal colours
    line = text[0] if text else (type(exc).__name__ if empty is None else empty)
    return line if limit is None else line[:limit]
