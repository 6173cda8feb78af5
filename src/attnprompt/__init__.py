"""attnprompt: Attention Prompting on Image (ECCV 2024) for vision-language models.

A text-query-guided attention map from an auxiliary CLIP is laid over the image as an alpha
mask, so that a target vision-language model answers better.

Public surface:
    annotate(images, queries, ...)   one call -> annotated PIL images
    Prompter(model, preset=...)      loads the auxiliary once; returns images, maps and masks
    self_prompt(prompter, image, q)  one LVLM as auxiliary and target
    MaskConfig, PRESETS, get_preset  every knob, and the named presets as data

The names are imported on first use (PEP 562), so ``import attnprompt`` and the command line's
``--help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AttnPromptError

if TYPE_CHECKING:
    from .auxiliary.dispatch import DEFAULT_MODEL, load_auxiliary
    from .auxiliary.protocol import ClipAuxiliary
    from .config import DEFAULT_PRESET, PRESETS, MaskConfig, get_preset
    from .prompter import Annotation, Prompter, SelfPromptResult, annotate, self_prompt

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "annotate": "prompter",
    "Prompter": "prompter",
    "Annotation": "prompter",
    "self_prompt": "prompter",
    "SelfPromptResult": "prompter",
    "MaskConfig": "config",
    "PRESETS": "config",
    "DEFAULT_PRESET": "config",
    "get_preset": "config",
    "DEFAULT_MODEL": "auxiliary.dispatch",
    "load_auxiliary": "auxiliary.dispatch",
    "ClipAuxiliary": "auxiliary.protocol",
}

__all__ = [
    "annotate",
    "Prompter",
    "Annotation",
    "self_prompt",
    "SelfPromptResult",
    "MaskConfig",
    "PRESETS",
    "DEFAULT_PRESET",
    "DEFAULT_MODEL",
    "get_preset",
    "load_auxiliary",
    "ClipAuxiliary",
    "AttnPromptError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attnprompt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
