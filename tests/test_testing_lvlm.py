"""The tiny offline LVLM checkpoints load and run through the public hub path (attnprompt.testing_lvlm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt import testing_lvlm

FAMILIES = ["llava", "llava_next", "qwen2_vl"]
BUILDERS = {"llava": testing_lvlm.make_tiny_llava_dir, "llava_next": testing_lvlm.make_tiny_llava_next_dir,
            "qwen2_vl": testing_lvlm.make_tiny_qwen2_vl_dir}
MODEL_CLASSES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
                 "qwen2_vl": "Qwen2VLForConditionalGeneration"}
# different lengths, so that the shorter prompt really is left-padded
QUERIES = ["what color is the square?", "is there a red circle in the top left of the picture?"]


def torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return is_torchvision_available()


def images() -> list[Image.Image]:
    """A wide (40x24) and a tall (24x40) noise image: different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8))]


def conversation(query: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, tmp_path_factory) -> tuple[str, Path, object, object]:
    family = request.param
    if family == "qwen2_vl" and not torchvision_available():
        pytest.skip("transformers' Qwen2-VL processor needs torchvision")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = BUILDERS[family](tmp_path_factory.mktemp(family), seed=0)
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    return family, folder, processor, model


def encode(processor, queries=QUERIES, imgs=None) -> dict:
    processor.tokenizer.padding_side = "left"
    prompts = [processor.apply_chat_template(conversation(q), add_generation_prompt=True) for q in queries]
    return processor(images=imgs if imgs is not None else images(), text=prompts, return_tensors="pt", padding=True)


