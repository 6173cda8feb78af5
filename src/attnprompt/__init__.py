"""attnprompt: Attention Prompting on Image (ECCV 2024) for vision-language models.

A text-query-guided attention map from an auxiliary CLIP is laid over the image as an alpha
mask, so that a target vision-language model answers better.

Public surface:
    annotate(images, queries, ...)   one call -> annotated PIL images
    Prompter(model, preset=...)      loads the auxiliary once; returns images, maps and masks
    MaskConfig, PRESETS, get_preset  every knob, and the named presets as data
    load_preset_file, write_preset_file  presets as files (a model folder's own one included)
    STYLES                           the prompt styles (alpha, soft, crop, blur, outline, marks...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_MODEL, DEFAULT_PRESET, PRESETS, MaskConfig, get_preset, load_preset_file, write_preset_file
from .errors import AttnPromptError

if TYPE_CHECKING:
    from .auxiliary.dispatch import load_auxiliary
    from .auxiliary.protocol import ClipAuxiliary
    from .prompter import Annotation, Prompter, SelfPromptResult, annotate, self_prompt
    from .styles import STYLES

__version__ = "0.1.0"

# Names that need torch are imported on first use, so that the command line answers --help and
# bad input (an uncached model without hub access...) without paying torch's import time.
_LAZY = {
    "annotate": ".prompter", "Prompter": ".prompter", "Annotation": ".prompter",
    "self_prompt": ".prompter", "SelfPromptResult": ".prompter",
    "ClipAuxiliary": ".auxiliary.protocol", "load_auxiliary": ".auxiliary.dispatch", "STYLES": ".styles",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attnprompt' has no attribute {name!r}")

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
    "load_preset_file",
    "write_preset_file",
    "STYLES",
    "load_auxiliary",
    "ClipAuxiliary",
    "AttnPromptError",
    "__version__",
]
