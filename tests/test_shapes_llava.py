"""The tiny shapes LLaVA trainer: a few steps, a hub-style folder, the public loading paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from attnprompt.shapes import make_scene  # noqa: E402
from attnprompt.shapes.train_llava import (  # noqa: E402
    WORDS,
    TinyLlavaSpec,
    TrainConfig,
    _encode_batch,
    build_tokenizer,
    prompted_image,
    train,
)

SMALL = TinyLlavaSpec(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("llava") / "model"
    log = out.parent / "log.jsonl"
    cfg = TrainConfig(out=str(out), steps=4, batch_size=4, pool=12, refresh=2, warmup=2, log=str(log),
                      log_every=1, checkpoint_every=3, probe_scenes=0, threads=1)
    summary = train(cfg, SMALL, verbose=False)
    return out, log, summary


def test_folder_loads_like_a_hub_checkpoint(trained):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPModel

    from attnprompt.auxiliary.base import shipped_model

    out, log, summary = trained
    assert summary["steps"] == 4 and summary["stopped"] == "steps"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    steps = [json.loads(line) for line in log.read_text().splitlines() if '"step"' in line]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in steps)

    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert model.config.text_config.model_type == "llama" and model.config.vision_feature_layer == -2
    # the vision tower is the shipped CLIP's, unchanged by training (it is frozen)
    clip = CLIPModel.from_pretrained(shipped_model("shapes-clip"))
    for name, value in clip.vision_model.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], value), name
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color is the star?"}]}],
        add_generation_prompt=True)
    assert prompt == "USER: <image>\nwhat color is the star? ASSISTANT:"
    inputs = processor(images=[make_scene(1).image], text=[prompt], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 64


def test_second_stage_goes_on_from_a_saved_model(trained, tmp_path):
    import torch
    from transformers import LlavaForConditionalGeneration

    first, _, _ = trained
    out = tmp_path / "stage2"
    cfg = TrainConfig(out=str(out), init=str(first), seed=1, steps=2, batch_size=4, pool=8, refresh=0, warmup=1,
                      tune_vision=True, vision_lr_scale=1.0, probe_scenes=0, threads=1, checkpoint_every=0)
    summary = train(cfg, verbose=False)
    assert summary["steps"] == 2
    before = LlavaForConditionalGeneration.from_pretrained(first).state_dict()
    after = LlavaForConditionalGeneration.from_pretrained(out).state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("vision_tower" in k for k in changed) and any("language_model" in k for k in changed)
    # the small spec of the first stage is kept, not replaced by the default one
    assert json.loads((out / "tiny_llava_spec.json").read_text())["hidden"] == SMALL.hidden
    assert (out / "generation_config.json").read_text() == (first / "generation_config.json").read_text()


def test_public_lvlm_path_answers_and_maps(trained):
    from attnprompt import Prompter

    out, _, _ = trained
    prompter = Prompter(str(out), device="cpu", max_new_tokens=3)
    [ann] = prompter.annotate(make_scene(3).image, "what shape is the red object?")
    assert ann.attention.shape == (8, 8) and ann.answer is not None
    assert set(ann.answer.split()) <= set(WORDS)  # special tokens are never generated


def test_answers_are_supervised_and_prompts_are_not():
    tok = build_tokenizer()
    scene = make_scene(5)
    queries = scene.queries()[:3]
    ids, attention, labels = _encode_batch(tok, queries, 64, tok.convert_tokens_to_ids("<image>"))
    for row, q in enumerate(queries):
        n = int(attention[row].sum())
        supervised = labels[row][labels[row] != -100].tolist()
        assert supervised == tok(q.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids[row, n - len(supervised):n].tolist() == supervised  # answers end each row
        assert int((ids[row] == tok.convert_tokens_to_ids("<image>")).sum()) == 64
    assert all(tok(w, add_special_tokens=False)["input_ids"] != [tok.unk_token_id] for w in WORDS)


def test_prompted_image_keeps_the_target_and_dims_the_rest():
    scene = make_scene(9, n_objects=(3, 3), noise=0.0)
    rng = np.random.default_rng(0)
    img = np.asarray(prompted_image(scene, 0, rng), np.float32)
    orig = np.asarray(scene.image, np.float32)
    target = scene.masks[0]
    change_in = np.abs(img[target] - orig[target]).mean()
    change_out = np.abs(img[~target] - orig[~target]).mean()
    assert change_in < change_out
