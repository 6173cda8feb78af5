"""The pipeline: images + queries -> token maps -> mask -> annotated images.

:class:`Prompter` loads an auxiliary CLIP once and annotates any number of batches;
:func:`annotate` is the one-call form (in the spirit of ``apiprompting.clip_api``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from . import maps as mapmath
from .auxiliary.base import DEFAULT_MODEL, ClipAuxiliary, load_auxiliary
from .auxiliary.clip_common import TokenMaps
from .config import MaskConfig, get_preset
from .errors import AttnPromptError
from .geometry import View, make_view, place_mask
from .io import load_image
from .overlay import blend, heatmap, mask_to_u8, to_rgba

__all__ = ["Annotation", "Prompter", "annotate", "ImageInput", "OUTPUT_FORMATS"]

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]
OUTPUT_FORMATS = ("rgb", "rgba", "heatmap")


@dataclass
class Annotation:
    """The result for one (image, query) pair.

    Attributes:
        image: the annotated RGB image (the attention prompt for the target model).
        original: the input as RGB (EXIF orientation applied).
        query: the text query.
        mask: ``[P, P]`` float32 final mask in [0, 1] (token space).
        psi_cls: ``[P, P]`` float32 raw CLS-attention attribution.
        psi_comp: ``[P, P]`` float32 raw output-token similarity (before inversion), or ``None``.
        pixel_mask: ``[H, W]`` uint8 mask at the image's size (the alpha of the blend).
        config: the settings that produced it.
    """

    image: Image.Image
    original: Image.Image
    query: str
    mask: np.ndarray
    psi_cls: np.ndarray
    psi_comp: np.ndarray | None
    pixel_mask: np.ndarray
    config: MaskConfig

    def rgba(self) -> Image.Image:
        """The original pixels with the mask as alpha channel."""
        return to_rgba(self.original, self.pixel_mask)

    def heatmap(self, opacity: float = 0.5) -> Image.Image:
        """A colormap of the mask over the original, for people."""
        return heatmap(self.original, self.pixel_mask, opacity)

    def render(self, format: str = "rgb") -> Image.Image:
        """``rgb`` (annotated), ``rgba`` (mask as alpha) or ``heatmap``."""
        if format == "rgb":
            return self.image
        if format == "rgba":
            return self.rgba()
        if format == "heatmap":
            return self.heatmap()
        raise AttnPromptError(f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")

    def arrays(self) -> dict[str, np.ndarray]:
        """The raw maps and masks as arrays (``psi_comp`` omitted when disabled)."""
        out = {"psi_cls": self.psi_cls, "mask": self.mask, "pixel_mask": self.pixel_mask}
        if self.psi_comp is not None:
            out["psi_comp"] = self.psi_comp
        return out


class Prompter:
    """Attention prompting with a CLIP auxiliary model, loaded once.

    Example:
        >>> prompter = Prompter("openai/clip-vit-large-patch14-336", preset="official")  # doctest: +SKIP
        >>> [result] = prompter(["photo.jpg"], ["What is on the table?"])  # doctest: +SKIP
        >>> result.image.save("prompted.png")  # doctest: +SKIP

    Args:
        model: hub id, local folder, or open_clip architecture name (or ``hf-hub:`` id).
        preset: a preset name (``"default"``, ``"official"``, ``"paper-llava"``) or a
            :class:`MaskConfig`.
        backend: ``"auto"``, ``"hf"`` (transformers) or ``"open_clip"``.
        pretrained: open_clip pretrained tag or local weights file.
        model_config: open_clip model-config JSON for architectures open_clip does not list.
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"mps"``...
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"``.
        auxiliary: an already loaded :class:`ClipAuxiliary` (skips loading).
        **overrides: any :class:`MaskConfig` field (``layers``, ``enhance``, ``gray``...).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        preset: str | MaskConfig | None = None,
        backend: str = "auto",
        pretrained: str | None = None,
        model_config: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        auxiliary: ClipAuxiliary | None = None,
        **overrides: Any,
    ) -> None:
        self.config = get_preset(preset, **overrides)
        self.auxiliary = auxiliary or load_auxiliary(
            model, backend=backend, pretrained=pretrained, model_config=model_config, device=device, dtype=dtype,
        )
        self._check_layers(self.config)

    def _check_layers(self, config: MaskConfig) -> None:
        from .config import resolve_layer

        for layer in config.layers:
            resolve_layer(layer, self.auxiliary.num_layers, "layer")
        if config.comp_layer is not None:
            resolve_layer(config.comp_layer, self.auxiliary.num_layers, "comp layer")

    def _config(self, overrides: dict[str, Any]) -> MaskConfig:
        config = self.config.replace(**overrides) if overrides else self.config
        if overrides:
            self._check_layers(config)
        return config

    def __call__(self, images: Sequence[ImageInput], queries: Sequence[str], **overrides: Any) -> list[Annotation]:
        return self.annotate(images, queries, **overrides)

    def annotate(
        self,
        images: Sequence[ImageInput] | ImageInput,
        queries: Sequence[str] | str,
        *,
        batch_size: int | None = None,
        **overrides: Any,
    ) -> list[Annotation]:
        """Annotate each image with its query (one query per image; one query for one image).

        ``batch_size`` bounds how many images go through the model at once (default: all).
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        if isinstance(queries, str):
            queries = [queries] * len(images) if len(images) == 1 else [queries]
        queries = list(queries)
        if len(queries) != len(images):
            raise AttnPromptError(f"{len(images)} image(s) but {len(queries)} queries: give one query per image")
        config = self._config(overrides)
        loaded = [load_image(im) for im in images]
        step = batch_size or max(1, len(loaded))
        if step < 1:
            raise AttnPromptError("batch size must be at least 1")
        out: list[Annotation] = []
        for start in range(0, len(loaded), step):
            out.extend(self._annotate_batch(loaded[start:start + step], queries[start:start + step], config))
        return out

    def annotate_loaded(self, images: Sequence[Image.Image], queries: Sequence[str],
                        config: MaskConfig | None = None) -> list[Annotation]:
        """Annotate already-loaded RGB images in one batch (used by data jobs)."""
        return self._annotate_batch(list(images), list(queries), config or self.config)

    def _annotate_batch(self, images: list[Image.Image], queries: list[str], config: MaskConfig) -> list[Annotation]:
        views = [make_view(im, config.geometry, self.auxiliary.pad_color) for im in images]
        token_maps = self.auxiliary.token_maps([v.image for v in views], queries, config.layers, config.comp_layer)
        return self._finish(images, queries, views, token_maps, config)

    def token_maps_from_tensors(self, pixel_values: torch.Tensor, tokens: Any, **overrides: Any) -> tuple[TokenMaps, torch.Tensor]:
        """Maps and final masks from preprocessed pixels and token ids, bypassing preprocessing.

        Returns ``(token_maps, mask)`` with ``mask`` ``[B, P, P]`` float32.
        """
        config = self._config(overrides)
        tm = self.auxiliary.token_maps_from_tensors(pixel_values, tokens, config.layers, config.comp_layer)
        return tm, self.merge(tm, config)

    @staticmethod
    def merge(token_maps: TokenMaps, config: MaskConfig) -> torch.Tensor:
        """Token maps -> final ``[B, P, P]`` mask with the config's enhance and kernel."""
        return mapmath.merge_clip_maps(token_maps.psi_cls, token_maps.psi_comp,
                                       enhance_coe=config.enhance, kernel=config.kernel)

    def _finish(self, images: list[Image.Image], queries: list[str], views: list[View],
                token_maps: TokenMaps, config: MaskConfig) -> list[Annotation]:
        masks = self.merge(token_maps, config).cpu().numpy()  # [B, P, P]
        psi_cls = token_maps.psi_cls.cpu().numpy()
        psi_comp = None if token_maps.psi_comp is None else token_maps.psi_comp.cpu().numpy()
        out = []
        for i, (image, view) in enumerate(zip(images, views)):
            pixel_mask = place_mask(mask_to_u8(masks[i]), view, config.interpolation)
            out.append(Annotation(
                image=blend(image, pixel_mask, config.gray),
                original=image,
                query=queries[i],
                mask=masks[i],
                psi_cls=psi_cls[i],
                psi_comp=None if psi_comp is None else psi_comp[i],
                pixel_mask=pixel_mask,
                config=config,
            ))
        return out


