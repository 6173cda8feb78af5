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
