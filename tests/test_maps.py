"""Pure mask math: definitions from METHOD.md, batching, dtypes, degenerate maps."""

from __future__ import annotations

import pytest
import torch

from attnprompt.maps import box_filter, enhance, maxmin, merge_clip_maps, minmax, postprocess_single_map, soft_or


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
