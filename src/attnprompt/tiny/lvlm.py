"""Tiny vision-language models built offline: tokenizers, chat templates, generation settings, weights.

One recipe for the random test checkpoints (:func:`make_tiny_llava_dir`...) and the shapes
trainer (:mod:`attnprompt.shapes.train_llava`).

Each builder saves a folder that looks exactly like a hub checkpoint (``config.json``,
``model.safetensors``, ``generation_config.json``, processor and tokenizer files and a
``chat_template.jinja``), so it goes through the same public loading path as
``llava-hf/llava-1.5-7b-hf``, ``llava-hf/llava-v1.6-mistral-7b-hf`` or ``Qwen/Qwen2-VL-2B-Instruct``::

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)

The tokenizer is a word-level ``tokenizers`` model (lower-cased question words, filler words,
single letters, digits and punctuation), so random weights still produce readable answers and a
highlighted answer word is one token. The language models use grouped-query attention (4 query
heads, 2 key/value heads) so that head repetition is exercised, and the weights are randomised
so that attention is not near-uniform (see :func:`randomize`).

Generation configs suppress every special token except the end-of-sequence token (a random model
would otherwise emit image placeholders) and suppress the end token as the *first* answer token,
so a greedy answer is never empty.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Sequence

import torch

from ..geometry import OPENAI_MEAN, OPENAI_STD
from .seeds import seeded_init, torch_generator

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


#: Words the tokenizer knows besides single letters, digits and punctuation: the words of the
#: prompts (both chat formats) and of typical test questions, so nothing common becomes ``<unk>``.
WORDS: tuple[str, ...] = tuple(
    (
        "user assistant system you are a helpful "
        "what where which who how many color colour shape size is are there the an of in on at to "
        "picture image photo object objects thing red green blue yellow purple orange white black gray "
        "grey brown pink circle square triangle cross star dot line box yes no not left right top bottom "
        "middle center small large big it this that and or with one two three four five "
        # filler nouns, so that a random model has more to say than the question's words
        "apple ball bird boat book car cat chair cup dog door flower hat house key lamp moon sun tree window"
    ).split()
)

# The llava-hf LLaVA-1.5 / LLaVA-NeXT (vicuna) conversation format: "USER: <image>\n{text} ASSISTANT:".
# Images of a turn come first (one "<image>\n" each), then its text; system turns are plain text.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# The Qwen2-VL chat format (without the default system prompt of the official template):
# "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n".
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAVA_SPECIALS = ["<s>", "</s>", "<pad>", "<image>"]
QWEN2_VL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                     "<|image_pad|>", "<|video_pad|>"]


# -- tokenizer --------------------------------------------------------------------------------
def build_word_tokenizer(
    words: Sequence[str] | None = None,
    special_tokens: Sequence[str] = (),
    *,
    unk: str = "<unk>",
    bos: str | None = None,
    eos: str | None = None,
    pad: str | None = None,
    add_bos: bool = False,
    lowercase: bool = True,
    model_max_length: int = 4096,
    chat_template: str | None = None,
) -> Any:
    """A ``PreTrainedTokenizerFast`` over a fixed word list, built offline with ``tokenizers``.

    Vocabulary, in id order: ``unk``, ``special_tokens``, then ``words`` (default :data:`WORDS`),
    single letters, digits and ASCII punctuation. Text is lower-cased (when ``lowercase``) and split
    on whitespace, punctuation and digits; special tokens are matched verbatim first. Decoding joins
    words with spaces, so decoding and re-encoding an answer gives back its tokens (``words`` must
    be lower-case letters only for that). ``add_bos`` prepends ``bos`` like Llama tokenizers do.
    ``bos``/``eos``/``pad`` must be among ``special_tokens`` (or equal ``unk``).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys(special_tokens))
    for role, token in (("bos", bos), ("eos", eos), ("pad", pad)):
        if token is not None and token != unk and token not in specials:
            raise ValueError(f"{role} token {token!r} is not among the special tokens {specials}")
    if add_bos and bos is None:
        raise ValueError("add_bos needs a bos token")
    words = list(WORDS if words is None else words)
    bad = [w for w in words if not (w.isalpha() and w.isascii() and (w.islower() or not lowercase))]
    if bad:  # the pre-tokenizer would split or lower-case them: they could never be encoded
        raise ValueError(f"words must be ASCII letters{' in lower case' if lowercase else ''}: {bad[:5]}")
    tokens = [unk, *specials, *words, *string.ascii_lowercase, *string.digits, *string.punctuation]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}

    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    # Each punctuation mark and digit is its own token ("USER:" -> "user", ":"), like BPE vocabularies do.
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation("isolated"),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    # WordPiece's decoder joins tokens with spaces and tidies " ." / " ?" (no "##" pieces exist here).
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # Special tokens are matched before normalisation (unaffected by lower-casing) and keep their ids.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in [unk, *specials]])
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])],
        )
    else:
        backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])

    named = {unk, bos, eos, pad}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=unk, bos_token=bos, eos_token=eos, pad_token=pad,
        additional_special_tokens=[t for t in specials if t not in named],
        add_bos_token=add_bos, add_eos_token=False, model_max_length=model_max_length,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


