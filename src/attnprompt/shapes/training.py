"""What the shapes trainers share: the learning-rate schedule and atomic saving of a model folder."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["warmup_cosine", "replace_folder"]


def warmup_cosine(step: int, lr: float, warmup: int, planned: int, floor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor * lr`` at step ``planned``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, planned - warmup))
    return lr * (floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def replace_folder(folder: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling of ``folder`` with ``write(tmp)``, then swap it in.

    A crash or a kill at any point leaves either the old folder or the new one, never a mix.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
