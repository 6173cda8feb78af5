"""One progress bar for long jobs: tqdm on stderr, or an object that draws nothing."""

from __future__ import annotations

import sys
from typing import Protocol

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar(Protocol):
    """What jobs use of a bar (tqdm's names)."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, desc: str, unit: str, enabled: bool = True) -> ProgressBar:
    """A tqdm bar on stderr for ``total`` units, or no bar when disabled or there is no work."""
    if not enabled or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    bar: ProgressBar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
    return bar
