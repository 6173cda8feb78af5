"""Which backend loads a model: the registry of loaders and :func:`load_auxiliary`.

A loader registers itself with :func:`register_backend`.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from ..errors import AttnPromptError
from .devices import resolve_device, resolve_dtype
from .hub import load_from_hub_or_dir, looks_like_path, shipped_model
from .protocol import Auxiliary, ClipAuxiliary

__all__ = ["DEFAULT_MODEL", "BACKENDS", "register_backend", "load_auxiliary"]

from ..config import DEFAULT_MODEL  # noqa: E402  (defined with the other defaults; exported here too)

Loader = Callable[..., "ClipAuxiliary"]
BACKENDS: dict[str, Loader] = {}


def register_backend(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(model, *, device, dtype, **options)`` under ``name``."""

    def wrap(loader: Loader) -> Loader:
        BACKENDS[name] = loader
        return loader

    return wrap

def load_auxiliary(
    model: str = DEFAULT_MODEL,
    *,
    kind: str = "auto",
    backend: str = "auto",
    pretrained: str | None = None,
    model_config: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> Auxiliary:
    """Load an auxiliary model: a CLIP (``kind="clip"``) or a vision-language model (``"lvlm"``).

    ``kind="auto"`` reads the model's config: ``clip`` checkpoints load as CLIP, LLaVA,
    LLaVA-NeXT and Qwen2(.5)-VL checkpoints as LVLMs. ``backend="auto"`` picks open_clip when
    ``pretrained`` or ``model_config`` is given, for ``hf-hub:`` ids and for open_clip
    architecture names (``ViT-B-16``), and transformers otherwise (hub ids, local folders).
    """
    # Backends register on import; importing here keeps optional dependencies optional.
    from . import clip_hf, clip_openclip, lvlm  # noqa: F401

    if kind not in ("auto", "clip", "lvlm"):
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose auto, clip or lvlm")
    model = shipped_model(model) or model
    name = _guess_backend(model, pretrained, model_config) if backend == "auto" else backend
    if name not in ("hf", "open_clip"):
        raise AttnPromptError(f"unknown backend {backend!r}; choose one of auto, hf, open_clip")
    options = dict(device=resolve_device(device), dtype=resolve_dtype(dtype))
    if name == "open_clip":
        if kind == "lvlm":
            raise AttnPromptError("open_clip models are CLIPs; the LVLM kind needs a transformers model")
        return BACKENDS["open_clip"](model, pretrained=pretrained, model_config=model_config, **options)
    if pretrained or model_config:
        raise AttnPromptError("--pretrained and --model-config are open_clip options; use --backend open_clip")
    from transformers import AutoConfig

    config = load_from_hub_or_dir(AutoConfig.from_pretrained, model, "config")
    model_type = getattr(config, "model_type", "unknown")
    if model_type == "clip":
        if kind == "lvlm":
            raise AttnPromptError(f"{model!r} is a CLIP model, not a vision-language model; use the clip kind")
        return BACKENDS["hf"](model, **options)
    if model_type in lvlm.FAMILIES:
        if kind == "clip":
            raise AttnPromptError(f"{model!r} is a {model_type!r} vision-language model, not a CLIP; use the lvlm kind")
        return BACKENDS["lvlm"](model, config=config, **options)
    raise AttnPromptError(
        f"{model!r} is a {model_type!r} model, not a ViT CLIP (transformers CLIPModel) or a supported "
        f"vision-language model ({', '.join(sorted(lvlm.FAMILIES))})"
    )


def _guess_backend(model: str, pretrained: str | None, model_config: object) -> str:
    if pretrained or model_config or model.startswith(("hf-hub:", "local-dir:")):
        return "open_clip"
    if looks_like_path(model):
        return "hf"
    if "/" in model and not model.rsplit("/", 1)[1][:1].isdigit():
        return "hf"  # org/name is a hub id (open_clip spells only ViT-B/16-like names with a slash); no slow import
    from .clip_openclip import is_open_clip_name

    return "open_clip" if is_open_clip_name(model) else "hf"
