"""Qwen2-VL and Qwen2.5-VL: a dynamic grid.

The processor resizes the image to multiples of ``patch_size * merge_size`` keeping its aspect
ratio, and the language model sees ``(grid_h / merge) x (grid_w / merge)`` tokens in row-major
order. The map has that shape (not a fixed square) and covers the whole image.
"""

from __future__ import annotations

import torch

from ..errors import AttnPromptError
from .families import Family, Grid, image_token_positions, require_image_tokens
from .lvlm_llava import image_token_id


class Qwen2VL(Family):
    model_types = ("qwen2_vl",)
    model_class = "Qwen2VLForConditionalGeneration"

    def grids(self, aux, inputs: dict[str, torch.Tensor]) -> list[Grid]:  # type: ignore[no-untyped-def]
        merge = int(getattr(aux.model.config.vision_config, "spatial_merge_size", 2))
        positions = image_token_positions(inputs["input_ids"], image_token_id(aux))
        require_image_tokens(positions, "<|image_pad|>")
        thw = inputs["image_grid_thw"].tolist()
        if len(thw) != len(positions):
            raise AttnPromptError("one image per prompt is supported")
        grids = []
        for pos, (t, h, w) in zip(positions, thw):
            rows, cols = h // merge, w // merge
            if t != 1 or pos.numel() != rows * cols or int(pos[-1] - pos[0]) + 1 != rows * cols:
                raise AttnPromptError(f"{pos.numel()} image tokens do not match the {rows}x{cols} grid")
            grids.append(Grid(int(pos[0]), rows, cols))
        return grids


class Qwen25VL(Qwen2VL):
    model_types = ("qwen2_5_vl",)
    model_class = "Qwen2_5_VLForConditionalGeneration"
