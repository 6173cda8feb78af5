"""The CLIP decomposition is exact, and the fast path computes exactly that decomposition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnprompt.auxiliary.clip_common import cls_attention_contributions
from attnprompt.auxiliary.clip_hf import HFClip
from attnprompt.testing import random_clip_model, tiny_clip_config


@pytest.fixture(scope="module")
def tiny() -> HFClip:
    config = tiny_clip_config(layers=3, width=48, heads=4, image_size=40, patch_size=8, projection_dim=24)
    model = random_clip_model(config, seed=3)
    return HFClip("tiny", model, processor=None, tokenizer=None, device=torch.device("cpu"), dtype=torch.float32)


def reference_parts(aux: HFClip, pixels: torch.Tensor):
    """Every additive part of the final CLS residual, using the model's own modules."""
    vision = aux.model.vision_model
    out = vision(pixel_values=pixels, output_hidden_states=True)
    hidden = out.hidden_states  # L + 1 tensors [B, T, D]; hidden[0] is after pre_layrnorm
    parts = {"embedding": hidden[0][:, :1]}
    for l, layer in enumerate(vision.encoder.layers):
        h = layer.layer_norm1(hidden[l])
        parts[f"eta{l}"] = cls_attention_contributions(h, aux.tower.attention_weights(l))  # ours, [B, T, D]
        attn_out = layer.self_attn(h)[0]  # the model's own attention (SDPA)
        parts[f"attn{l}"] = attn_out[:, :1]
        parts[f"mlp{l}"] = layer.mlp(layer.layer_norm2(hidden[l] + attn_out))[:, :1]
    return out, parts


def test_contributions_sum_to_image_features(tiny):
    torch.manual_seed(0)
    pixels = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        out, parts = reference_parts(tiny, pixels)
        features, final_cls = tiny.tower.encode_image(pixels)
        readout = tiny.tower.readout
        mu, sigma = readout.stats(final_cls)
        num = tiny.tower.num_layers
        tokens = parts["eta0"].shape[1]
        n_parts = 2 * num + 1
        total = readout.linear(parts["embedding"], 1 / n_parts, mu, sigma)[:, 0]
        for l in range(num):
            # per-token attention contributions, bias share included, through LN_lin and Proj
            total = total + readout.linear(parts[f"eta{l}"], 1 / (n_parts * tokens), mu, sigma).sum(1)
            total = total + readout.linear(parts[f"mlp{l}"], 1 / n_parts, mu, sigma)[:, 0]
        model_features = tiny.model.visual_projection(tiny.model.vision_model.post_layernorm(out.last_hidden_state[:, 0]))
    assert torch.allclose(features, model_features, atol=1e-6)
    assert (total - features).abs().max().item() <= 1e-5
    # and the decomposition is not trivially satisfied: each attention part matters
    for l in range(num):
        assert parts[f"eta{l}"].sum(1).abs().max() > 1e-2
        assert torch.allclose(parts[f"eta{l}"].sum(1), parts[f"attn{l}"][:, 0], atol=1e-5)


def test_fast_maps_equal_decomposition_dotted_with_text(tiny):
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 40, 40)
    text = torch.randn(2, tiny.model.config.projection_dim)
    from attnprompt.auxiliary.clip_common import compute_token_maps

    tm = compute_token_maps(tiny.tower, pixels, text, layers=(0, 2), comp_layer=1)
    with torch.no_grad():
        out, parts = reference_parts(tiny, pixels)
        features, final_cls = tiny.tower.encode_image(pixels)
        readout = tiny.tower.readout
        mu, sigma = readout.stats(final_cls)
        t_hat = nn.functional.normalize(text, dim=-1)
        n_parts, tokens = 2 * tiny.tower.num_layers + 1, parts["eta0"].shape[1]
        norm = features.norm(dim=-1)

        def sim(vectors: torch.Tensor) -> torch.Tensor:  # [B, T, E] -> [B, T]
            return torch.einsum("bte,be->bt", vectors, t_hat) / norm[:, None]

        want_cls = sum(sim(readout.linear(parts[f"eta{l}"], 1 / (n_parts * tokens), mu, sigma)) for l in (0, 2))
        residual_after_1 = out.hidden_states[2]
        want_comp = sim(readout.linear(residual_after_1, 5 / n_parts, mu, sigma))
    side = int((tokens - 1) ** 0.5)
    assert torch.allclose(tm.psi_cls, want_cls[:, 1:].reshape(2, side, side), atol=1e-6)
    assert torch.allclose(tm.psi_comp, want_comp[:, 1:].reshape(2, side, side), atol=1e-6)
    assert tm.layers == (0, 2) and tm.comp_layer == 1


