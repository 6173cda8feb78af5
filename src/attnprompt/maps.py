"""Pure tensor math on token-space maps: from raw attribution scores to a mask in [0, 1].

Every function takes ``[B, H, W]`` tensors (``H = W = P`` for CLIP grids) of any float dtype,
works per sample, and returns the same shape and dtype. Half-precision inputs are computed in
float32 internally: the steps divide by small ranges and standard deviations.

Degenerate (constant) maps never produce NaN. The convention is "no information means no
dimming": :func:`minmax` and :func:`maxmin` of a constant map are all ones, :func:`enhance` of a
constant map is 0.5 everywhere (a standardised constant is 0), and the merged mask of constant
inputs is therefore all ones, which leaves the image untouched.

Two scale-aware knobs (off in the ``official`` presets, which stay bit-identical):

- ``kernel_grid``: the mean filter is defined for a reference grid (24 x 24, where the official
  kernel 3 was chosen) and rescaled to the map's grid (:func:`grid_kernel`): 3 stays exactly 3 on
  24 x 24 and becomes 1 on an 8 x 8 grid, instead of covering 3/8 of it.
- ``strict_order``: ``sigmoid(5 z)`` is exactly 1.0 in float32 above ``z`` ~ 3.3, so the official
  enhance turns the top cells of a peaked map into ties and the final soft OR saturates likewise.
  With it, every such step keeps the order of its input: ``(1 - d) * y + d * rank``, where
  ``rank`` is the dense rank of the input scaled to [0, 1] and ``d = 2**-9`` (:data:`ORDER_STEP`).
  Values move by at most ``d`` (half an 8-bit gray level); distinct inputs stay distinct (the
  rank spacing is far above float32 resolution for any grid under ~4000 cells a side squared).

No model library is imported here (see METHOD.md for the definitions).
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING, Mapping

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .config import MaskConfig

__all__ = [
    "minmax",
    "maxmin",
    "enhance",
    "grid_kernel",
    "keep_order",
    "ORDER_STEP",
    "box_filter",
    "soft_or",
    "merge_clip_maps",
    "postprocess_single_map",
    "final_mask",
    "stitch",
]


def _check(x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"expected a [B, H, W] map, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point map, got {x.dtype}")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _range_normalise(x: torch.Tensor, invert: bool) -> torch.Tensor:
    _check(x)
    xc = x.to(_compute_dtype(x))
    lo = xc.amin(dim=(1, 2), keepdim=True)  # [B, 1, 1]
    hi = xc.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    flat = span == 0
    safe = torch.where(flat, torch.ones_like(span), span)
    out = (hi - xc) / safe if invert else (xc - lo) / safe
    out = torch.where(flat, torch.ones_like(out), out)
    return out.to(x.dtype)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """``(x - min) / (max - min)`` per sample; a constant map gives all ones."""
    return _range_normalise(x, invert=False)


def maxmin(x: torch.Tensor) -> torch.Tensor:
    """``(max - x) / (max - min)`` per sample (the inverted ``minmax``); constant -> all ones."""
    return _range_normalise(x, invert=True)


ORDER_STEP = 2.0 ** -9
"""How far :func:`keep_order` may move a value: half of one 8-bit gray level."""


def keep_order(y: torch.Tensor, order_of: torch.Tensor) -> torch.Tensor:
    """``(1 - d) * y + d * rank(order_of)`` per sample: ``y`` with its ties broken by ``order_of``.

    ``rank`` is the dense rank of ``order_of`` over the sample, scaled to [0, 1] (equal inputs keep
    equal ranks). For ``y`` non-decreasing in ``order_of`` the result is strictly increasing in it.
    Shapes: both ``[B, H, W]``.
    """
    _check(y)
    yc = y.to(torch.float64)
    ranks = torch.empty_like(yc)
    for i, row in enumerate(order_of.detach().to(torch.float64)):
        values, inverse = torch.unique(row, return_inverse=True)  # sorted: inverse is the dense rank
        ranks[i] = inverse.to(torch.float64) / max(1, values.numel() - 1)
    return ((1.0 - ORDER_STEP) * yc + ORDER_STEP * ranks).to(y.dtype)


def enhance(x: torch.Tensor, coe: float, *, strict_order: bool = False) -> torch.Tensor:
    """``sigmoid(coe * (x - mean) / std)`` per sample, std with Bessel's correction.

    ``coe`` sharpens the map: large values push it towards a binary mask. A constant map
    (std 0) gives 0.5 everywhere. A single-cell map has no Bessel std; it is treated as constant.
    ``strict_order``: the saturated top cells keep their input's order (:func:`keep_order`).
    """
    _check(x)
    xc = x.to(_compute_dtype(x))
    n = xc.shape[1] * xc.shape[2]
    mean = xc.mean(dim=(1, 2), keepdim=True)
    if n < 2:
        return torch.full_like(x, 0.5)
    std = xc.std(dim=(1, 2), keepdim=True)  # unbiased, as the official code (torch default)
    flat = std == 0
    z = (xc - mean) / torch.where(flat, torch.ones_like(std), std)
    z = torch.where(flat, torch.zeros_like(z), z)
    # clamp is a no-op on a sigmoid but kept for parity with the official code path
    out = torch.sigmoid(coe * z).clamp(0.0, 1.0)
    if strict_order:
        return keep_order(out, xc).to(x.dtype)
    return out.to(x.dtype)


def grid_kernel(kernel: int, grid_side: int, kernel_grid: int | None) -> int:
    """The mean-filter size for a map whose short side has ``grid_side`` tokens, when ``kernel``
    is defined for a ``kernel_grid`` grid: ``kernel * grid_side / kernel_grid`` rounded to the
    nearest odd size (halves round up), at least 1. ``kernel_grid=None`` keeps ``kernel``, and
    ``kernel=1`` (no filter) stays 1 on any grid.

    The short side is the model's own grid for every geometry (a tiled map's short side is one
    tile), so the filter covers the same share of what the model saw at its native scale.
    """
    if kernel_grid is None or kernel == 1:
        return kernel
    scaled = kernel * grid_side / kernel_grid
    return max(1, 2 * int(math.floor((scaled - 1) / 2 + 0.5)) + 1)


def box_filter(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``kernel x kernel`` mean filter, stride 1, replicate padding (``kernel`` odd, 1 = identity)."""
    _check(x)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {kernel}")
    if kernel == 1:
        return x.clone()
    pad = kernel // 2
    xc = x.to(_compute_dtype(x)).unsqueeze(1)  # [B, 1, H, W]
    padded = F.pad(xc, (pad, pad, pad, pad), mode="replicate")
    weight = torch.full((1, 1, kernel, kernel), 1.0 / kernel**2, dtype=xc.dtype, device=xc.device)
    # A convolution with 1/k^2 weights, like the official Conv2d, keeps rounding comparable.
    return F.conv2d(padded, weight).squeeze(1).to(x.dtype)