# -- weights ----------------------------------------------------------------------------------
def randomize(
    model: torch.nn.Module,
    seed: int,
    *,
    qk_scale: float = 2.0,
    embed_std: float = 1.0,
    bias_scale: float = 0.05,
    norm_scale: float = 0.1,
) -> torch.nn.Module:
    """Redraw a freshly built model's weights so they are not degenerate, deterministically from ``seed``.

    The hub initialisation (std 0.02 everywhere, zero biases, unit norms) makes every sub-layer's
    output tiny next to the residual stream: a 4-layer model is then nearly a bigram model whose
    answer ignores the image, with near-uniform attention. Instead every linear and convolution
    weight is drawn from N(0, 1 / fan_in) (each layer keeps its input's scale), token embeddings
    from N(0, ``embed_std``) (the same scale as the projected image features), query/key
    projections are scaled by ``qk_scale`` (peaked attention; fused ``qkv`` layers get their query
    and key rows scaled), biases are drawn from N(0, ``bias_scale``) and LayerNorm/RMSNorm weights
    from N(1, ``norm_scale``). Other parameters (position embeddings, CLS, LLaVA-NeXT's newline
    vector) keep their seeded initialisation. Returns the model in eval mode.
    """
    gen = torch_generator(seed + 1)

    def normal(shape: torch.Size, std: float, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(shape, generator=gen)

    with torch.no_grad():
        # One pass over modules in registration order (deterministic); norms are found by type
        # because their parameter names differ between families.
        for module in model.modules():
            kind = type(module).__name__
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.nn.Parameter):
                continue
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                fan_in = weight[0].numel()
                weight.copy_(normal(weight.shape, fan_in ** -0.5))
            elif isinstance(module, torch.nn.Embedding):
                weight.copy_(normal(weight.shape, embed_std))
            elif isinstance(module, torch.nn.LayerNorm) or kind.endswith("RMSNorm"):
                weight.copy_(normal(weight.shape, norm_scale, 1.0))
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(normal(param.shape, bias_scale))
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(qk_scale)
            elif name.endswith("qkv.weight"):  # fused [q; k; v] rows (Qwen2-VL vision blocks)
                param[: 2 * (param.shape[0] // 3)].mul_(qk_scale)
    return model.eval()


def _build_model(model_cls: Any, config: Any, seed: int) -> Any:
    """Instantiate from ``seed`` (the caller's global RNG is left alone) and randomise."""
    with seeded_init(seed):
        model = model_cls(config)
    return randomize(model, seed)


def configure_generation(model: Any, tokenizer: Any) -> None:
    """Greedy by default; never emit special tokens other than eos, and never eos first."""
    eos = tokenizer.eos_token_id
    ids = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens} - {eos}
    gen = model.generation_config
    gen.suppress_tokens = sorted(ids)
    gen.begin_suppress_tokens = [eos]  # the first answer token is a word: answers are never empty
    gen.do_sample = False
    gen.eos_token_id = eos
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id


def _save(folder: str | Path, model: Any, processor: Any) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _image_processor_class(name: str) -> Any:
    """``transformers.<name>``; in transformers 5 that class needs torchvision, so without it the
    PIL backend (``<name>Pil``) is used, as ``AutoImageProcessor`` itself does."""
    import transformers
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available() and hasattr(transformers, name + "Pil"):
        return getattr(transformers, name + "Pil")
    return getattr(transformers, name)


# -- LLaVA-1.5 and LLaVA-NeXT --------------------------------------------------------------
def _llava_tokenizer() -> Any:
    return build_word_tokenizer(special_tokens=LLAVA_SPECIALS, bos="<s>", eos="</s>", pad="<pad>", add_bos=True,
                                chat_template=LLAVA_CHAT_TEMPLATE)


def _llava_sub_configs(tokenizer: Any, *, image_size: int, patch_size: int, text_layers: int, hidden: int,
                       heads: int, kv_heads: int, vision_layers: int, vision_hidden: int,
                       vision_heads: int) -> tuple[Any, Any]:
    """A CLIP vision tower (quick_gelu, with CLS token) and a Llama language model with GQA."""
    from transformers import CLIPVisionConfig, LlamaConfig

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=vision_heads,
                              image_size=image_size, patch_size=patch_size, hidden_act="quick_gelu",
                              projection_dim=vision_hidden)
    text = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=text_layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
                       max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       tie_word_embeddings=False)
    return vision, text


