"""CLIP through Hugging Face transformers (``CLIPModel``: hub ids or local folders)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from ..errors import AttnPromptError
from ..geometry import SquareResize, mean_color
from .devices import dtype_kwargs
from .hub import load_from_hub_or_dir
from .protocol import ClipAuxiliary, warn_truncated
from .clip_common import AttentionWeights, ClipTower, Readout

__all__ = ["HFClip", "load_hf_clip", "hf_square_resize"]


class HFClip(ClipAuxiliary):
    """A ``transformers.CLIPModel`` with its tokenizer and image processor."""

    backend = "hf"

    def __init__(self, name: str, model: Any, processor: Any, tokenizer: Any,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(name, device, dtype)
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer
        vision = model.vision_model
        self._layers = vision.encoder.layers
        self._tower = ClipTower(
            num_layers=len(self._layers),
            attention_input=lambda i: self._layers[i].layer_norm1,
            block=lambda i: self._layers[i],
            attention_weights=self._attention_weights,
            readout=Readout(
                ln_weight=vision.post_layernorm.weight.detach(),
                ln_bias=vision.post_layernorm.bias.detach(),
                eps=float(vision.post_layernorm.eps),
                proj=model.visual_projection.weight.detach().T,  # Linear [E, D] -> [D, E]
            ),
            encode_image=self._encode_image,
        )
        self.context_length = int(model.config.text_config.max_position_embeddings)

    def _attention_weights(self, index: int) -> AttentionWeights:
        attn = self._layers[index].self_attn
        return AttentionWeights(
            attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias,
            attn.v_proj.weight, attn.v_proj.bias, attn.out_proj.weight, attn.out_proj.bias,
            num_heads=int(attn.num_heads),
        )

    def _encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # get_image_features, written out: its return type differs across transformers versions.
        out = self.model.vision_model(pixel_values=pixel_values)
        final = out.last_hidden_state[:, 0]  # [B, D], before post_layernorm
        return self.model.visual_projection(out.pooler_output), final

    @property
    def tower(self) -> ClipTower:
        return self._tower

    @property
    def pad_color(self) -> tuple[int, int, int]:
        return mean_color(getattr(self.processor, "image_mean", None))

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def grid_size(self) -> int:
        return self.image_size // int(self.model.config.vision_config.patch_size)

    @property
    def square_resize(self) -> SquareResize | None:
        return hf_square_resize(self.processor)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    def tokenize(self, queries: Sequence[str]) -> dict[str, torch.Tensor]:
        for q in queries:
            length = len(self.tokenizer(q)["input_ids"])
            if length > self.context_length:
                warn_truncated(q, length, self.context_length)
        enc = self.tokenizer(list(queries), padding=True, truncation=True,
                             max_length=self.context_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def encode_text(self, tokens: Any) -> torch.Tensor:
        if isinstance(tokens, torch.Tensor):
            tokens = {"input_ids": tokens}
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        out = self.model.text_model(**tokens)
        return self.model.text_projection(out.pooler_output)


def hf_square_resize(processor: Any) -> SquareResize | None:
    """What a PIL-backend CLIP-style image processor does first to a square image, if it is a plain resize.

    ``(side, filter)`` when it resizes the shortest edge (or both sides) to ``side`` with a PIL
    filter and centre-crops ``side x side`` (a no-op on the resized square); ``None`` otherwise.
    """
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    resample = getattr(processor, "resample", None)
    if not getattr(processor, "do_resize", False) or size is None or resample is None:
        return None
    if any(c.__name__ in ("TorchvisionBackend", "BaseImageProcessorFast") for c in type(processor).__mro__):
        return None  # torchvision backends resize with their own kernels, not PIL's
    get = (lambda d, k: d.get(k)) if isinstance(size, dict) else getattr
    side = get(size, "shortest_edge")
    if side is None and get(size, "height") is not None and get(size, "height") == get(size, "width"):
        side = get(size, "height")
    if side is None:
        return None
    if getattr(processor, "do_center_crop", False):
        cget = (lambda d, k: d.get(k)) if isinstance(crop, dict) else getattr
        if crop is None or cget(crop, "height") != side or cget(crop, "width") != side:
            return None
    try:
        return int(side), int(resample)
    except (TypeError, ValueError):
        return None


def _load_image_processor(source: str, **kw: Any) -> Any:
    from transformers import AutoImageProcessor

    # The PIL backend reproduces the official (open_clip/torchvision-on-PIL) preprocessing
    # exactly; transformers 5 would otherwise pick its torchvision backend (about one 8-bit
    # level off). Older transformers call the same thing use_fast=False.
    try:
        return AutoImageProcessor.from_pretrained(source, backend="pil", **kw)
    except TypeError:
        return AutoImageProcessor.from_pretrained(source, use_fast=False, **kw)


def load_hf_clip(model: str, *, device: torch.device, dtype: torch.dtype, **_: Any) -> HFClip:
    """Load ``CLIPModel`` + tokenizer + image processor from a hub id or a local folder."""
    from transformers import AutoConfig, AutoTokenizer, CLIPModel

    config = load_from_hub_or_dir(AutoConfig.from_pretrained, model, "config")
    if getattr(config, "model_type", None) != "clip":
        raise AttnPromptError(
            f"{model!r} is a {getattr(config, 'model_type', 'unknown')!r} model, not a ViT CLIP "
            "(transformers CLIPModel); the CLIP path needs a CLS-token ViT CLIP"
        )
    net = load_from_hub_or_dir(CLIPModel.from_pretrained, model, "CLIP weights", **dtype_kwargs(dtype))
    net = net.to(device).eval()
    processor = load_from_hub_or_dir(_load_image_processor, model, "image processor")
    tokenizer = load_from_hub_or_dir(AutoTokenizer.from_pretrained, model, "tokenizer")
    return HFClip(model, net, processor, tokenizer, device, dtype)