def soft_or(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Probabilistic OR of two maps in [0, 1]: ``a + b - a * b``."""
    return a + b - a * b


def merge_clip_maps(
    psi_cls: torch.Tensor,
    psi_comp: torch.Tensor | None,
    *,
    enhance_coe: float,
    kernel: int,
    kernel_grid: int | None = None,
    strict_order: bool = False,
) -> torch.Tensor:
    """The official ``merge_mask``: raw CLIP scores -> final mask in [0, 1].

    ``psi_comp`` is the raw text similarity of the output tokens (not yet inverted):
    ``maxmin`` performs the ``1 - sim`` inversion, so background "register" patches that match
    the text strongly are kept visible. ``None`` drops the complementary map.
    ``kernel_grid`` rescales ``kernel`` to the grid (:func:`grid_kernel`); ``strict_order`` keeps
    ``psi_cls``'s order through the enhance and where the soft OR saturates (:func:`keep_order`).
    Both off is the official computation.

    Shapes: ``psi_cls`` and ``psi_comp`` are ``[B, P, P]`` (``[B, R, C]`` tiled); returns the same.
    """
    k = grid_kernel(kernel, min(psi_cls.shape[1:]), kernel_grid)
    cls_map = box_filter(enhance(minmax(psi_cls), enhance_coe, strict_order=strict_order), k)
    if psi_comp is None:
        return minmax(cls_map)
    if psi_comp.shape != psi_cls.shape:
        raise ValueError(f"psi_cls {tuple(psi_cls.shape)} and psi_comp {tuple(psi_comp.shape)} differ")
    comp_map = box_filter(maxmin(psi_comp), k)
    merged = soft_or(cls_map, comp_map)
    if strict_order:  # where both maps are near 1 the OR saturates: the query's own map decides
        merged = keep_order(merged, cls_map)
    return minmax(merged)


def postprocess_single_map(attribution: torch.Tensor, *, enhance_coe: float, kernel: int,
                           kernel_grid: int | None = None, strict_order: bool = False) -> torch.Tensor:
    """Post-processing of a map with no complementary part: ``mean_k(enhance(minmax(x)))``.

    This is the official LVLM-path post-processing (no final re-normalisation); ``kernel_grid``
    and ``strict_order`` as in :func:`merge_clip_maps`.
    """
    k = grid_kernel(kernel, min(attribution.shape[1:]), kernel_grid)
    return box_filter(enhance(minmax(attribution), enhance_coe, strict_order=strict_order), k)


def final_mask(maps: Mapping[str, torch.Tensor], config: "MaskConfig") -> torch.Tensor:
    """The mask stage: raw token maps ``[B, h, w]`` by name -> the final mask ``[B, h, w]``.

    CLIP maps (``psi_cls``, optional ``psi_comp``) are merged (:func:`merge_clip_maps`); an
    LVLM's ``attention`` is post-processed alone (:func:`postprocess_single_map`), each with the
    config's ``enhance``, ``kernel``, ``kernel_grid`` and ``strict_order``. Every step is per
    sample, but float rounding is not batch-invariant: callers keep the batches the auxiliary
    computed (see :func:`attnprompt.pipeline.masks`).
    """
    if "attention" in maps:
        return postprocess_single_map(maps["attention"], enhance_coe=config.enhance, kernel=config.kernel,
                                      kernel_grid=config.kernel_grid, strict_order=config.strict_order)
    return merge_clip_maps(maps["psi_cls"], maps.get("psi_comp"), enhance_coe=config.enhance, kernel=config.kernel,
                           kernel_grid=config.kernel_grid, strict_order=config.strict_order)


def stitch(tile_maps: torch.Tensor, cells: "list[tuple[int, int]]", grid: tuple[int, int]) -> torch.Tensor:
    """Tile maps ``[N, p, p]`` placed at their ``(row, col)`` cells -> one ``[rows, cols]`` map.

    Where tiles overlap, a cell is the mean of the raw values of every tile that saw it. Stitching
    raw scores (before any min-max) is what makes the normalisation shared across tiles. A cell
    no tile covers is an error.
    """
    if tile_maps.dim() != 3 or len(cells) != tile_maps.shape[0]:
        raise ValueError(f"expected [N, p, p] maps for {len(cells)} tiles, got {tuple(tile_maps.shape)}")
    p_h, p_w = tile_maps.shape[1:]
    xc = tile_maps.to(_compute_dtype(tile_maps))
    total = xc.new_zeros(grid)
    count = xc.new_zeros(grid)
    for m, (r, c) in zip(xc, cells):
        if r < 0 or c < 0 or r + p_h > grid[0] or c + p_w > grid[1]:
            raise ValueError(f"tile at cell {(r, c)} does not fit a {grid} grid")
        total[r:r + p_h, c:c + p_w] += m
        count[r:r + p_h, c:c + p_w] += 1
    if bool((count == 0).any()):
        raise ValueError("the tiles leave cells of the grid uncovered")
    return (total / count).to(tile_maps.dtype)
