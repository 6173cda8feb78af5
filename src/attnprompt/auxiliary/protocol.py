"""The auxiliary-model protocol: what a backend provides and what it returns.

An auxiliary model makes a view of each image (what it sees, and where its token grid lands)
and turns ``(view images, queries)`` into raw token-space maps, plus its answer for an LVLM
(:class:`MapBatch`). Everything after that, the mask, the pixel mask and the prompt image, is
the pipeline's (:mod:`attnprompt.pipeline`), so a backend never sees a pixel-stage setting: it
gets :class:`~attnprompt.config.AuxiliarySettings`. Two kinds exist: ``clip``
(:class:`ClipAuxiliary`, one small file per backend) and ``lvlm``
(:mod:`attnprompt.auxiliary.lvlm`, one small file per model family).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from PIL import Image

from .. import maps as mapmath
from ..config import AuxiliarySettings, MaskConfig, resolve_layer
from ..errors import AttnPromptError
from ..files.names import unicode_problem
from ..geometry import SquareResize, View, make_tiled_view, make_view, resolve_geometry
from .clip_common import ClipTower, TokenMaps, compute_token_maps

__all__ = ["Attribution", "MapBatch", "Auxiliary", "ClipAuxiliary", "TokenMaps", "check_queries", "warn_truncated"]


def check_queries(queries: Sequence[str], count: int) -> list[str]:
    """One non-empty string per image."""
    if isinstance(queries, str):
        queries = [queries]
    out = list(queries)
    if len(out) != count:
        raise AttnPromptError(f"{count} image(s) but {len(out)} queries: give one query per image")
    for i, q in enumerate(out):
        if not isinstance(q, str):
            raise AttnPromptError(f"query {i} is not a string: {q!r}")
        if not q.strip():
            raise AttnPromptError(f"query {i} is empty: give a question or instruction about the image")
        problem = unicode_problem(q)
        if problem:  # tokenizers raise a TypeError on these, outside every per-row error
            raise AttnPromptError(f"query {i} is {problem}")
    return out


def warn_truncated(query: str, length: int, limit: int) -> None:
    warnings.warn(
        f"query truncated to the text encoder's {limit}-token context ({length} tokens): {query[:60]!r}...",
        stacklevel=3,
    )



@dataclass
class MapBatch:
    """Raw token-space maps of consecutive views, in the batch the auxiliary computed them.

    Attributes:
        maps: name -> ``[n, h, w]`` (``psi_cls`` and ``psi_comp`` for CLIP, ``attention`` for an
            LVLM), on the model's device.
        answers: per view, the LVLM's own answer (``None`` for CLIP).

    The mask stage normalises each batch in one call (:func:`attnprompt.maps.final_mask`): its
    steps are per sample, but float rounding is not batch-invariant, so the batches are kept.
    """

    maps: dict[str, torch.Tensor]
    answers: list[str | None]

    def __len__(self) -> int:
        return len(self.answers)


@dataclass
class Attribution:
    """What an auxiliary model says about one (image, query) pair.

    Attributes:
        mask: ``[h, w]`` float32 final mask in [0, 1] on the token grid.
        maps: the raw token-space maps by name (``psi_cls``, ``psi_comp`` or ``attention``).
        answer: the auxiliary model's own answer (LVLM kind), else ``None``.
    """

    mask: torch.Tensor
    maps: dict[str, torch.Tensor]
    answer: str | None = None


class Auxiliary(ABC):
    """An auxiliary model: a view of each image, then maps and a mask per (image, query)."""

    kind: str = ""
    backend: str = ""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype

    @abstractmethod
    def view(self, image: Image.Image, geometry: str) -> View:
        """What the model is given for ``image`` and where its token grid lands (see geometry.py)."""

    @abstractmethod
    def check_settings(self, settings: AuxiliarySettings) -> None:
        """Fail early, with a clear message, on settings this model cannot honour (layers...)."""

    @abstractmethod
    def map_batches(self, images: Sequence[Image.Image], queries: Sequence[str],
                    settings: AuxiliarySettings) -> list[MapBatch]:
        """Raw token maps for images already in their view (untiled), one query per image, in order."""

    def check_config(self, config: MaskConfig | AuxiliarySettings) -> None:
        """:meth:`check_settings` for a whole :class:`~attnprompt.config.MaskConfig`."""
        self.check_settings(AuxiliarySettings.of(config))

    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        """Maps and masks for images already in their view, one query per image."""
        from ..pipeline import attribute  # the pipeline builds on this protocol, not the reverse

        return attribute(self, [make_view(im, "stretch") for im in images], queries, config)

    def attribute_views(self, views: Sequence[View], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        """Maps and masks for views made by :meth:`view`, one query per view (:func:`attnprompt.pipeline.attribute`)."""
        from ..pipeline import attribute

        return attribute(self, views, queries, config)


class ClipAuxiliary(Auxiliary):
    """A CLIP model that produces ``psi_cls`` / ``psi_comp`` token maps for (image, query) pairs.

    Subclasses load a model and describe its vision tower; the attribution math is shared
    (:mod:`attnprompt.auxiliary.clip_common`).
    """

    kind = "clip"

    # -- what a backend provides -------------------------------------------------------------
    @property
    @abstractmethod
    def tower(self) -> ClipTower:
        """The vision tower, described for the shared decomposition."""

    @property
    @abstractmethod
    def pad_color(self) -> tuple[int, int, int]:
        """The processor's mean colour in 0-255: letterbox padding that normalises to ~0."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the square input the tower sees."""

    @property
    @abstractmethod
    def grid_size(self) -> int:
        """Tokens per side of the tower's patch grid (``image_size // patch_size``)."""

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> pixel tensor ``[B, 3, S, S]`` on the model's device and dtype."""

    @abstractmethod
    def tokenize(self, queries: Sequence[str]) -> Any:
        """Queries -> whatever :meth:`encode_text` takes (truncating with a warning)."""

    @abstractmethod
    def encode_text(self, tokens: Any) -> torch.Tensor:
        """Tokenized queries -> text embeddings ``[B, E]`` (not normalised)."""

    # -- shared ------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.tower.num_layers

    @property
    def square_resize(self) -> SquareResize | None:
        """``(side, PIL filter)`` when preprocessing starts by resizing a square image to ``side x side``.

        Lets the aligned view hand the model the small letterboxed square instead of the full
        canvas (the same pixels, see :func:`~attnprompt.geometry.letterbox_resized`); ``None``
        (the default) keeps the full-size path.
        """
        return None

    def view(self, image: Image.Image, geometry: str) -> View:
        geometry = resolve_geometry(geometry, image.size)
        if geometry == "tiled":
            return make_tiled_view(image, self.image_size, self.grid_size, self.pad_color)
        return make_view(image, geometry, self.pad_color, resize=self.square_resize)

    @staticmethod
    def clip_layers(config: MaskConfig | AuxiliarySettings) -> tuple[int, ...]:
        return config.layers if config.layers is not None else (-2,)

    def check_settings(self, settings: AuxiliarySettings) -> None:
        for layer in self.clip_layers(settings):
            resolve_layer(layer, self.num_layers, "layer")
        if settings.comp_layer is not None:
            resolve_layer(settings.comp_layer, self.num_layers, "comp layer")

    def map_batches(self, images: Sequence[Image.Image], queries: Sequence[str],
                    settings: AuxiliarySettings) -> list[MapBatch]:
        tm = self.token_maps(images, queries, self.clip_layers(settings), settings.comp_layer)
        maps = {"psi_cls": tm.psi_cls} if tm.psi_comp is None else {"psi_cls": tm.psi_cls, "psi_comp": tm.psi_comp}
        return [MapBatch(maps, [None] * tm.psi_cls.shape[0])]

    @staticmethod
    def merge(token_maps: TokenMaps, config: MaskConfig) -> torch.Tensor:
        """Token maps -> final ``[B, P, P]`` mask (the mask stage, :func:`attnprompt.maps.final_mask`)."""
        maps = {"psi_cls": token_maps.psi_cls}
        if token_maps.psi_comp is not None:
            maps["psi_comp"] = token_maps.psi_comp
        return mapmath.final_mask(maps, config)

    def token_maps(
        self,
        images: Sequence[Image.Image],
        queries: Sequence[str],
        layers: tuple[int, ...],
        comp_layer: int | None,
    ) -> TokenMaps:
        """Maps for RGB images (already in the geometry's view) and one query per image."""
        queries = check_queries(queries, len(images))
        if not images:
            raise AttnPromptError("no images given")
        pixel_values = self.preprocess(images)
        tokens = self.tokenize(queries)
        return self.token_maps_from_tensors(pixel_values, tokens, layers, comp_layer)

    def token_maps_from_tensors(
        self,
        pixel_values: torch.Tensor,
        tokens: Any,
        layers: tuple[int, ...],
        comp_layer: int | None,
    ) -> TokenMaps:
        """Maps from preprocessed pixels ``[B, 3, S, S]`` and token ids (bypassing preprocessing)."""
        with torch.no_grad():
            text_embeds = self.encode_text(tokens)
        pixel_values = pixel_values.to(self.device, self.dtype)
        return compute_token_maps(self.tower, pixel_values, text_embeds, layers, comp_layer)
