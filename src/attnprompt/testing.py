"""Tiny random-weight CLIP checkpoints built offline, for tests, benchmarks and examples.

The folders look exactly like hub checkpoints (``config.json``, ``model.safetensors``,
``preprocessor_config.json``, tokenizer files), so they exercise the same public loading path as
``openai/clip-vit-large-patch14-336``. The tokenizer is a character-level CLIP BPE vocabulary
(no merges): small, but a real ``CLIPTokenizer``.

Compatibility: the recipes live in :mod:`attnprompt.tiny.clip` (shared with the shapes trainer);
this module re-exports them under their old names.
"""

from __future__ import annotations

from pathlib import Path

from .geometry import OPENAI_MEAN, OPENAI_STD  # noqa: F401 - importable from here before the kit
from .tiny.clip import clip_config as tiny_clip_config
from .tiny.clip import make_tiny_clip_dir, random_clip_model, write_clip_tokenizer

__all__ = ["tiny_clip_config", "build_clip_tokenizer_files", "make_tiny_clip_dir", "random_clip_model"]


def build_clip_tokenizer_files(folder: str | Path, context_length: int = 77) -> None:
    """Write a character-level ``CLIPTokenizer`` (vocab.json, merges.txt, tokenizer_config.json)."""
    write_clip_tokenizer(folder, context_length)
