"""The kit's randomness: its own generators, never the caller's global random state."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

__all__ = ["torch_generator", "numpy_generator", "seeded_init"]


def torch_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def numpy_generator(*entropy: int) -> np.random.Generator:
    """A NumPy generator for ``entropy`` (one seed, or a seed and stream numbers)."""
    return np.random.default_rng(entropy[0] if len(entropy) == 1 else np.random.SeedSequence(list(entropy)))


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Modules built inside draw their initial weights from ``seed``; the global RNG is restored after.

    Model constructors (``CLIPModel(config)``...) only know the global RNG, so it is forked,
    seeded, and put back as it was: a test or a program that builds a tiny model keeps its own
    random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
