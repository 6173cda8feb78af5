"""The open_clip backend: custom configs, weight files (safely), clear errors."""

from __future__ import annotations

import pytest
import torch

from attnprompt import AttnPromptError, Prompter

from .conftest import requires_open_clip

pytestmark = requires_open_clip


@pytest.fixture(scope="module")
def cfg_and_weights(golden):
    return golden / "open_clip" / "model_cfg.json", golden / "open_clip" / "open_clip_model.safetensors"


def test_pt_weights_load_with_weights_only_and_match_safetensors(tmp_path, cfg_and_weights):
    from safetensors.torch import load_file

    cfg, st = cfg_and_weights
    pt = tmp_path / "weights.pt"
    torch.save(load_file(str(st)), pt)
    a = Prompter("tiny-a", model_config=str(cfg), pretrained=str(st), device="cpu")
    b = Prompter("tiny-b", model_config=str(cfg), pretrained=str(pt), device="cpu")
    pixels = torch.randn(2, 3, 64, 64)
    tokens = a.auxiliary.tokenize(["a red square", "the sky"])
    ta, _ = a.token_maps_from_tensors(pixels, tokens)
    tb, _ = b.token_maps_from_tensors(pixels, tokens)
    assert torch.allclose(ta.psi_cls, tb.psi_cls)


class Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path, cfg_and_weights, capsys):
    cfg, _ = cfg_and_weights
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, evil)
    with pytest.raises(AttnPromptError, match="cannot load open_clip model"):
        Prompter("tiny-evil", model_config=str(cfg), pretrained=str(evil), device="cpu")
    assert "pickle code ran" not in capsys.readouterr().out


def test_open_clip_errors_are_clear(tmp_path, cfg_and_weights, monkeypatch):
    cfg, st = cfg_and_weights
    with pytest.raises(AttnPromptError, match="does not know the architecture"):
        Prompter("ViT-Nonexistent-99", backend="open_clip", device="cpu")
    with pytest.raises(AttnPromptError, match="weights file .* does not exist"):
        Prompter("tiny-c", model_config=str(cfg), pretrained=str(tmp_path / "nope.safetensors"), device="cpu")
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 8}')
    with pytest.raises(AttnPromptError, match="not an open_clip model config"):
        Prompter("tiny-d", model_config=str(bad), device="cpu")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AttnPromptError, match="hf-hub:someorg/not-cached"):
        Prompter("hf-hub:someorg/not-cached", device="cpu")


def test_backend_guessing():
    from attnprompt.auxiliary.base import _guess_backend

    assert _guess_backend("ViT-B-16", None, None) == "open_clip"
    assert _guess_backend("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None, None) == "open_clip"
    assert _guess_backend("openai/clip-vit-large-patch14-336", None, None) == "hf"
    assert _guess_backend("anything", "laion2b_s34b_b88k", None) == "open_clip"


class OwnAttention(torch.nn.Module):
    """Not an nn.MultiheadAttention: an attention class like open_clip's development branch has,
    holding the same fused projections under the same names."""

    def __init__(self, mha: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        self.in_proj_weight = mha.in_proj_weight
        self.in_proj_bias = mha.in_proj_bias
        self.out_proj = mha.out_proj
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.head_dim = mha.head_dim

    def forward(self, q, k, v, need_weights=False, attn_mask=None):  # noqa: ARG002 - open_clip's call
        x = q if self.batch_first else q.transpose(0, 1)  # [B, T, D]
        b, t, d = x.shape
        qkv = torch.nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        qh, kh, vh = (p.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2) for p in qkv.chunk(3, dim=-1))
        out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask)
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, d))
        return (out if self.batch_first else out.transpose(0, 1)), None


def test_open_clip_attention_is_recognised_by_its_attributes_not_its_class(cfg_and_weights):
    from attnprompt.auxiliary.clip_openclip import _check_vit, is_fused_attention

    cfg, st = cfg_and_weights
    prompter = Prompter("tiny-own-attention", model_config=str(cfg), pretrained=str(st), device="cpu")
    visual = prompter.auxiliary.model.visual
    pixels = torch.randn(2, 3, 64, 64)
    tokens = prompter.auxiliary.tokenize(["a red square", "the sky"])
    before, mask_before = prompter.token_maps_from_tensors(pixels, tokens)

    for block in visual.transformer.resblocks:
        assert is_fused_attention(block.attn)
        block.attn = OwnAttention(block.attn)
        assert not isinstance(block.attn, torch.nn.MultiheadAttention) and is_fused_attention(block.attn)
    _check_vit("own-attention", visual)  # accepted: no error
    after, mask_after = prompter.token_maps_from_tensors(pixels, tokens)
    torch.testing.assert_close(after.psi_cls, before.psi_cls, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mask_after, mask_before, atol=1e-4, rtol=1e-4)

    broken = visual.transformer.resblocks[0].attn
    del broken.num_heads
    assert not is_fused_attention(broken)
    with pytest.raises(AttnPromptError, match="standard attention"):
        _check_vit("no-heads", visual)