def _llava_common(tokenizer: Any, image_size: int, patch_size: int) -> dict[str, Any]:
    """Config fields shared by LLaVA and LLaVA-NeXT, as in the llava-hf checkpoints."""
    return dict(
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),  # stored as image_token_index
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",  # drop the CLS token
        vision_feature_layer=-2,  # penultimate CLIP layer, like LLaVA-1.5
        projector_hidden_act="gelu",
    )


def make_tiny_llava_dir(
    folder: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    text_layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    vision_layers: int = 3,
    vision_hidden: int = 32,
    vision_heads: int = 4,
) -> Path:
    """Save a tiny ``LlavaForConditionalGeneration`` with a llava-hf style processor; returns ``folder``.

    CLIP vision tower (``image_size`` px, ``patch_size`` px patches, features of the penultimate
    layer without CLS) and a Llama language model with grouped-query attention. The
    ``CLIPImageProcessor`` resizes the short side to ``image_size`` and centre-crops a square, and
    ``LlavaProcessor`` expands each ``<image>`` into ``(image_size // patch_size) ** 2`` tokens.
    Chat template: ``"USER: <image>\\n{text} ASSISTANT:"``; the tokenizer prepends ``<s>``.
    """
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = _llava_tokenizer()
    vision, text = _llava_sub_configs(tokenizer, image_size=image_size, patch_size=patch_size,
                                      text_layers=text_layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                                      vision_layers=vision_layers, vision_hidden=vision_hidden,
                                      vision_heads=vision_heads)
    config = LlavaConfig(vision_config=vision, text_config=text, **_llava_common(tokenizer, image_size, patch_size))
    image_processor = _image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, resample=3, image_mean=OPENAI_MEAN, image_std=OPENAI_STD,
    )
    # num_additional_image_tokens=1 (CLIP's CLS) and "default" (CLS dropped) cancel out: side**2 tokens.
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    model = _build_model(LlavaForConditionalGeneration, config, seed)
    configure_generation(model, tokenizer)
    return _save(folder, model, processor)


