"""Tiny CLIPs: config, CLIP BPE tokenizer files, image processor, random weights, a saved folder.

One recipe for the random test checkpoints (:func:`make_tiny_clip_dir`) and the shapes trainer
(:mod:`attnprompt.shapes.train_clip`). Saved folders look exactly like hub checkpoints
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``, tokenizer files), so they go
through the same public loading path as ``openai/clip-vit-large-patch14-336``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Sequence

import torch

from ..geometry import OPENAI_MEAN, OPENAI_STD
from .seeds import seeded_init, torch_generator

__all__ = [
    "BOS",
    "EOS",
    "clip_vocab",
    "write_clip_tokenizer",
    "clip_config",
    "clip_image_processor",
    "random_clip_model",
    "make_tiny_clip_dir",
]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_HF_LOGIT_SCALE_INIT = 2.6592  # CLIPConfig's default logit_scale_init_value


def clip_vocab(words: Sequence[str] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary and merge list in which every word of ``words`` is one token
    ``"word</w>"``; without words it is character-level (no merges).

    Base tokens are the printable characters, alone and with ``</w>``. Each word is built by a
    left-to-right chain of merges (``c r`` -> ``cr``, ``cr o`` -> ``cro``...). All merges past the
    first of a chain rank before every first merge, and first merges are ordered so that a word's
    own first merge outranks any other first merge that could fire inside it; together this makes
    BPE rebuild every word exactly (checked by :func:`write_clip_tokenizer`)."""
    chars = [c for c in string.printable if not c.isspace()]
    tokens: list[str] = chars + [c + "</w>" for c in chars]
    words = [w.lower() for w in words]
    chains: dict[str, list[tuple[str, str]]] = {}
    for w in words:
        if len(w) < 2:
            continue
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        chain, cur = [], parts[0]
        for p in parts[1:]:
            chain.append((cur, p))
            cur = cur + p
        chains[w] = chain
    # precedence among first merges: a word's first merge must beat other first merges inside it
    firsts = list(dict.fromkeys(c[0] for c in chains.values()))
    before: dict[tuple[str, str], set[tuple[str, str]]] = {f: set() for f in firsts}
    for w, chain in chains.items():
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        inner = {(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1)}
        for f in firsts:
            if f != chain[0] and f in inner:
                before[f].add(chain[0])  # chain[0] must come before f
    order: list[tuple[str, str]] = []
    placed: set[tuple[str, str]] = set()
    remaining = list(firsts)
    while remaining:
        ready = [f for f in remaining if before[f] <= placed] or remaining[:1]  # a cycle: best effort
        for f in ready:
            order.append(f)
            placed.add(f)
        remaining = [f for f in remaining if f not in placed]
    later = list(dict.fromkeys(m for c in chains.values() for m in c[1:]))
    merges = [m for m in later if m not in placed] + order
    for a, b in merges:
        tokens.append(a + b)
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def write_clip_tokenizer(folder: str | Path, context_length: int, words: Sequence[str] = (),
                         check: bool = False) -> dict[str, int]:
    """Write a ``CLIPTokenizer`` over :func:`clip_vocab` (vocab.json, merges.txt,
    tokenizer_config.json, special_tokens_map.json); with ``check``, load the folder with
    ``AutoTokenizer`` and verify one id per word. Returns the vocab."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab(words)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": context_length,
        "do_lower_case": True, **special,
    }), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    if check:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        bad = [w for w in words if tok(w)["input_ids"] != [vocab[BOS], vocab[w.lower() + "</w>"], vocab[EOS]]]
        if bad:
            raise RuntimeError(f"tokenizer does not map these words to one token: {bad}")
    return vocab


def clip_config(
    *,
    vocab_size: int | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 3,
    heads: int = 4,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    projection_dim: int = 16,
    context_length: int = 77,
    hidden_act: str = "quick_gelu",
    logit_scale_init: float | None = None,
) -> Any:
    """A ``CLIPConfig`` of the given size (OpenAI layout).

    ``vocab_size`` defaults to the character-level :func:`clip_vocab`'s; ``logit_scale_init``
    ``None`` keeps transformers' default.
    """
    from transformers import CLIPConfig

    if vocab_size is None:
        vocab_size = len(clip_vocab()[0])

    return CLIPConfig(
        text_config=dict(
            hidden_size=text_width, intermediate_size=4 * text_width, num_hidden_layers=text_layers,
            num_attention_heads=text_heads, max_position_embeddings=context_length, vocab_size=vocab_size,
            hidden_act=hidden_act, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1, projection_dim=projection_dim,
        ),
        vision_config=dict(
            hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=heads, image_size=image_size, patch_size=patch_size, hidden_act=hidden_act,
            projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
        logit_scale_init_value=_HF_LOGIT_SCALE_INIT if logit_scale_init is None else logit_scale_init,
    )


def clip_image_processor(size: int) -> Any:
    """OpenAI CLIP preprocessing for ``size`` px: resize the short side (bicubic), centre-crop."""
    import transformers

    # transformers 5: the Pillow processor needs no torchvision
    processor_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return processor_class(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=list(OPENAI_MEAN), image_std=list(OPENAI_STD), resample=3,
    )


def random_clip_model(config: Any, seed: int = 0, bias_scale: float = 0.05, qk_scale: float = 1.5) -> Any:
    """A ``CLIPModel`` with random weights whose attention is not near-uniform.

    Default initialisation gives almost uniform CLS attention and zero biases, which would hide
    bugs; biases and LayerNorm affines are randomised and query/key weights are scaled. The
    caller's global RNG is left as it was.
    """
    from transformers import CLIPModel

    with seeded_init(seed):
        model = CLIPModel(config).eval()
    gen = torch_generator(seed + 1)
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
    """Save a tiny random CLIP with tokenizer and image processor, loadable by ``from_pretrained``.

    ``config_kwargs`` are :func:`clip_config`'s (sizes); the tokenizer is character-level.
    """
    folder = Path(folder)
    config = clip_config(**config_kwargs)
    random_clip_model(config, seed=seed).save_pretrained(folder)
    clip_image_processor(config.vision_config.image_size).save_pretrained(folder)
    write_clip_tokenizer(folder, config.text_config.max_position_embeddings)
    return folder
