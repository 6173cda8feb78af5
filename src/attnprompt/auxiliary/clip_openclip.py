"""CLIP through open_clip: architecture names + pretrained tags or local weight files,
``hf-hub:`` ids, ``local-dir:`` folders, and custom model-config JSON files.

Needs the optional extra: ``pip install 'attnprompt[open_clip]'``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import nn

from ..errors import AttnPromptError, first_line
from ..geometry import SquareResize, mean_color
from ..config import DEFAULT_MODEL
from .hub import hub_offline, offline_unless_hub_reachable, open_clip_message
from .protocol import ClipAuxiliary, warn_truncated
from .clip_common import AttentionWeights, ClipTower, Readout

__all__ = ["OpenClip", "load_open_clip", "is_open_clip_name", "is_fused_attention"]

def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise AttnPromptError(
            f"the open_clip backend needs open_clip_torch and torchvision ({exc}); "
            "install them with: pip install 'attnprompt[open_clip]'"
        ) from None
    return open_clip


def is_open_clip_name(model: str) -> bool:
    """True when ``model`` is an architecture name that open_clip knows (``ViT-B-16``)."""
    try:
        import open_clip
    except ImportError:
        return False
    return model.replace("/", "-") in open_clip.list_models()


class OpenClip(ClipAuxiliary):
    """An open_clip ``CLIP`` with a ViT image tower, its eval transform and tokenizer."""

    backend = "open_clip"

    def __init__(self, name: str, model: Any, preprocess: Any, tokenizer: Any,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(name, device, dtype)
        self.model = model
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        visual = model.visual
        _check_vit(name, visual)
        self._blocks = visual.transformer.resblocks
        sequence_first = not getattr(visual.transformer, "batch_first", True)
        to_btd = (lambda t: t.transpose(0, 1)) if sequence_first else (lambda t: t)
        ln_post = visual.ln_post
        width = int(visual.transformer.width)
        proj = visual.proj if visual.proj is not None else torch.eye(width, device=device, dtype=dtype)
        self._final_cls: torch.Tensor | None = None
        self._blocks[-1].register_forward_hook(self._keep_final_cls)
        self._to_btd = to_btd
        self._tower = ClipTower(
            num_layers=len(self._blocks),
            attention_input=lambda i: self._blocks[i].ln_1,
            block=lambda i: self._blocks[i],
            attention_weights=self._attention_weights,
            readout=Readout(
                ln_weight=None if isinstance(ln_post, nn.Identity) else ln_post.weight.detach(),
                ln_bias=None if isinstance(ln_post, nn.Identity) else ln_post.bias.detach(),
                eps=float(getattr(ln_post, "eps", 1e-5)),
                proj=proj.detach(),
            ),
            encode_image=self._encode_image,
            to_btd=to_btd,
        )
        self.context_length = int(getattr(model, "context_length", 77) or 77)

    def _keep_final_cls(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        # Only the CLS row is kept: LN_post's statistics come from the final CLS residual.
        self._final_cls = self._to_btd(output)[:, 0].detach()

    def _attention_weights(self, index: int) -> AttentionWeights:
        block = self._blocks[index]
        attn = block.attn
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3, dim=0)
        b_q = b_k = b_v = None
        if attn.in_proj_bias is not None:
            b_q, b_k, b_v = attn.in_proj_bias.chunk(3, dim=0)
        ls = getattr(block.ls_1, "gamma", None)
        return AttentionWeights(w_q, b_q, w_k, b_k, w_v, b_v, attn.out_proj.weight, attn.out_proj.bias,
                                num_heads=int(attn.num_heads), layer_scale=ls)

    def _encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._final_cls = None
        features = self.model.encode_image(pixel_values, normalize=False)
        final, self._final_cls = self._final_cls, None
        assert final is not None
        return features, final

    @property
    def tower(self) -> ClipTower:
        return self._tower

    @property
    def pad_color(self) -> tuple[int, int, int]:
        cfg = getattr(self.model.visual, "preprocess_cfg", None) or {}
        return mean_color(cfg.get("mean"))

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def grid_size(self) -> int:
        grid = self.model.visual.grid_size
        return int(grid[0] if isinstance(grid, (tuple, list)) else grid)

    @property
    def square_resize(self) -> SquareResize | None:
        # open_clip's eval transform: Resize(side) then CenterCrop(side) on the PIL image.
        steps = list(getattr(self._preprocess, "transforms", []))
        if len(steps) < 2 or type(steps[0]).__name__ != "Resize" or type(steps[1]).__name__ != "CenterCrop":
            return None
        size, crop = steps[0].size, steps[1].size
        side = size if isinstance(size, int) else (size[0] if len(size) == 1 else None)
        if side is None or getattr(steps[0], "max_size", None) is not None or tuple(crop) != (side, side):
            return None
        try:
            from torchvision.transforms.functional import pil_modes_mapping
        except ImportError:
            return None
        resample = pil_modes_mapping.get(steps[0].interpolation)
        return None if resample is None else (int(side), int(resample))

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([self._preprocess(im) for im in images])
        return pixels.to(self.device, self.dtype)

    def tokenize(self, queries: Sequence[str]) -> torch.Tensor:
        # Tokenizing with a roomy context shows what the real context would cut off.
        long = self.tokenizer(list(queries), context_length=self.context_length * 8)
        for q, row in zip(queries, long):
            length = int((row != 0).sum())
            if length > self.context_length:
                warn_truncated(q, length, self.context_length)
        return self.tokenizer(list(queries), context_length=self.context_length).to(self.device)

    def encode_text(self, tokens: Any) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self.device), normalize=False)


def is_fused_attention(module: object) -> bool:
    """Whether ``module`` is attention with fused q/k/v projections, recognised by what it holds.

    open_clip's ViT used ``nn.MultiheadAttention``; its development branch has its own attention
    class with the same ``in_proj_weight`` ``[3D, D]``, ``in_proj_bias`` (``[3D]`` or ``None``),
    ``out_proj`` (a linear layer) and ``num_heads``. Only those are read, so either works.
    """
    weight = getattr(module, "in_proj_weight", None)
    out_proj = getattr(module, "out_proj", None)
    heads = getattr(module, "num_heads", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] != 3 * weight.shape[1]:
        return False
    if not hasattr(module, "in_proj_bias"):
        return False
    bias = getattr(module, "in_proj_bias", None)
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],)):
        return False
    return (isinstance(getattr(out_proj, "weight", None), torch.Tensor) and isinstance(heads, int) and heads > 0
            and weight.shape[1] % heads == 0)


def _check_vit(name: str, visual: nn.Module) -> None:
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    ok = (
        blocks is not None
        and getattr(visual, "attn_pool", None) is None
        and getattr(visual, "pool_type", "tok") == "tok"
        and all(is_fused_attention(getattr(b, "attn", None)) for b in blocks)
    )
    if not ok:
        raise AttnPromptError(
            f"{name!r} is not a CLS-token ViT CLIP with standard attention (ResNet towers, attention "
            "pooling, average pooling and custom attention blocks are not supported)"
        )


def _register_config(open_clip: Any, config_path: str | os.PathLike[str], name: str) -> str:
    """Register a custom model-config JSON with open_clip under ``name``; returns the name."""
    path = Path(config_path).expanduser()
    if not path.is_file():
        raise AttnPromptError(f"model config {str(config_path)!r} does not exist")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttnPromptError(f"model config {str(config_path)!r} is not valid JSON: {exc}") from None
    if "model_cfg" in cfg:  # the hf-hub / local-dir layout: {"model_cfg": ..., "preprocess_cfg": ...}
        cfg = cfg["model_cfg"]
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise AttnPromptError(f"model config {str(config_path)!r} lacks embed_dim, vision_cfg or text_cfg: not an open_clip model config")
    # open_clip keys added configs by file stem, so the config is written under the chosen name.
    folder = Path(tempfile.mkdtemp(prefix="attnprompt-openclip-"))
    try:
        (folder / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
        open_clip.add_model_config(folder / f"{name}.json")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return name


def load_open_clip(
    model: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    pretrained: str | None = None,
    model_config: str | os.PathLike[str] | None = None,
    **_: Any,
) -> OpenClip:
    """Create an open_clip model with its eval transform and tokenizer.

    ``pretrained``: a tag (``openai``, ``laion2b_s34b_b88k``) or a local weights file
    (``.safetensors`` preferred; ``.pt``/``.bin`` are read with ``weights_only=True``).
    ``model_config``: a JSON model config for architectures open_clip does not list; the model is
    registered under ``model`` (or the file's stem when ``model`` is the default).
    """
    open_clip = _import_open_clip()
    name = model
    if model == DEFAULT_MODEL and model_config is None:
        name, pretrained = "ViT-L-14-336", pretrained or "openai"  # the paper's CLIP, open_clip naming
    if model_config is not None:
        name = Path(model_config).stem if model == DEFAULT_MODEL else model
        name = _register_config(open_clip, model_config, name)
    if pretrained and (os.sep in pretrained or pretrained.endswith((".safetensors", ".pt", ".bin", ".pth"))):
        if not Path(pretrained).expanduser().is_file():
            raise AttnPromptError(f"weights file {pretrained!r} does not exist")
    if not name.startswith(("hf-hub:", "local-dir:")) and name.replace("/", "-") not in open_clip.list_models():
        raise AttnPromptError(
            f"open_clip does not know the architecture {name!r}; pass --model-config FILE.json for a custom one"
        )
    try:
        with offline_unless_hub_reachable() as cut_off:
            if cut_off:  # open_clip logs each failed download itself; the one message is ours
                logging.disable(logging.ERROR)
            try:
                net, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained, device=device, weights_only=True,
                )
                tokenizer = open_clip.get_tokenizer(name)
            finally:
                logging.disable(logging.NOTSET)
    except (RuntimeError, OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
        text = first_line(exc)
        if cut_off or hub_offline():
            raise AttnPromptError(open_clip_message(name, pretrained, "unreachable" if cut_off
                                                    else "off (HF_HUB_OFFLINE)")) from None
        hint = "" if pretrained and Path(pretrained).is_file() else (
            "; without hub access, pass a local weights file: --pretrained FILE.safetensors"
        )
        raise AttnPromptError(f"cannot load open_clip model {name!r} (pretrained={pretrained!r}): {text}{hint}") from None
    net = net.to(device=device, dtype=dtype).eval()
    return OpenClip(name, net, preprocess, tokenizer, device, dtype)