def make_tiny_llava_next_dir(
    folder: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    text_layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    vision_layers: int = 3,
    vision_hidden: int = 32,
    vision_heads: int = 4,
    grid_pinpoints: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Save a tiny ``LlavaNextForConditionalGeneration`` (any-resolution tiles); returns ``folder``.

    Same tower, language model, tokenizer and chat template as :func:`make_tiny_llava_dir`.
    ``grid_pinpoints`` (``[height, width]`` pairs, default ``[[s, s], [s, 2s], [2s, s]]`` for
    ``s = image_size``) are the high-resolution canvases of ``LlavaNextImageProcessor``. Each image
    becomes a base view (the whole image squashed to ``s x s``) plus ``s x s`` tiles of the
    aspect-preserving resize to the best canvas; the image-token span starts with the
    ``(s // patch_size) ** 2`` base tokens, then the unpadded tile grid with one newline token per row.
    """
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor

    s = image_size
    pinpoints = [list(p) for p in grid_pinpoints] if grid_pinpoints is not None else [[s, s], [s, 2 * s], [2 * s, s]]
    tokenizer = _llava_tokenizer()
    vision, text = _llava_sub_configs(tokenizer, image_size=image_size, patch_size=patch_size,
                                      text_layers=text_layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                                      vision_layers=vision_layers, vision_hidden=vision_hidden,
                                      vision_heads=vision_heads)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints,
                             **_llava_common(tokenizer, image_size, patch_size))
    image_processor = _image_processor_class("LlavaNextImageProcessor")(
        size={"shortest_edge": s}, crop_size={"height": s, "width": s}, image_grid_pinpoints=pinpoints,
        do_center_crop=True, do_pad=True, resample=3, image_mean=OPENAI_MEAN, image_std=OPENAI_STD,
    )
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_CHAT_TEMPLATE)
    model = _build_model(LlavaNextForConditionalGeneration, config, seed)
    configure_generation(model, tokenizer)
    return _save(folder, model, processor)


# -- Qwen2-VL ---------------------------------------------------------------------------------
def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary frequencies (sums to ``head_dim // 2``);
    ``[16, 24, 24]`` for ``head_dim`` 128, as in Qwen2-VL."""
    half = head_dim // 2
    t = max(1, half // 4)
    h = (half - t) // 2
    return [t, h, half - t - h]


def make_tiny_qwen2_vl_dir(
    folder: str | Path,
    *,
    seed: int = 0,
    patch_size: int = 8,
    text_layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    vision_depth: int = 2,
    vision_embed_dim: int = 32,
    vision_heads: int = 4,
    min_pixels: int = 64 * 64,
    max_pixels: int = 128 * 128,
) -> Path:
    """Save a tiny ``Qwen2VLForConditionalGeneration`` with a Qwen2-VL processor; returns ``folder``.

    ``Qwen2VLImageProcessor`` resizes each image (``smart_resize``, no crop) to multiples of
    ``patch_size * 2`` keeping the aspect ratio, with between ``min_pixels`` and ``max_pixels``
    pixels (defaults: 4x4 to 8x8 merged tokens with 8 px patches), and ``Qwen2VLProcessor``
    expands ``<|image_pad|>`` into ``prod(image_grid_thw) // 4`` tokens (2x2 merge), row-major.
    Qwen2 language model with grouped-query attention and M-RoPE; tokenizer without BOS.
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    if hidden % heads or (hidden // heads) % 2:
        raise ValueError(f"hidden {hidden} must split into {heads} heads of even size")
    merge = 2
    tokenizer = build_word_tokenizer(special_tokens=QWEN2_VL_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>",
                                     chat_template=QWEN2_VL_CHAT_TEMPLATE)
    tid = tokenizer.convert_tokens_to_ids
    rope = {"rope_type": "default", "mrope_section": _mrope_section(hidden // heads), "rope_theta": 1000000.0}
    config = Qwen2VLConfig(
        text_config=dict(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=text_layers,
            num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
            max_position_embeddings=4096, rope_parameters=rope,
            eos_token_id=tid("<|im_end|>"), pad_token_id=tid("<|endoftext|>"), bos_token_id=None,
        ),
        vision_config=dict(
            depth=vision_depth, embed_dim=vision_embed_dim, num_heads=vision_heads, mlp_ratio=2,
            hidden_size=hidden,  # the patch merger's output width = the language model's width
            patch_size=patch_size, spatial_merge_size=merge, temporal_patch_size=2, in_channels=3,
        ),
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    image_processor = _image_processor_class("Qwen2VLImageProcessor")(
        patch_size=patch_size, merge_size=merge, temporal_patch_size=2, min_pixels=min_pixels,
        max_pixels=max_pixels, image_mean=OPENAI_MEAN, image_std=OPENAI_STD,
    )
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():  # transformers 5 builds no Qwen2VLProcessor without its video processor
        raise ImportError("the Qwen2-VL processor needs torchvision (its video processor requires it)")
    from transformers import Qwen2VLVideoProcessor

    processor = Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE,
        video_processor=Qwen2VLVideoProcessor(patch_size=patch_size, merge_size=merge, temporal_patch_size=2),
    )
    model = _build_model(Qwen2VLForConditionalGeneration, config, seed)
    configure_generation(model, tokenizer)
    return _save(folder, model, processor)
