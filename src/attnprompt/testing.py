"""Tiny random-weight CLIP checkpoints built offline, for tests, benchmarks and examples.

The folders look exactly like hub checkpoints (``config.json``, ``model.safetensors``,
``preprocessor_config.json``, tokenizer files), so they exercise the same public loading path as
``openai/clip-vit-large-patch14-336``. The tokenizer is a character-level CLIP BPE vocabulary
(no merges): small, but a real ``CLIPTokenizer``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from .geometry import OPENAI_MEAN, OPENAI_STD

__all__ = ["tiny_clip_config", "build_clip_tokenizer_files", "make_tiny_clip_dir", "random_clip_model"]



def tiny_clip_config(
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 3,
    heads: int = 4,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    projection_dim: int = 16,
    vocab_size: int | None = None,
    context_length: int = 77,
) -> Any:
    """A ``CLIPConfig`` of the given size (OpenAI layout, quick_gelu)."""
    from transformers import CLIPConfig

    vocab = vocab_size if vocab_size is not None else len(_vocab())
    return CLIPConfig(
        text_config=dict(
            hidden_size=text_width, intermediate_size=4 * text_width, num_hidden_layers=text_layers,
            num_attention_heads=text_heads, max_position_embeddings=context_length, vocab_size=vocab,
            hidden_act="quick_gelu", bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1,
        ),
        vision_config=dict(
            hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=heads, image_size=image_size, patch_size=patch_size, hidden_act="quick_gelu",
        ),
        projection_dim=projection_dim,
    )


def _vocab() -> dict[str, int]:
    chars = [c for c in string.printable if not c.isspace()]
    tokens = chars + [c + "</w>" for c in chars]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def build_clip_tokenizer_files(folder: str | Path, context_length: int = 77) -> None:
    """Write a character-level ``CLIPTokenizer`` (vocab.json, merges.txt, tokenizer_config.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(_vocab()), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": context_length,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
    }), encoding="utf-8")


def random_clip_model(config: Any, seed: int = 0, bias_scale: float = 0.05, qk_scale: float = 1.5) -> Any:
    """A ``CLIPModel`` with random weights whose attention is not near-uniform.

    Default initialisation gives almost uniform CLS attention and zero biases, which would hide
    bugs; biases and LayerNorm affines are randomised and query/key weights are scaled.
    """
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=gen))
            elif name.endswith("bias"):
                param.copy_(bias_scale * torch.randn(param.shape, generator=gen))
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(qk_scale)
    return model


def make_tiny_clip_dir(folder: str | Path, *, seed: int = 0, **config_kwargs: Any) -> Path:
    """Save a tiny random CLIP with tokenizer and image processor, loadable by ``from_pretrained``."""
    try:  # transformers 5: the Pillow processor needs no torchvision
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor

    folder = Path(folder)
    config = tiny_clip_config(**config_kwargs)
    random_clip_model(config, seed=seed).save_pretrained(folder)
    size = config.vision_config.image_size
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=OPENAI_MEAN, image_std=OPENAI_STD, resample=3,
    ).save_pretrained(folder)
    build_clip_tokenizer_files(folder, config.text_config.max_position_embeddings)
    return folder