def test_layer_sum_negative_indices_and_batch_independence(tiny):
    from attnprompt.auxiliary.clip_common import compute_token_maps

    torch.manual_seed(2)
    pixels = torch.randn(3, 3, 40, 40)
    text = torch.randn(3, tiny.model.config.projection_dim)
    both = compute_token_maps(tiny.tower, pixels, text, layers=(-1, -3), comp_layer=-1)
    first = compute_token_maps(tiny.tower, pixels, text, layers=(0,), comp_layer=None)
    last = compute_token_maps(tiny.tower, pixels, text, layers=(2,), comp_layer=2)
    assert both.layers == (0, 2) and both.comp_layer == 2 and first.psi_comp is None
    assert torch.allclose(both.psi_cls, first.psi_cls + last.psi_cls, atol=1e-6)
    single = compute_token_maps(tiny.tower, pixels[1:2], text[1:2], layers=(-1, -3), comp_layer=-1)
    assert torch.allclose(single.psi_cls[0], both.psi_cls[1], atol=1e-6)
    assert torch.allclose(single.psi_comp[0], both.psi_comp[1], atol=1e-6)


def test_hooks_are_removed_and_model_unchanged(tiny):
    from attnprompt.auxiliary.clip_common import compute_token_maps

    pixels = torch.randn(1, 3, 40, 40)
    text = torch.randn(1, tiny.model.config.projection_dim)
    impl = tiny.model.config._attn_implementation
    compute_token_maps(tiny.tower, pixels, text, layers=(1,), comp_layer=1)  # transformers adds its own hooks once
    before = {name: dict(m._forward_hooks) for name, m in tiny.model.named_modules()}
    compute_token_maps(tiny.tower, pixels, text, layers=(0, 1, 2), comp_layer=0)
    after = {name: dict(m._forward_hooks) for name, m in tiny.model.named_modules()}
    assert before == after
    assert tiny.model.config._attn_implementation == impl


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_maps_close_to_fp32(tiny, dtype):
    from attnprompt.auxiliary.clip_common import compute_token_maps
    from attnprompt.maps import merge_clip_maps

    torch.manual_seed(4)
    pixels = torch.randn(2, 3, 40, 40)
    text = torch.randn(2, tiny.model.config.projection_dim)
    ref = compute_token_maps(tiny.tower, pixels, text, layers=(-2,), comp_layer=-2)
    half_model = random_clip_model(tiny.model.config, seed=3).to(dtype)
    half = HFClip("tiny", half_model, None, None, torch.device("cpu"), dtype)
    got = compute_token_maps(half.tower, pixels.to(dtype), text.to(dtype), layers=(-2,), comp_layer=-2)
    assert got.psi_cls.dtype == torch.float32 and torch.isfinite(got.psi_cls).all()
    ref_mask = merge_clip_maps(ref.psi_cls, ref.psi_comp, enhance_coe=5, kernel=3)
    got_mask = merge_clip_maps(got.psi_cls, got.psi_comp, enhance_coe=5, kernel=3)
    assert (ref_mask - got_mask).abs().mean() < 0.05


@pytest.mark.parametrize("layer_scale", [False, True])
def test_fast_scores_equal_the_explicit_contributions(tiny, layer_scale):
    import dataclasses

    from attnprompt.auxiliary.clip_common import cls_attention_scores

    torch.manual_seed(5)
    weights = tiny.tower.attention_weights(1)
    if layer_scale:
        weights = dataclasses.replace(weights, layer_scale=torch.rand(weights.w_o.shape[0]) + 0.5)
    hidden = torch.randn(3, 26, weights.w_o.shape[0])
    direction = torch.randn(weights.w_o.shape[0], 3)
    with torch.no_grad():
        slow = torch.einsum("btd,db->bt", cls_attention_contributions(hidden, weights), direction)
        fast = cls_attention_scores(hidden, weights, direction)
    assert torch.allclose(fast, slow, atol=1e-5)
