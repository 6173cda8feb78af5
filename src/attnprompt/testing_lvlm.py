"""Tiny random-weight vision-language checkpoints built offline, for tests and benchmarks.

Each builder saves a folder that looks exactly like a hub checkpoint (config, safetensors weights,
generation config, processor and tokenizer files with a chat template), so it goes through the
same public loading path as ``llava-hf/llava-1.5-7b-hf``. The tokenizer is word-level: a small
vocabulary of question words plus filler words, so random weights still produce readable answers.
Special tokens are suppressed in generation (a random model would otherwise emit image tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "build_word_tokenizer",
    "make_tiny_llava_dir",
    "make_tiny_llava_next_dir",
    "make_tiny_qwen2_vl_dir",
    "randomize",
]

WORDS = (
    "what where which color shape is are there a an the of in on picture image object red green blue "
    "yellow purple orange white black gray circle square triangle cross star yes no left right top "
    "bottom small large it this that and or with"
).split()
LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_word_tokenizer(specials: list[str], *, eos: str, pad: str, bos: str | None = None,
                         extra_words: int = 24) -> Any:
    """A ``PreTrainedTokenizerFast`` over :data:`WORDS` + filler words ``w0..``, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = ["<unk>", *specials, "USER:", "ASSISTANT:", "USER", "ASSISTANT", ":", "?", ".", ","]
    tokens += [w for w in WORDS if w not in tokens] + [f"w{i}" for i in range(extra_words)]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated"),
    ])
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token=eos, pad_token=pad, bos_token=bos,
        additional_special_tokens=[s for s in specials if s not in (eos, pad, bos)],
    )


def randomize(model: torch.nn.Module, seed: int, qk_scale: float = 3.0, embed_scale: float = 10.0) -> torch.nn.Module:
    """Make random weights less uniform: sharper attention, distinct token embeddings, biases."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(qk_scale)
            elif "embed_tokens" in name:
                param.mul_(embed_scale)
            elif name.endswith("bias"):
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model.eval()


def _suppress(model: Any, tokenizer: Any, keep: tuple[str, ...]) -> None:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens if t not in keep]
    model.generation_config.suppress_tokens = sorted(set(ids))
    model.generation_config.do_sample = False


def _llava_parts(image_size: int, patch_size: int, text_layers: int, hidden: int) -> tuple[Any, Any, dict]:
    from transformers import CLIPVisionConfig, LlamaConfig

    tokenizer = build_word_tokenizer(["<s>", "</s>", "<pad>", "<image>"], eos="</s>", pad="<pad>", bos="<s>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=image_size, patch_size=patch_size)
    text = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=text_layers,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                       max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    ids = dict(image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
               vision_feature_layer=-1)
    return tokenizer, (vision, text), ids


def make_tiny_llava_dir(folder: str | Path, *, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                        text_layers: int = 4, hidden: int = 32) -> Path:
    """A tiny ``LlavaForConditionalGeneration`` (CLIP tower + Llama with grouped-query attention)
    and a llava-hf style processor (short-side resize, centre crop)."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer, (vision, text), ids = _llava_parts(image_size, patch_size, text_layers, hidden)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE,
    )
    torch.manual_seed(seed)
    model = randomize(LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, **ids)), seed)
    _suppress(model, tokenizer, keep=("</s>",))
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_llava_next_dir(folder: str | Path, *, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                             text_layers: int = 4, hidden: int = 32) -> Path:
    """A tiny ``LlavaNextForConditionalGeneration`` with any-resolution tiles."""
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                              LlavaNextProcessor)

    tokenizer, (vision, text), ids = _llava_parts(image_size, patch_size, text_layers, hidden)
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size]]
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer, patch_size=patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE,
    )
    torch.manual_seed(seed)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints, **ids)
    model = randomize(LlavaNextForConditionalGeneration(config), seed)
    _suppress(model, tokenizer, keep=("</s>",))
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_qwen2_vl_dir(folder: str | Path, *, seed: int = 0, patch_size: int = 8, text_layers: int = 4,
                           hidden: int = 32, min_pixels: int = 16 * 16, max_pixels: int = 96 * 96) -> Path:
    """A tiny ``Qwen2VLForConditionalGeneration`` (dynamic resolution, 2 x 2 token merge, M-RoPE)."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tokenizer = build_word_tokenizer(specials, eos="<|im_end|>", pad="<|endoftext|>")
    merge = 2
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=patch_size, merge_size=merge, temporal_patch_size=2,
                                              min_pixels=min_pixels, max_pixels=max_pixels),
        video_processor=Qwen2VLVideoProcessor(patch_size=patch_size, merge_size=merge, temporal_patch_size=2),
        tokenizer=tokenizer, chat_template=QWEN_TEMPLATE,
    )
    tid = tokenizer.convert_tokens_to_ids
    head_dim = hidden // 4
    config = Qwen2VLConfig(
        text_config=dict(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=text_layers, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=1024,
            rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, head_dim // 8, head_dim // 4]},
            eos_token_id=tid("<|im_end|>"), pad_token_id=tid("<|endoftext|>"), bos_token_id=None,
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=hidden, num_heads=4, patch_size=patch_size,
                           spatial_merge_size=merge, temporal_patch_size=2, in_chans=3, mlp_ratio=2),
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = randomize(Qwen2VLForConditionalGeneration(config), seed)
    _suppress(model, tokenizer, keep=("<|im_end|>",))
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