def llava_next_token_count(height: int, width: int, side: int, patch: int, pinpoints: list[list[int]]) -> int:
    """Independent re-derivation of LLaVA-NeXT's count: base grid + unpadded tile grid + one newline per row."""
    best, best_key = None, None
    for canvas_h, canvas_w in pinpoints:  # the canvas keeping most of the image's resolution, then least waste
        scale = min(canvas_w / width, canvas_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        key = (effective, -(canvas_w * canvas_h - effective))
        if best_key is None or key > best_key:
            best, best_key = (canvas_h, canvas_w), key
    per_tile = side // patch
    rows, cols = best[0] // side * per_tile, best[1] // side * per_tile
    if width / height > cols / rows:
        rows -= 2 * ((rows - int(round(height * cols / width, 7))) // 2)
    else:
        cols -= 2 * ((cols - int(round(width * rows / height, 7))) // 2)
    return per_tile**2 + rows * (cols + 1)


def test_loads_through_the_auto_classes_with_matching_ids(loaded):
    family, folder, processor, model = loaded
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "processor_config.json", "chat_template.jinja"} <= names
    assert type(model).__name__ == MODEL_CLASSES[family]
    tok = processor.tokenizer
    config = model.config
    assert config.image_token_id == tok.convert_tokens_to_ids(processor.image_token) == processor.image_token_id
    assert tok.unk_token == "<unk>" and tok.pad_token_id is not None and tok.eos_token_id is not None
    text = config.text_config
    assert text.num_key_value_heads < text.num_attention_heads  # grouped-query attention
    assert text.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    if family == "qwen2_vl":
        assert processor.image_token == "<|image_pad|>"
        assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
        assert config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
        assert tok.bos_token is None and tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    else:
        assert processor.image_token == "<image>" and config.image_token_index == config.image_token_id
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
        assert config.vision_feature_select_strategy == processor.vision_feature_select_strategy == "default"
        assert processor.patch_size == config.vision_config.patch_size


def test_chat_template_and_tokenizer(loaded):
    family, _, processor, _ = loaded
    tok = processor.tokenizer
    prompt = processor.apply_chat_template(conversation("what is it?"), add_generation_prompt=True)
    if family == "qwen2_vl":
        assert prompt == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>what is it?<|im_end|>\n"
                          "<|im_start|>assistant\n")
        assert tok("what")["input_ids"] == [tok.convert_tokens_to_ids("what")]  # no BOS
    else:
        assert prompt == "USER: <image>\nwhat is it? ASSISTANT:"
        assert tok("what")["input_ids"] == [tok.bos_token_id, tok.convert_tokens_to_ids("what")]
    ids = tok("What COLOR is 42 zebra?", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["what", "color", "is", "4", "2", "<unk>", "?"]
    answer = [tok.convert_tokens_to_ids(t) for t in ["the", "red", "circle", ",", "1", "."]]
    text = tok.decode(answer)
    assert text == "the red circle, 1."
    assert tok(text, add_special_tokens=False)["input_ids"] == answer  # answers round-trip


def test_image_tokens_match_the_config(loaded):
    family, _, processor, model = loaded
    inputs = encode(processor)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all()  # left padding
    positions = [torch.nonzero(row == model.config.image_token_id).flatten() for row in ids]
    counts = [p.numel() for p in positions]
    assert all(int(p[-1] - p[0]) + 1 == p.numel() for p in positions)  # one contiguous span per prompt
    vision = model.config.vision_config
    if family == "llava":
        assert counts == [(vision.image_size // vision.patch_size) ** 2] * 2 == [16, 16]
        assert tuple(inputs["pixel_values"].shape) == (2, 3, 32, 32)  # short side resized, centre crop
    elif family == "llava_next":
        side, patch = vision.image_size, vision.patch_size
        pinpoints = model.config.image_grid_pinpoints
        want = [llava_next_token_count(h, w, side, patch, pinpoints) for w, h in (im.size for im in images())]
        assert counts == want == [44, 46]
        assert min(counts) > (side // patch) ** 2
        assert inputs["image_sizes"].tolist() == [[24, 40], [40, 24]]
    else:
        merge = vision.spatial_merge_size
        thw = inputs["image_grid_thw"].tolist()
        assert counts == [t * h * w // merge**2 for t, h, w in thw]
        [(t0, h0, w0), (t1, h1, w1)] = thw
        assert t0 == t1 == 1 and w0 > h0 and h1 > w1  # the aspect ratio survives (smart_resize, no crop)
        ip = processor.image_processor
        for _, h, w in thw:
            assert h % merge == w % merge == 0
            assert ip.size["shortest_edge"] <= h * w * vision.patch_size**2 <= ip.size["longest_edge"]


def test_greedy_generation_batched_left_padded(loaded):
    family, _, processor, model = loaded
    inputs = encode(processor)
    length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and length < out.shape[1] <= length + 5
    assert torch.equal(out[:, :length], inputs["input_ids"])
    tok = processor.tokenizer
    new = out[:, length:]
    specials = set(tok.all_special_ids) - {tok.eos_token_id, tok.pad_token_id}
    assert not specials & set(new.flatten().tolist())  # suppressed in the generation config
    assert (new[:, 0] != tok.eos_token_id).all()  # answers are never empty
    # padding does not change the answer: each row alone gives the same tokens
    for i, (query, image) in enumerate(zip(QUERIES, images())):
        single = encode(processor, [query], [image])
        with torch.no_grad():
            alone = model.generate(**single, max_new_tokens=5, do_sample=False)[0, single["input_ids"].shape[1]:]
        row = new[i][: len(alone)]
        assert torch.equal(row, alone), (family, i)


def test_weights_are_not_degenerate(loaded):
    family, _, processor, model = loaded
    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    inputs = encode(processor, [QUERIES[0]] * 3, imgs)
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
    # the image matters: the next-token logits move with it about as much as they vary over the vocabulary
    assert logits.std(0).mean() > 0.1 * logits.std(1).mean()
    # attention is far from uniform (eager attention returns the weights)
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attentions = model(**encode(processor, QUERIES[:1], images()[:1]), output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    last = attentions[-1][0, :, -1]  # [heads, keys]: the last position of the prompt
    assert last.max() > 5.0 / last.shape[-1]
    assert not torch.allclose(last[0], last[1])


@pytest.mark.parametrize("loaded", ["llava_next"], indirect=True)
def test_llava_next_base_image_tokens_come_first(loaded):
    _, _, processor, model = loaded
    inputs = encode(processor)
    captured = {}

    def grab(module, args, kwargs):
        captured.setdefault("embeds", kwargs["inputs_embeds"].detach().clone())

    inner = model.model
    handle = inner.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    embeds = captured["embeds"]
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    with torch.no_grad():
        base_views = inputs["pixel_values"][:, 0]  # view 0 of each image: the whole image squashed to a square
        hidden = inner.vision_tower(base_views, output_hidden_states=True).hidden_states[-2][:, 1:]
        base = inner.multi_modal_projector(hidden)  # [2, side * side, hidden]
    for i, row in enumerate(inputs["input_ids"]):
        pos = torch.nonzero(row == model.config.image_token_id).flatten()
        torch.testing.assert_close(embeds[i, pos[: side * side]], base[i], rtol=1e-4, atol=1e-5)
        # after the base grid: tile rows, each closed by the learned newline vector
        tiles = embeds[i, pos[side * side:]]
        is_newline = torch.isclose(tiles, inner.image_newline.expand_as(tiles), atol=1e-6).all(-1)
        assert is_newline[-1] and 0 < int(is_newline.sum()) < tiles.shape[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_weights(family, tmp_path):
    if family == "qwen2_vl" and not torchvision_available():
        pytest.skip("transformers' Qwen2-VL processor needs torchvision")
    from safetensors.torch import load_file

    state = torch.random.get_rng_state()
    a = load_file(BUILDERS[family](tmp_path / "a", seed=3) / "model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    b = load_file(BUILDERS[family](tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(BUILDERS[family](tmp_path / "c", seed=4) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # biases and norm affines are randomised too
    assert any(k.endswith("bias") and a[k].abs().max() > 0 for k in a)
    norms = [k for k in a if "norm" in k and k.endswith("weight")]
    assert norms and all(not torch.allclose(a[k], torch.ones_like(a[k])) for k in norms)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eos token"):
        testing_lvlm.build_word_tokenizer(["cat"], ["<pad>"], eos="</s>")
    with pytest.raises(ValueError, match="letters"):
        testing_lvlm.build_word_tokenizer(["w1"], ["</s>"], eos="</s>")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        testing_lvlm.make_tiny_llava_dir("unused", image_size=30, patch_size=8)
