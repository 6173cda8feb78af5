"""Tiny random-weight vision-language checkpoints built offline, for tests, benchmarks and examples.

Compatibility: the recipes live in :mod:`attnprompt.tiny.lvlm` (shared with the shapes
trainer); this module re-exports its public names.
"""

from .geometry import OPENAI_MEAN, OPENAI_STD  # noqa: F401 - importable from here before the kit
from .tiny import lvlm as _lvlm
from .tiny.lvlm import *  # noqa: F403 - exactly tiny.lvlm.__all__

__all__ = list(_lvlm.__all__)
