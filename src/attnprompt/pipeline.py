"""The algorithm, one function per stage: views -> token maps -> mask -> pixel mask -> prompt image.

1. :func:`views`: what the auxiliary model sees of each image and where its token grid lands in
   the image (:mod:`attnprompt.geometry`; a tiled view is several square crops).
2. :func:`token_maps`: the auxiliary's raw token-space maps (CLIP: ``psi_cls``, ``psi_comp``; an
   LVLM: the attention of its answer, and the answer). Crops of tiled views go through the model
   in one batch and are stitched back onto their view's grid here, not in the adapters.
3. :func:`masks`: maps -> the final ``[h, w]`` mask in [0, 1] (:mod:`attnprompt.maps`).
4. :func:`pixel_mask`: the mask at the image's size, ``[H, W]`` uint8 (:mod:`attnprompt.geometry`).
5. :func:`render_prompt`: the image(s) the target model is shown, in the config's visual prompt
   style (:mod:`attnprompt.styles`; ``alpha`` is the official blend).

An auxiliary only sees :class:`~attnprompt.config.AuxiliarySettings`; the mask, pixel and
rendering settings of :class:`~attnprompt.config.MaskConfig` are used here.
:class:`~attnprompt.prompter.Prompter` runs these stages on batches and packs the results.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from . import maps as mapmath
from .auxiliary.protocol import Attribution, Auxiliary, MapBatch, check_queries
from .config import AuxiliarySettings, MaskConfig
from .geometry import View, place_mask
from .overlay import mask_to_u8
from .styles import Prompt, render

__all__ = ["views", "token_maps", "masks", "attribute", "pixel_mask", "render_prompt"]


def views(auxiliary: Auxiliary, images: Sequence[Image.Image], settings: AuxiliarySettings) -> list[View]:
    """Stage 1: the auxiliary's view of each image under ``settings.geometry``."""
    return [auxiliary.view(image, settings.geometry) for image in images]


def token_maps(auxiliary: Auxiliary, views: Sequence[View], queries: Sequence[str],
               settings: AuxiliarySettings) -> list[MapBatch]:
    """Stage 2: raw token maps for each view (one query per view), in the batches they were computed.

    Untiled views go through the model together. When a view is tiled, every crop of every view
    goes through the model in one batch, and each tiled view's crop maps are stitched from their
    raw values (before any normalisation) onto one grid: a batch of one per view.
    """
    if not any(v.tiles for v in views):
        return auxiliary.map_batches([v.image for v in views], queries, settings)
    queries = check_queries(queries, len(views))
    crops: list[Image.Image] = []
    crop_queries: list[str] = []
    for v, q in zip(views, queries):
        view_crops = v.crops()
        crops.extend(view_crops)
        crop_queries.extend([q] * len(view_crops))
    computed = auxiliary.map_batches(crops, crop_queries, settings)
    names = list(computed[0].maps)
    every = {name: torch.cat([b.maps[name] for b in computed]) for name in names}  # [n_crops, p, p]
    answers = [a for b in computed for a in b.answers]
    out: list[MapBatch] = []
    start = 0
    for v in views:
        part = slice(start, start + max(1, len(v.tiles)))
        start = part.stop
        if v.tiles:
            cells, grid = [t.cell for t in v.tiles], v.grid or (0, 0)
            stitched = {name: mapmath.stitch(every[name][part], cells, grid)[None] for name in names}
            out.append(MapBatch(stitched, answers[part.start:part.start + 1]))
        else:
            out.append(MapBatch({name: every[name][part] for name in names}, answers[part]))
    return out


def masks(batches: Sequence[MapBatch], config: MaskConfig) -> list[torch.Tensor]:
    """Stage 3: the final ``[h, w]`` mask of each view, on the CPU.

    Each batch is normalised in one call (:func:`attnprompt.maps.final_mask`): the math is per
    sample, but its float rounding is not batch-invariant, and keeping the auxiliary's batches
    keeps every mask bit for bit what it has always been.
    """
    out: list[torch.Tensor] = []
    for batch in batches:
        merged = mapmath.final_mask(batch.maps, config).cpu()  # [n, h, w]
        out.extend(merged[i] for i in range(len(batch)))
    return out


def attribute(auxiliary: Auxiliary, views: Sequence[View], queries: Sequence[str],
              config: MaskConfig) -> list[Attribution]:
    """Stages 2 and 3 for views made by :func:`views`: each view's raw maps, mask and answer."""
    out: list[Attribution] = []
    for batch in token_maps(auxiliary, views, queries, config.auxiliary):
        for i, mask in enumerate(masks([batch], config)):
            view_maps = {name: values[i].cpu() for name, values in batch.maps.items()}
            out.append(Attribution(mask=mask, maps=view_maps, answer=batch.answers[i]))
    return out


def pixel_mask(mask: np.ndarray, view: View, config: MaskConfig) -> np.ndarray:
    """Stage 4: the ``[h, w]`` float mask -> ``[H, W]`` uint8 at the image's size (8-bit first, as
    the official code, then resized onto the view's frame and cut to the image)."""
    return place_mask(mask_to_u8(mask), view, config.interpolation)


def render_prompt(image: Image.Image, pixel_mask: np.ndarray, config: MaskConfig) -> Prompt:
    """Stage 5: the prompt image(s) for the target model and the boxes drawn or cut.

    The seam for visual prompt styles: every style starts from the same pixel mask
    (:func:`attnprompt.styles.render`, a :data:`~attnprompt.styles.STYLES` entry per style).
    """
    return render(image, pixel_mask, config)

