"""LVLM families: what differs between vision-language models, and the registry of families.

A family says where one sample's image tokens are and how its processor transforms the image
(:class:`Family`); one small module per family (``lvlm_llava.py``...). :data:`FAMILIES` maps a
transformers ``model_type`` to its family: the built-in table, then :func:`register_family` at
run time, then installed packages through the ``attnprompt.lvlm_families`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..errors import AttnPromptError
from ..geometry import View, make_view
from .registry import Registry

if TYPE_CHECKING:
    from .lvlm import LvlmAuxiliary

__all__ = ["Grid", "Family", "FAMILIES", "ENTRY_POINT_GROUP", "register_family", "family_for",
           "image_token_positions", "require_image_tokens"]


@dataclass(frozen=True)
class Grid:
    """Where one sample's map tokens are: ``rows * cols`` consecutive positions from ``start``."""

    start: int
    rows: int
    cols: int

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.start + self.rows * self.cols


class Family(ABC):
    """What differs between LVLM families: the image-token layout and the processor's geometry."""

    model_types: tuple[str, ...] = ()
    model_class: str = ""  # transformers class name

    @abstractmethod
    def grids(self, aux: "LvlmAuxiliary", inputs: dict[str, torch.Tensor]) -> list[Grid]:
        """Per sample, the map tokens' positions and grid shape (from the processor's output)."""

    def aligned_view(self, aux: "LvlmAuxiliary", image: Image.Image) -> View:
        """The view under which the grid maps exactly onto the image (default: the whole image)."""
        return make_view(image, "stretch")


def _instance(value: object) -> Family:
    family = value() if isinstance(value, type) else value
    if not isinstance(family, Family):
        raise AttnPromptError(f"{value!r} is not an attnprompt.auxiliary.families.Family")
    return family


#: Entry-point group through which installed packages add families (name: the model_type).
ENTRY_POINT_GROUP = "attnprompt.lvlm_families"

#: LVLM families by the ``model_type`` of a transformers config. Every built-in model type is
#: mapped explicitly (Qwen2.5-VL to its own class), so nothing depends on registration order.
FAMILIES: Registry[Family] = Registry("LVLM family", ENTRY_POINT_GROUP, {
    "llava": "attnprompt.auxiliary.lvlm_llava:Llava",
    "llava_next": "attnprompt.auxiliary.lvlm_llava_next:LlavaNext",
    "qwen2_vl": "attnprompt.auxiliary.lvlm_qwen2_vl:Qwen2VL",
    "qwen2_5_vl": "attnprompt.auxiliary.lvlm_qwen2_vl:Qwen25VL",
}, make=_instance)


def register_family(family: Family | type[Family]) -> Family:
    """Add ``family`` (an instance or a class) for each of its ``model_types``, for this process."""
    instance = _instance(family)
    for model_type in instance.model_types:
        FAMILIES.register(model_type, instance)
    return instance


def family_for(model_type: str) -> Family | None:
    """The family of a transformers ``model_type`` (``None`` when no family knows it)."""
    return FAMILIES.get(model_type)


def image_token_positions(input_ids: torch.Tensor, token_id: int) -> list[torch.Tensor]:
    """Per row, the positions of ``token_id`` (an empty tensor when the row has none)."""
    return [torch.nonzero(row == token_id).flatten() for row in input_ids]


def require_image_tokens(positions: list[torch.Tensor], token: str) -> None:
    for i, pos in enumerate(positions):
        if pos.numel() == 0:
            raise AttnPromptError(
                f"prompt {i} has no image token ({token!r}): the chat template or prompt does not place the image"
            )
