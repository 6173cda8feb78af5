"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``).

The image-token span holds the base image (the whole image resized to the vision tower's square
input) followed by the high-resolution tiles (with row-separator tokens). The map is built from
the base-image tokens only: they are one square grid over the whole image, so the grid maps back
exactly without letterboxing. The tiles' attention is not used (for both reductions, the
``official`` softmax runs over the base tokens only).
"""

from __future__ import annotations

import torch

from ..errors import AttnPromptError
from .families import Family, Grid, image_token_positions, require_image_tokens
from .lvlm_llava import image_token_id


class LlavaNext(Family):
    model_types = ("llava_next",)
    model_class = "LlavaNextForConditionalGeneration"

    def grids(self, aux, inputs: dict[str, torch.Tensor]) -> list[Grid]:  # type: ignore[no-untyped-def]
        vision = aux.model.config.vision_config
        side = int(vision.image_size) // int(vision.patch_size)
        # "full" keeps the vision tower's CLS token in front of the base grid
        offset = 1 if getattr(aux.model.config, "vision_feature_select_strategy", "default") == "full" else 0
        positions = image_token_positions(inputs["input_ids"], image_token_id(aux))
        require_image_tokens(positions, getattr(aux.processor, "image_token", "<image>"))
        grids = []
        for pos in positions:
            if pos.numel() < offset + side * side:
                raise AttnPromptError(f"{pos.numel()} image tokens, fewer than the {side}x{side} base grid")
            start = int(pos[offset])
            if int(pos[offset + side * side - 1]) - start + 1 != side * side:
                raise AttnPromptError("the base-image tokens are not contiguous; one image per prompt is supported")
            grids.append(Grid(start, side, side))
        return grids
