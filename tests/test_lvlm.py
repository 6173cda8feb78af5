"""LVLM auxiliary models: the captured map equals a slow eager reference, for every family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt import AttnPromptError, Prompter
from attnprompt.auxiliary.lvlm import LvlmAuxiliary, default_layer
from attnprompt.cli import main

FAMILIES = ["llava", "llava_next", "qwen2_vl"]


def builder(family: str):
    from attnprompt import testing_lvlm

    return {"llava": testing_lvlm.make_tiny_llava_dir, "llava_next": testing_lvlm.make_tiny_llava_next_dir,
            "qwen2_vl": testing_lvlm.make_tiny_qwen2_vl_dir}[family]


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request, tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    builder(request.param)(folder, seed=0)
    return request.param, folder


@pytest.fixture(scope="module")
def prompter(family_dir) -> Prompter:
    return Prompter(str(family_dir[1]), device="cpu")


def scenes() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (80, 48, 3), dtype=np.uint8))]


QUERIES = ["what color is the square", "is there a red circle in the picture"]


def reference_maps(aux: LvlmAuxiliary, folder: Path, images, queries, layers, reduction, max_new_tokens):
    """The slow way: generate, then one eager forward with output_attentions over the whole
    sequence; the map is read off the full attention matrices."""
    import transformers

    views = [aux.view(im, "aligned").image for im in images]
    inputs = aux.encode(views, queries)
    grids = aux.family.grids(aux, inputs)
    eos = aux._eos_ids()
    with torch.no_grad():
        seq = aux.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=aux.tokenizer.pad_token_id)
    prompt_len = inputs["input_ids"].shape[1]
    eager = getattr(transformers, aux.family.model_class).from_pretrained(str(folder), attn_implementation="eager").eval()
    full = dict(inputs)
    new = seq[:, prompt_len:]
    for name, value in inputs.items():  # per-token inputs grow with the answer (e.g. mm_token_type_ids)
        if name != "input_ids" and value.dim() == 2 and value.shape == inputs["input_ids"].shape:
            fill = torch.ones_like(new) if name == "attention_mask" else torch.zeros_like(new)
            full[name] = torch.cat([value, fill.to(value.dtype)], dim=1)
    full["input_ids"] = seq
    with torch.no_grad():
        out = eager(**full, output_attentions=True)
    maps = []
    for i, grid in enumerate(grids):
        gen = seq[i, prompt_len:].tolist()
        n_calls = next((j + 1 for j, t in enumerate(gen) if t in eos), len(gen))
        start, end = grid.span
        per_layer = []
        for layer in layers:
            attn = out.attentions[layer][i].float()  # [H, S, S]
            rows = []
            for j in range(n_calls):
                w = attn[:, prompt_len - 1 + j, start:end]
                rows.append((w / w.sum(-1, keepdim=True) if reduction == "official" else w).mean(0))
            per_layer.append(torch.stack(rows).mean(0))
        maps.append(torch.stack(per_layer).mean(0).reshape(grid.rows, grid.cols))
    return maps, seq[:, prompt_len:]


@pytest.mark.parametrize("reduction", ["official", "paper"])
def test_captured_map_equals_eager_reference_batched_left_padded(family_dir, prompter, reduction):
    family, folder = family_dir
    aux = prompter.auxiliary
    assert isinstance(aux, LvlmAuxiliary) and prompter.kind == "lvlm"
    n = aux.num_layers
    for layers in ((1,), (n - 1,), (0, 2)):
        results = prompter.annotate(scenes(), QUERIES, layers=layers, reduction=reduction, max_new_tokens=6)
        want, _ = reference_maps(aux, folder, scenes(), QUERIES, layers, reduction, 6)
        for res, ref in zip(results, want):
            assert res.attention.shape == tuple(ref.shape)
            assert np.abs(res.attention - ref.numpy()).max() <= 1e-5, (family, layers, reduction)
            assert res.answer
    # left padding really happened: the two prompts have different lengths
    enc = aux.encode([aux.view(im, "aligned").image for im in scenes()], QUERIES)
    assert (enc["attention_mask"][:, 0] == 0).any()


def test_grid_follows_the_processor(family_dir, prompter):
    family, _ = family_dir
    [wide, tall] = prompter.annotate(scenes(), QUERIES, max_new_tokens=3)
    if family == "qwen2_vl":
        assert wide.attention.shape[1] > wide.attention.shape[0]  # dynamic, not square
        assert tall.attention.shape[0] > tall.attention.shape[1]
    else:
        assert wide.attention.shape[0] == wide.attention.shape[1]
    assert wide.pixel_mask.shape == (48, 80) and tall.pixel_mask.shape == (80, 48)


def test_highlight_uses_only_the_tokens_that_spell_it(family_dir, prompter):
    aux = prompter.auxiliary
    [full] = prompter.annotate(scenes()[:1], QUERIES[:1], max_new_tokens=6)
    words = full.answer.split()
    word = words[-1] if words else full.answer
    [part] = prompter.annotate(scenes()[:1], QUERIES[:1], max_new_tokens=6, highlight=word)
    assert part.answer == full.answer
    tokens = aux.tokenizer(full.answer, add_special_tokens=False)["input_ids"]
    calls = aux.highlight_calls(tokens, word)
    assert 0 < len(calls) <= len(tokens)
    if len(calls) < len(tokens):
        assert not np.allclose(part.attention, full.attention)
    with pytest.raises(AttnPromptError, match="not in the auxiliary answer"):
        prompter.annotate(scenes()[:1], QUERIES[:1], max_new_tokens=6, highlight="zebra-unicorn-42")


def test_bad_input_gives_clear_errors(family_dir, prompter, monkeypatch):
    aux = prompter.auxiliary
    with pytest.raises(AttnPromptError, match="out of range.*language model"):
        prompter.annotate(scenes()[:1], QUERIES[:1], layers=(aux.num_layers,))
    with pytest.raises(AttnPromptError, match="empty"):
        prompter.annotate(scenes()[:1], ["   "])
    # an answer that ends at once: make the first greedy token the end-of-sequence token
    [first] = aux.answer([aux.view(scenes()[0], "aligned").image], QUERIES[:1], max_new_tokens=1)
    first_id = aux.tokenizer(first, add_special_tokens=False)["input_ids"][0]
    monkeypatch.setattr(aux.model.generation_config, "eos_token_id", first_id)
    with pytest.raises(AttnPromptError, match="answer .* is empty"):
        prompter.annotate(scenes()[:1], QUERIES[:1], max_new_tokens=4)
    monkeypatch.undo()
    monkeypatch.setattr(aux, "prompt", lambda q: q)  # no image placeholder in the prompt
    with pytest.raises(AttnPromptError, match="image"):
        prompter.annotate(scenes()[:1], QUERIES[:1], max_new_tokens=2)


def test_default_layer_rule():
    assert default_layer(32) == 20 and default_layer(40) == 20
    assert default_layer(24) == 15 and default_layer(4) == 2 and default_layer(1) == 0


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    return builder("llava")(tmp_path_factory.mktemp("llava_cli"), seed=1)


def test_cli_lvlm_single_manifest_and_self_prompt(llava_dir, tmp_path, capsys):
    folder = llava_dir  # the CLI path is family-independent; one family suffices
    img = tmp_path / "a.png"
    scenes()[0].save(img)
    out = tmp_path / "a_out.png"
    code = main(["annotate", str(img), "-q", QUERIES[0], "-o", str(out), "--aux", "lvlm", "--model", str(folder),
                 "--device", "cpu", "--layer", "1", "--reduction", "paper", "--max-new-tokens", "4", "--save-maps"])
    stdout = capsys.readouterr().out
    assert code == 0 and "auxiliary answer:" in stdout and out.exists()
    assert set(np.load(out.with_suffix(".npz")).files) == {"attention", "mask", "pixel_mask"}
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"id": "r1", "image": str(img), "question": QUERIES[1]}) + "\n")
    code = main(["annotate", "--manifest", str(manifest), "--out-dir", str(tmp_path / "o"), "--aux", "lvlm",
                 "--model", str(folder), "--device", "cpu", "--max-new-tokens", "4", "--quiet"])
    [rec] = [json.loads(l) for l in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    assert code == 0 and rec["status"] == "ok" and rec["answer"]
    code = main(["self-prompt", str(img), "-q", QUERIES[0], "--model", str(folder), "--device", "cpu",
                 "--max-new-tokens", "4", "-o", str(tmp_path / "self.png")])
    stdout = capsys.readouterr().out
    assert code == 0 and "answer on the original image:" in stdout and "answer on the annotated image:" in stdout
    code = main(["annotate", str(img), "-q", "x", "-o", str(out), "--model", str(folder), "--device", "cpu",
                 "--layer", "99"])
    assert code == 2 and "out of range" in capsys.readouterr().err


def test_clip_rejects_lvlm_only_options(capsys, tmp_path, tiny_clip_dir):
    img = tmp_path / "a.png"
    scenes()[0].save(img)
    code = main(["annotate", str(img), "-q", "x", "-o", str(tmp_path / "o.png"), "--model", str(tiny_clip_dir),
                 "--device", "cpu", "--highlight", "red"])
    assert code == 2 and "--highlight" in capsys.readouterr().err


def test_model_without_decoder_layers_is_refused():
    from attnprompt.auxiliary.lvlm import FAMILIES

    class NoLayers(torch.nn.Module):
        def get_decoder(self):
            return torch.nn.Linear(2, 2)

    class Proc:
        tokenizer = type("Tok", (), {"padding_side": "right"})()

    with pytest.raises(AttnPromptError, match="no decoder layers"):
        LvlmAuxiliary("odd-model", NoLayers(), Proc(), FAMILIES["llava"], torch.device("cpu"), torch.float32)


def test_one_call_annotate_with_an_lvlm(llava_dir):
    from attnprompt import annotate

    out = annotate(scenes(), QUERIES, aux=str(llava_dir), device="cpu", max_new_tokens=3, format="heatmap")
    assert [im.size for im in out] == [(80, 48), (48, 80)]


def test_lvlm_presets_by_name(llava_dir):
    p = Prompter(str(llava_dir), preset="paper", device="cpu")
    assert p.config.reduction == "paper" and p.config.gray == 200
    official = Prompter(str(llava_dir), preset="official", device="cpu")
    assert official.config.geometry == "stretch" and official.config.layers is None
    assert official.auxiliary.layers(official.config) == (2,)  # 4 layers: round(20 / 32 * 4)
    with pytest.raises(AttnPromptError, match="unknown lvlm preset"):
        Prompter(str(llava_dir), preset="paper-llava", device="cpu")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    return builder("qwen2_vl")(tmp_path_factory.mktemp("qwen_mixed"), seed=2)


def test_images_with_different_token_counts_in_one_batch(qwen_dir):
    # only Qwen2-VL's dynamic grid gives the images of one batch different token counts
    folder = qwen_dir
    prompter = Prompter(str(folder), device="cpu")
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))]
    results = prompter.annotate(images, QUERIES, layers=(1,), reduction="paper", max_new_tokens=4)
    assert results[0].attention.size != results[1].attention.size
    want, _ = reference_maps(prompter.auxiliary, folder, images, QUERIES, (1,), "paper", 4)
    for res, ref in zip(results, want):
        assert np.abs(res.attention - ref.numpy()).max() <= 1e-5
