"""Compatibility: the benchmark readers now live in :mod:`attnprompt.bench.benchmarks`, one
module per benchmark (reader, hub-row mapping and scorer together). This module re-exports
their public names so that existing imports keep working."""

from . import benchmarks as _benchmarks
from .benchmarks import *  # noqa: F403 - exactly benchmarks.__all__
from .benchmarks.common import DOCS
from .benchmarks.llavabench import read_llavabench
from .benchmarks.mmbench import read_mmbench
from .benchmarks.mme import IMAGE_EXTS, MME_SUBTASKS, read_mme
from .benchmarks.mmmu import read_mmmu
from .benchmarks.mmvet import read_mmvet
from .benchmarks.pope import POPE_SPLITS, read_pope
from .benchmarks.textvqa import read_textvqa
from .benchmarks.vizwiz import read_vizwiz

__all__ = [
    *_benchmarks.__all__,
    "DOCS",
    "IMAGE_EXTS",
    "MME_SUBTASKS",
    "POPE_SPLITS",
    "read_llavabench",
    "read_mmbench",
    "read_mme",
    "read_mmmu",
    "read_mmvet",
    "read_pope",
    "read_textvqa",
    "read_vizwiz",
]