_CACHE: dict[tuple, Prompter] = {}
_CACHE_LOCK = threading.Lock()


def annotate(
    images: Sequence[ImageInput] | ImageInput,
    queries: Sequence[str] | str,
    *,
    model: str = DEFAULT_MODEL,
    preset: str | MaskConfig | None = None,
    backend: str = "auto",
    pretrained: str | None = None,
    model_config: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    format: str = "rgb",
    batch_size: int | None = None,
    **overrides: Any,
) -> list[Image.Image]:
    """Annotate images with query-guided attention masks in one call.

    The model is loaded on first use and kept for later calls with the same model options.
    Returns one PIL image per input (``format``: ``rgb``, ``rgba`` or ``heatmap``).

    Example:
        >>> from attnprompt import annotate  # doctest: +SKIP
        >>> [img] = annotate(["photo.jpg"], ["What color is the car?"], preset="official")  # doctest: +SKIP
    """
    if format not in OUTPUT_FORMATS:
        raise AttnPromptError(f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    key = (model, backend, pretrained, str(model_config), str(device), str(dtype))
    with _CACHE_LOCK:
        prompter = _CACHE.get(key)
        if prompter is None:
            prompter = Prompter(model, backend=backend, pretrained=pretrained, model_config=model_config,
                                device=device, dtype=dtype)
            _CACHE[key] = prompter
    config = get_preset(preset, **overrides)
    results = prompter.annotate(images, queries, batch_size=batch_size, **config.to_dict())
    return [r.render(format) for r in results]
