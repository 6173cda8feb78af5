"""The user's entry points: :class:`Prompter` and :func:`annotate` run the pipeline on batches.

:class:`Prompter` loads an auxiliary model once (a CLIP or a vision-language model) and annotates
any number of batches with the stages of :mod:`attnprompt.pipeline` (view -> token maps -> mask
-> pixel mask -> prompt image); :func:`annotate` is the one-call form (in the spirit of
``apiprompting.clip_api``).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, Union, cast

import numpy as np
import torch
from PIL import Image

from . import pipeline
from .auxiliary.clip_common import TokenMaps
from .auxiliary.dispatch import DEFAULT_MODEL, load_auxiliary
from .auxiliary.protocol import Attribution, Auxiliary, ClipAuxiliary
from .config import MaskConfig, get_preset, is_preset_path, presets_for, resolve_preset
from .errors import AttnPromptError
from .files import load_image
from .geometry import View
from .overlay import heatmap, to_rgba
from .styles import Box

__all__ = ["Annotation", "Prompter", "annotate", "cached_prompter", "self_prompt", "SelfPromptResult", "ImageInput", "OUTPUT_FORMATS"]

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]
OUTPUT_FORMATS = ("rgb", "rgba", "heatmap")


@dataclass
class Annotation:
    """The result for one (image, query) pair.

    Attributes:
        image: the annotated RGB image (the attention prompt for the target model; the first of
            ``images``).
        original: the input as RGB (EXIF orientation applied).
        query: the text query.
        mask: ``[h, w]`` float32 final mask in [0, 1] (token space; ``h = w = P`` for CLIP).
        pixel_mask: ``[H, W]`` uint8 mask at the image's size (the alpha of the blend).
        config: the settings that produced it.
        psi_cls: CLIP: ``[P, P]`` float32 raw CLS-attention attribution, else ``None``.
        psi_comp: CLIP: ``[P, P]`` raw output-token similarity (before inversion), or ``None``.
        attention: LVLM: ``[h, w]`` float32 raw attention of the answer to the image tokens.
        answer: LVLM: the auxiliary model's own answer to the query.
        images: every prompt image of the style, in order (two for ``vicrop``: original, crop).
        boxes: the boxes the style cut or drew (``(left, top, right, bottom)``, original pixels).
    """

    image: Image.Image
    original: Image.Image
    query: str
    mask: np.ndarray
    pixel_mask: np.ndarray
    config: MaskConfig
    psi_cls: np.ndarray | None = None
    psi_comp: np.ndarray | None = None
    attention: np.ndarray | None = None
    answer: str | None = None
    images: list[Image.Image] | None = None
    boxes: list[Box] | None = None

    def __post_init__(self) -> None:
        if self.images is None:
            self.images = [self.image]
        if self.boxes is None:
            self.boxes = []

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
        """The raw maps and masks as arrays (maps the auxiliary did not make are omitted)."""
        out = {"mask": self.mask, "pixel_mask": self.pixel_mask}
        for name in ("psi_cls", "psi_comp", "attention"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class Prompter:
    """Attention prompting with an auxiliary model, loaded once.

    Example:
        >>> prompter = Prompter("openai/clip-vit-large-patch14-336", preset="official")  # doctest: +SKIP
        >>> [result] = prompter(["photo.jpg"], ["What is on the table?"])  # doctest: +SKIP
        >>> result.image.save("prompted.png")  # doctest: +SKIP

    Args:
        model: hub id or local folder (a CLIP, or LLaVA / LLaVA-NeXT / Qwen2-VL), or an open_clip
            architecture name (or ``hf-hub:`` id).
        kind: ``"auto"`` (from the model's config), ``"clip"`` or ``"lvlm"``.
        preset: a preset name of that kind (``"default"``, ``"official"``...), a preset file
            (``.json``, see :func:`attnprompt.config.load_preset_file`) or a :class:`MaskConfig`.
            ``None`` / ``"default"``: the model folder's own ``attnprompt_preset.json`` when it has
            one, else the built-in default of its kind.
        backend: CLIP only: ``"auto"``, ``"hf"`` (transformers) or ``"open_clip"``.
        pretrained: open_clip pretrained tag or local weights file.
        model_config: open_clip model-config JSON for architectures open_clip does not list.
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"mps"``...
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"``.
        auxiliary: an already loaded :class:`Auxiliary` (skips loading).
        **overrides: any :class:`MaskConfig` field (``layers``, ``enhance``, ``gray``, ``style``,
            ``style_params``...).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        kind: str = "auto",
        preset: str | MaskConfig | None = None,
        backend: str = "auto",
        pretrained: str | None = None,
        model_config: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        auxiliary: Auxiliary | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(preset, MaskConfig):  # unknown names fail before a model is loaded
            kinds = (kind,) if kind in ("clip", "lvlm") else ("clip", "lvlm")
            if preset is not None and not any(str(preset).lower() in presets_for(k) for k in kinds):
                if is_preset_path(preset):
                    get_preset(preset, kind=kinds[0] if len(kinds) == 1 else _preset_kind(preset))
                else:
                    get_preset(preset, kind=kinds[0])
        self.auxiliary = auxiliary or load_auxiliary(
            model, kind=kind, backend=backend, pretrained=pretrained, model_config=model_config,
            device=device, dtype=dtype,
        )
        self.config = resolve_preset(preset, kind=self.auxiliary.kind, model=_model_folder(model, auxiliary),
                                     **overrides)
        self.auxiliary.check_config(self.config)

    @property
    def kind(self) -> str:
        return self.auxiliary.kind

    def _config(self, overrides: dict[str, Any]) -> MaskConfig:
        if not overrides:
            return self.config
        config = self.config.replace(**overrides)
        self.auxiliary.check_config(config)
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
        inputs: list[ImageInput] = list(images) if isinstance(images, (list, tuple)) else [cast(ImageInput, images)]
        if isinstance(queries, str):
            queries = [queries] * len(inputs) if len(inputs) == 1 else [queries]
        queries = list(queries)
        if len(queries) != len(inputs):
            raise AttnPromptError(f"{len(inputs)} image(s) but {len(queries)} queries: give one query per image")
        if batch_size is not None and batch_size < 1:
            raise AttnPromptError("batch size must be at least 1")
        config = self._config(overrides)
        loaded = [load_image(im) for im in inputs]
        step = batch_size or max(1, len(loaded))
        out: list[Annotation] = []
        for start in range(0, len(loaded), step):
            out.extend(self._annotate_batch(loaded[start:start + step], queries[start:start + step], config))
        return out

    def annotate_loaded(self, images: Sequence[Image.Image], queries: Sequence[str],
                        config: MaskConfig | None = None) -> list[Annotation]:
        """Annotate already-loaded RGB images in one batch (used by data jobs)."""
        return self._annotate_batch(list(images), list(queries), config or self.config)

    def attribute_loaded(self, images: Sequence[Image.Image], queries: Sequence[str],
                         config: MaskConfig | None = None,
                         views: Sequence[View] | None = None) -> list[tuple[View, Attribution]]:
        """The model's part of :meth:`annotate_loaded`: each image's view and attribution.

        ``views``: the images' views if already made (``self.auxiliary.view(image, geometry)``,
        e.g. on a decoding thread). :meth:`finish` turns a result into an :class:`Annotation`
        (the pixel stage); data jobs run it on other threads than the model.
        """
        config = config or self.config
        _warn_if_photo_for_shapes_model(self.auxiliary, images)
        if views is None:
            views = pipeline.views(self.auxiliary, images, config.auxiliary)
        return list(zip(views, pipeline.attribute(self.auxiliary, views, list(queries), config)))

    def finish(self, image: Image.Image, query: str, view: View, attribution: Attribution,
               config: MaskConfig | None = None) -> Annotation:
        """The pixel stage of one attributed image: the mask at image size and the annotated image."""
        return self._finish(image, query, view, attribution, config or self.config)

    def _annotate_batch(self, images: list[Image.Image], queries: list[str], config: MaskConfig) -> list[Annotation]:
        pairs = self.attribute_loaded(images, queries, config)
        return [self._finish(im, q, v, a, config) for im, q, (v, a) in zip(images, queries, pairs)]

    def token_maps_from_tensors(self, pixel_values: torch.Tensor, tokens: Any, **overrides: Any) -> tuple[TokenMaps, torch.Tensor]:
        """CLIP only: maps and final masks from preprocessed pixels and token ids (no preprocessing).

        Returns ``(token_maps, mask)`` with ``mask`` ``[B, P, P]`` float32.
        """
        aux = self.auxiliary
        if not isinstance(aux, ClipAuxiliary):
            raise AttnPromptError("token_maps_from_tensors is for CLIP auxiliary models")
        config = self._config(overrides)
        tm = aux.token_maps_from_tensors(pixel_values, tokens, aux.clip_layers(config), config.comp_layer)
        return tm, aux.merge(tm, config)

    @staticmethod
    def _finish(image: Image.Image, query: str, view: View, attribution: Attribution, config: MaskConfig) -> Annotation:
        mask = attribution.mask.float().cpu().numpy()
        pixel_mask = pipeline.pixel_mask(mask, view, config)
        maps = {k: v.float().cpu().numpy() for k, v in attribution.maps.items()}
        prompt = pipeline.render_prompt(image, pixel_mask, config)
        return Annotation(
            image=prompt.images[0],
            images=prompt.images,
            boxes=prompt.boxes,
            original=image,
            query=query,
            mask=mask,
            pixel_mask=pixel_mask,
            config=config,
            psi_cls=maps.get("psi_cls"),
            psi_comp=maps.get("psi_comp"),
            attention=maps.get("attention"),
            answer=attribution.answer,
        )


SHAPES_SCENE_SIDE = 256
"""Images longer than this on a side are photos to the shipped shapes models (their scenes are 64-128)."""


def _warn_if_photo_for_shapes_model(auxiliary: Auxiliary, images: Sequence[Image.Image]) -> None:
    from pathlib import Path

    from .auxiliary.hub import SHIPPED_MODELS_DIR

    folder = Path(auxiliary.name)
    if folder.parent != SHIPPED_MODELS_DIR:
        return
    big = [im.size for im in images if max(im.size) > SHAPES_SCENE_SIDE]
    if big:
        real = DEFAULT_MODEL if auxiliary.kind == "clip" else "llava-hf/llava-1.5-7b-hf"
        warnings.warn(
            f"{folder.name} is a tiny model of the synthetic shapes world (scenes of 64-128 pixels); on a "
            f"{big[0][0]}x{big[0][1]} image its map means little. For photos use {real}.", stacklevel=4)


@dataclass
class SelfPromptResult:
    """Self-prompting: one LVLM's answer on the original image and on its own annotated image."""

    original_answer: str
    prompted_answer: str
    annotation: Annotation


def self_prompt(prompter: Prompter, image: ImageInput, query: str, **overrides: Any) -> SelfPromptResult:
    """The same LVLM as auxiliary and target: it answers on the original image (its attention
    gives the mask), then answers the same query on the annotated image."""
    from .auxiliary.lvlm import LvlmAuxiliary

    aux = prompter.auxiliary
    if not isinstance(aux, LvlmAuxiliary):
        raise AttnPromptError("self-prompting needs a vision-language model as auxiliary (kind lvlm)")
    [annotation] = prompter.annotate(image, query, **overrides)
    [prompted] = aux.answer([annotation.image], [query], max_new_tokens=annotation.config.max_new_tokens)
    return SelfPromptResult(original_answer=annotation.answer or "", prompted_answer=prompted, annotation=annotation)


def _model_folder(model: str, auxiliary: Auxiliary | None) -> str | None:
    """Where a model's own preset file may be: its folder (shipped names resolved) or hub id."""
    from .auxiliary.hub import shipped_model

    if auxiliary is not None and model == DEFAULT_MODEL:
        return getattr(auxiliary, "name", None)
    return shipped_model(model) or model


def _preset_kind(preset: Any) -> str:
    from .config import load_preset_file

    return load_preset_file(preset).kind


_CACHE: dict[tuple, Prompter] = {}
_CACHE_LOCK = threading.Lock()


def cached_prompter(
    model: str = DEFAULT_MODEL,
    *,
    kind: str = "auto",
    backend: str = "auto",
    pretrained: str | None = None,
    model_config: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> Prompter:
    """A :class:`Prompter` with the project default settings, loaded on first use and kept for
    later calls with the same model options (used by :func:`annotate` and the web app)."""
    key = (model, kind, backend, pretrained, str(model_config), str(device), str(dtype))
    with _CACHE_LOCK:
        prompter = _CACHE.get(key)
        if prompter is None:
            prompter = Prompter(model, kind=kind, backend=backend, pretrained=pretrained,
                                model_config=model_config, device=device, dtype=dtype)
            _CACHE[key] = prompter
    return prompter


def annotate(
    images: Sequence[ImageInput] | ImageInput,
    queries: Sequence[str] | str,
    *,
    model: str = DEFAULT_MODEL,
    aux: str | None = None,
    kind: str = "auto",
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

    ``model`` (or its alias ``aux``) names the auxiliary model: a CLIP, or a vision-language model
    such as ``llava-hf/llava-1.5-7b-hf`` (the kind is read from its config). The model is loaded
    on first use and kept for later calls with the same model options. Returns one PIL image per
    input (``format``: ``rgb``, ``rgba`` or ``heatmap``); use :class:`Prompter` for maps and answers.

    Example:
        >>> from attnprompt import annotate  # doctest: +SKIP
        >>> [img] = annotate(["photo.jpg"], ["What color is the car?"], preset="official")  # doctest: +SKIP
    """
    if format not in OUTPUT_FORMATS:
        raise AttnPromptError(f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if aux is not None:
        model = aux
    prompter = cached_prompter(model, kind=kind, backend=backend, pretrained=pretrained,
                               model_config=model_config, device=device, dtype=dtype)
    # the default is the loaded model's (its own preset file, when its folder has one)
    config = get_preset(prompter.config if preset is None or str(preset).lower() == "default" else preset,
                        kind=prompter.kind, **overrides)
    results = prompter.annotate(images, queries, batch_size=batch_size, **config.to_dict())
    return [r.render(format) for r in results]
