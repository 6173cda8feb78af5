"""Tiny random-weight vision-language checkpoints built offline, for tests, benchmarks and examples.

Compatibility: the recipes live in :mod:`attnprompt.tiny.lvlm` (shared with the shapes
trainer); this module re-exports them.
"""

from .geometry import OPENAI_MEAN, OPENAI_STD  # noqa: F401 - importable from here before the kit
from .tiny.lvlm import (
    LLAVA_CHAT_TEMPLATE,
    LLAVA_SPECIALS,
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN2_VL_SPECIALS,
    WORDS,
    build_word_tokenizer,
    configure_generation,
    make_tiny_llava_dir,
    make_tiny_llava_next_dir,
    make_tiny_qwen2_vl_dir,
    randomize,
)

__all__ = [
    "WORDS",
    "LLAVA_CHAT_TEMPLATE",
    "QWEN2_VL_CHAT_TEMPLATE",
    "LLAVA_SPECIALS",
    "QWEN2_VL_SPECIALS",
    "build_word_tokenizer",
    "configure_generation",
    "randomize",
    "make_tiny_llava_dir",
    "make_tiny_llava_next_dir",
    "make_tiny_qwen2_vl_dir",
]
