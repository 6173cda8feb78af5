"""An offline stand-in for the hub: a model map whose targets are tiny local models.

:func:`offline_model_map` builds the models once in a folder and returns the map for
``$ATTNPROMPT_MODEL_MAP`` (see :func:`attnprompt.auxiliary.hub.model_map`), so that code written
for ``openai/clip-vit-large-patch14-336`` or ``llava-hf/llava-1.5-7b-hf`` runs without a network:
the README's snippets are tested that way. The outputs mean nothing; the code paths are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["offline_model_map"]

# An open_clip ViT small enough to build in a moment (random weights).
_OPEN_CLIP_CONFIG = {
    "embed_dim": 32, "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}


def offline_model_map(folder: str | Path) -> dict[str, Any]:
    """Build the tiny models under ``folder`` (reused when present) and return the model map.

    CLIP hub ids go to the shipped ``shapes-clip``; LLaVA-1.5 to a tiny random LLaVA with a
    32-layer decoder (so the official layer 20 exists); open_clip's ``ViT-B-16`` to a tiny open_clip
    config with random weights. ``json.dumps`` of the result is a value for ``$ATTNPROMPT_MODEL_MAP``.
    """
    from .lvlm import make_tiny_llava_dir

    root = Path(folder)
    llava = root / "tiny-llava-32"
    if not (llava / "config.json").is_file():
        make_tiny_llava_dir(llava, text_layers=32)
    config = root / "tiny-open-clip.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(_OPEN_CLIP_CONFIG), encoding="utf-8")
    open_clip = {"model": "tiny-open-clip", "model_config": str(config), "pretrained": None}
    return {
        "openai/clip-vit-large-patch14-336": "shapes-clip",
        "openai/clip-vit-base-patch16": "shapes-clip",
        "llava-hf/llava-1.5-7b-hf": str(llava),
        "ViT-B-16": open_clip,
        "ViT-L-14-336": open_clip,
    }
