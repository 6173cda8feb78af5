"""Pure mask math: definitions from METHOD.md, batching, dtypes, degenerate maps."""

from __future__ import annotations

import pytest
import torch

from attnprompt.maps import (
    ORDER_STEP,
    box_filter,
    enhance,
    grid_kernel,
    keep_order,
    maxmin,
    merge_clip_maps,
    minmax,
    postprocess_single_map,
    soft_or,
)


def official_box(x: torch.Tensor, k: int) -> torch.Tensor:
    """The official Conv2d with replicate padding, on [P, P]."""
    conv = torch.nn.Conv2d(1, 1, kernel_size=k, padding=(k - 1) // 2, padding_mode="replicate", bias=False)
    conv.weight.data = torch.ones_like(conv.weight.data) / k**2
    with torch.no_grad():
        return conv(x[None, None])[0, 0]


def test_minmax_maxmin_definitions():
    x = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[-1.0, -1.0], [0.0, 1.0]]])
    assert torch.allclose(minmax(x)[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.allclose(maxmin(x)[0], torch.tensor([[1.0, 0.5], [0.75, 0.0]]))
    assert torch.allclose(minmax(x)[1], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))  # per sample


def test_enhance_uses_bessel_std_and_coefficient():
    x = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    z = (x - 1.5) / torch.tensor([0.0, 1.0, 2.0, 3.0]).std(unbiased=True)
    assert torch.allclose(enhance(x, 5.0), torch.sigmoid(5.0 * z))
    assert torch.allclose(enhance(x, 1.0), torch.sigmoid(z))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_box_filter_matches_official_conv(k):
    torch.manual_seed(0)
    x = torch.rand(3, 7, 7)
    got = box_filter(x, k)
    for i in range(3):
        assert torch.allclose(got[i], official_box(x[i], k), atol=1e-6)


def test_box_filter_rejects_even_or_nonpositive_kernel():
    for k in (0, 2, 4, -1):
        with pytest.raises(ValueError, match="odd"):
            box_filter(torch.rand(1, 4, 4), k)


def test_constant_maps_give_all_ones_no_nan():
    flat = torch.full((2, 5, 5), 3.0)
    assert torch.equal(minmax(flat), torch.ones_like(flat))
    assert torch.equal(maxmin(flat), torch.ones_like(flat))
    assert torch.equal(enhance(flat, 5.0), torch.full_like(flat, 0.5))
    mask = merge_clip_maps(flat, flat, enhance_coe=5.0, kernel=3)
    assert torch.equal(mask, torch.ones_like(flat))
    single = postprocess_single_map(flat, enhance_coe=5.0, kernel=3)
    assert torch.isfinite(single).all()
    # one constant sample in a batch leaves the others untouched
    mixed = torch.stack([torch.full((5, 5), 2.0), torch.rand(5, 5)])
    out = merge_clip_maps(mixed, mixed, enhance_coe=5.0, kernel=3)
    assert torch.equal(out[0], torch.ones(5, 5)) and out[1].min() == 0 and out[1].max() == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_preserved_and_close(dtype):
    torch.manual_seed(1)
    a, b = torch.randn(2, 6, 6), torch.randn(2, 6, 6)
    ref = merge_clip_maps(a, b, enhance_coe=5.0, kernel=3)
    got = merge_clip_maps(a.to(dtype), b.to(dtype), enhance_coe=5.0, kernel=3)
    assert got.dtype == dtype
    tol = {torch.float16: 1e-2, torch.bfloat16: 6e-2}.get(dtype, 1e-6)
    assert (got.float() - ref).abs().max() <= tol


def test_merge_equals_official_formula():
    torch.manual_seed(2)
    cls, comp = torch.randn(4, 8, 8), torch.randn(4, 8, 8)
    got = merge_clip_maps(cls, comp, enhance_coe=5.0, kernel=3)
    for i in range(4):
        c = cls[i]
        c = (c - c.min()) / (c.max() - c.min())
        c = torch.sigmoid(5.0 * (c - c.mean()) / c.std()).clamp(0, 1)
        p = (comp[i].max() - comp[i]) / (comp[i].max() - comp[i].min())
        c, p = official_box(c, 3), official_box(p, 3)
        s = c + p - c * p
        want = (s - s.min()) / (s.max() - s.min())
        assert torch.allclose(got[i], want, atol=1e-6)


def test_merge_is_invariant_to_positive_affine_changes_of_raw_scores():
    torch.manual_seed(3)
    cls, comp = torch.randn(2, 6, 6), torch.randn(2, 6, 6)
    a = merge_clip_maps(cls, comp, enhance_coe=5.0, kernel=3)
    b = merge_clip_maps(3.0 * cls + 7.0, 0.5 * comp - 2.0, enhance_coe=5.0, kernel=3)
    assert torch.allclose(a, b, atol=1e-5)


def test_soft_or_and_complementary_inversion():
    a, b = torch.tensor([[[0.0, 1.0, 0.5]]]), torch.tensor([[[0.0, 0.0, 0.5]]])
    assert torch.allclose(soft_or(a, b), torch.tensor([[[0.0, 1.0, 0.75]]]))
    # high text similarity of an output token -> low mask from psi_comp
    cls = torch.zeros(1, 3, 3)
    cls[0, 0, 0] = 1.0
    comp = torch.zeros(1, 3, 3)
    comp[0, 2, 2] = 10.0
    mask = merge_clip_maps(cls, comp, enhance_coe=1.0, kernel=1)
    assert mask[0, 2, 2] < mask[0, 1, 1]


def test_shape_and_type_errors():
    with pytest.raises(ValueError):
        minmax(torch.rand(4, 4))
    with pytest.raises(TypeError):
        minmax(torch.ones(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError):
        merge_clip_maps(torch.rand(1, 4, 4), torch.rand(1, 5, 5), enhance_coe=1, kernel=1)


@pytest.mark.parametrize("kernel, side, want", [(3, 24, 3), (3, 8, 1), (3, 14, 1), (3, 16, 3), (3, 32, 5),
                                                (5, 24, 5), (1, 48, 1), (3, 48, 7)])
def test_grid_kernel_scales_the_official_kernel_to_the_grid(kernel, side, want):
    assert grid_kernel(kernel, side, 24) == want
    assert grid_kernel(kernel, side, None) == kernel  # official: the kernel in tokens on any grid


def test_kernel_grid_is_the_official_merge_on_24x24_and_smaller_elsewhere():
    torch.manual_seed(0)
    a, b = torch.randn(2, 24, 24), torch.randn(2, 24, 24)
    assert torch.equal(merge_clip_maps(a, b, enhance_coe=5, kernel=3, kernel_grid=24),
                       merge_clip_maps(a, b, enhance_coe=5, kernel=3))
    small = torch.randn(1, 8, 8)
    assert torch.equal(postprocess_single_map(small, enhance_coe=5, kernel=3, kernel_grid=24),
                       postprocess_single_map(small, enhance_coe=5, kernel=1))
    # a tiled map: its short side is one tile's grid, so the kernel is the tile's
    wide = torch.randn(1, 8, 16)
    assert torch.equal(merge_clip_maps(wide, None, enhance_coe=5, kernel=3, kernel_grid=24),
                       merge_clip_maps(wide, None, enhance_coe=5, kernel=1))


def test_official_enhance_saturates_into_ties_and_strict_order_keeps_the_raw_order():
    x = torch.zeros(1, 8, 8)
    x[0, 0, :3] = torch.tensor([100.0, 101.0, 102.0])  # three peaks far above the rest (z ~ 4.5)
    official = enhance(x, 5.0)
    assert (official[0, 0, :3] == 1.0).all()  # float32 sigmoid(5 z) is exactly 1 above z ~ 3.3: ties
    strict = enhance(x, 5.0, strict_order=True)
    assert (torch.diff(strict[0, 0, :3]) > 0).all() and int(strict.flatten().argmax()) == 2
    assert (strict - official).abs().max() <= ORDER_STEP  # half a gray level at most
    assert strict[0, 1, 0] == strict[0, 7, 7]  # equal raw values stay equal


def test_strict_final_mask_points_where_psi_cls_does_when_the_soft_or_saturates():
    torch.manual_seed(1)
    cls = torch.randn(1, 8, 8)
    cls[0, 5, 6] = 9.0
    comp = torch.randn(1, 8, 8)
    comp[0, 5, 6] = comp.min() - 1  # maxmin(comp) = 1 there and in a few more cells...
    comp[0, :2, :] = comp.min()  # ...the inverted complementary map saturates the OR
    mask = merge_clip_maps(cls, comp, enhance_coe=5, kernel=1, strict_order=True)
    assert int(mask.flatten().argmax()) == 5 * 8 + 6
    assert (mask == mask.max()).sum() == 1
    plain = merge_clip_maps(cls, comp, enhance_coe=5, kernel=1)
    assert (plain == 1).sum() > 1  # the official merge has ties at the top
    assert (mask - plain).abs().max() <= 2 * ORDER_STEP


def test_keep_order_is_a_small_monotone_change():
    y = torch.tensor([[[0.0, 1.0, 1.0, 1.0]]])
    order = torch.tensor([[[0.0, 1.0, 3.0, 2.0]]])
    out = keep_order(y, order)
    assert out[0, 0, 2] > out[0, 0, 3] > out[0, 0, 1] > out[0, 0, 0]
    assert (out - y).abs().max() <= ORDER_STEP
