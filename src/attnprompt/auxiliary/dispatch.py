"""Which backend loads a model: the registry of loaders and :func:`load_auxiliary`.

:data:`BACKENDS` maps a backend name to its loader, ``loader(model, *, device, dtype,
**options) -> Auxiliary``: the built-in ``hf``, ``open_clip`` and ``lvlm`` (imported on first
use), then loaders added at run time with :func:`register_backend`, then those of installed
packages in the ``attnprompt.auxiliaries`` entry-point group.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ..errors import AttnPromptError
from .devices import resolve_device, resolve_dtype
from ..config import DEFAULT_MODEL
from .hub import load_from_hub_or_dir, looks_like_path, shipped_model, substitute_model
from .families import FAMILIES, family_for
from .protocol import Auxiliary
from .registry import Registry

__all__ = ["DEFAULT_MODEL", "BACKENDS", "ENTRY_POINT_GROUP", "register_backend", "load_auxiliary"]

Loader = Callable[..., Auxiliary]

#: Entry-point group through which installed packages add backends (name: the backend name).
ENTRY_POINT_GROUP = "attnprompt.auxiliaries"

#: Backend name -> loader; the built-in ones are imported only when used.
BACKENDS: Registry[Loader] = Registry("backend", ENTRY_POINT_GROUP, {
    "hf": "attnprompt.auxiliary.clip_hf:load_hf_clip",
    "open_clip": "attnprompt.auxiliary.clip_openclip:load_open_clip",
    "lvlm": "attnprompt.auxiliary.lvlm:load_lvlm",
})
_BUILT_IN = ("hf", "open_clip", "lvlm")


def register_backend(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(model, *, device, dtype, **options)`` under ``name``.

    ``Prompter(model, backend=name)``, ``load_auxiliary(..., backend=name)`` and the CLI's
    ``--backend name`` then load through it; ``options`` are ``pretrained`` and ``model_config``
    when given.
    """

    def wrap(loader: Loader) -> Loader:
        BACKENDS.register(name, loader)
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
    if kind not in ("auto", "clip", "lvlm"):
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose auto, clip or lvlm")
    model, pretrained, model_config = substitute_model(model, pretrained, None if model_config is None else str(model_config))
    model = shipped_model(model) or model
    name = _guess_backend(model, pretrained, model_config) if backend == "auto" else backend
    if name == "lvlm" or name not in BACKENDS:
        choices = ["auto", *(n for n in BACKENDS.names() if n != "lvlm")]
        raise AttnPromptError(f"unknown backend {backend!r}; choose one of {', '.join(choices)}")
    options = dict(device=resolve_device(device), dtype=resolve_dtype(dtype))
    if name not in _BUILT_IN:
        return _load_registered(name, model, kind, pretrained, model_config, options)
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
    if family_for(model_type) is not None:
        if kind == "clip":
            raise AttnPromptError(f"{model!r} is a {model_type!r} vision-language model, not a CLIP; use the lvlm kind")
        return BACKENDS["lvlm"](model, config=config, **options)
    raise AttnPromptError(
        f"{model!r} is a {model_type!r} model, not a ViT CLIP (transformers CLIPModel) or a supported "
        f"vision-language model ({', '.join(sorted(FAMILIES.names()))})"
    )


def _load_registered(name: str, model: str, kind: str, pretrained: str | None,
                     model_config: str | os.PathLike[str] | None, options: dict[str, Any]) -> Auxiliary:
    """A backend added with :func:`register_backend` or an entry point; it must give an Auxiliary."""
    extra = {k: v for k, v in (("pretrained", pretrained), ("model_config", model_config)) if v}
    auxiliary = BACKENDS[name](model, **extra, **options)
    if not isinstance(auxiliary, Auxiliary):
        raise AttnPromptError(f"backend {name!r} returned {type(auxiliary).__name__}, not an attnprompt Auxiliary")
    if kind != "auto" and auxiliary.kind != kind:
        raise AttnPromptError(f"backend {name!r} loads {auxiliary.kind} models, not {kind}")
    return auxiliary


def _guess_backend(model: str, pretrained: str | None, model_config: object) -> str:
    if pretrained or model_config or model.startswith(("hf-hub:", "local-dir:")):
        return "open_clip"
    if looks_like_path(model):
        return "hf"
    if "/" in model and not model.rsplit("/", 1)[1][:1].isdigit():
        return "hf"  # org/name is a hub id (open_clip spells only ViT-B/16-like names with a slash); no slow import
    from .clip_openclip import is_open_clip_name

    return "open_clip" if is_open_clip_name(model) else "hf"
