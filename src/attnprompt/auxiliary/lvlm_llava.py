"""LLaVA-1.5 (``LlavaForConditionalGeneration``): one square grid of image tokens.

llava-hf processors resize the short side and crop the centre, whereas the original LLaVA-1.5
pads the image to a square with the mean colour. The aligned view does the latter before the
processor (its crop is then a no-op), so the grid covers exactly the letterboxed image.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from ..errors import AttnPromptError
from ..geometry import View, make_view
from .families import Family, Grid, image_token_positions, require_image_tokens


def image_token_id(aux) -> int:  # type: ignore[no-untyped-def]
    config = aux.model.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        token_id = getattr(config, "image_token_index", None)
    if token_id is None:
        raise AttnPromptError(f"{aux.name!r}: the config names no image token id")
    return int(token_id)


class Llava(Family):
    model_types = ("llava",)
    model_class = "LlavaForConditionalGeneration"

    def grids(self, aux, inputs: dict[str, torch.Tensor]) -> list[Grid]:  # type: ignore[no-untyped-def]
        positions = image_token_positions(inputs["input_ids"], image_token_id(aux))
        require_image_tokens(positions, getattr(aux.processor, "image_token", "<image>"))
        grids = []
        for pos in positions:
            count = pos.numel()
            side = math.isqrt(count)
            if side * side != count or int(pos[-1] - pos[0]) + 1 != count:
                raise AttnPromptError(f"{count} image tokens do not form one square block; one image per prompt is supported")
            grids.append(Grid(int(pos[0]), side, side))
        return grids

    def aligned_view(self, aux, image: Image.Image) -> View:  # type: ignore[no-untyped-def]
        from .clip_hf import hf_square_resize

        resize = hf_square_resize(getattr(aux.processor, "image_processor", None))
        return make_view(image, "aligned", aux.pad_color, resize=resize)
