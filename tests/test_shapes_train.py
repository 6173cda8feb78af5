"""The tiny shapes CLIP trainer: a few steps, a loadable folder, a word-level tokenizer, the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from attnprompt.shapes import make_scene  # noqa: E402
from attnprompt.shapes.train_clip import (  # noqa: E402
    WORDS,
    TinyClipSpec,
    TrainConfig,
    build_vocab,
    clip_loss,
    train,
    write_tokenizer_files,
)

SMALL = TinyClipSpec(layers=2, text_layers=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip") / "model"
    log = out.parent / "log.jsonl"
    cfg = TrainConfig(out=str(out), steps=5, batch_size=8, pool=24, refresh=2, warmup=2,
                      log=str(log), log_every=1, checkpoint_every=3, probe_scenes=0)
    summary = train(cfg, SMALL, verbose=False)
    return out, log, summary


def test_folder_has_hub_files(trained):
    out, log, summary = trained
    assert summary["steps"] == 5 and summary["stopped"] == "steps"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    assert all({"loss", "lr", "elapsed"} <= set(r) for r in steps)
    assert all(np.isfinite(r["loss"]) for r in steps)


def test_loads_with_transformers_and_prompter(trained):
    import torch
    from transformers import AutoImageProcessor, CLIPModel

    from attnprompt import Prompter

    out, _, _ = trained
    model = CLIPModel.from_pretrained(out)
    assert model.config.vision_config.image_size == 64 and model.config.vision_config.patch_size == 8
    assert model.config.vision_config.hidden_act == "quick_gelu"
    proc = AutoImageProcessor.from_pretrained(out)
    assert proc.crop_size == {"height": 64, "width": 64}
    scene = make_scene(3)
    prompter = Prompter(str(out), device="cpu", layers=(0, 1), comp_layer=None)
    [ann] = prompter.annotate(scene.image, scene.queries()[0].text)
    assert ann.psi_cls.shape == (8, 8) and np.isfinite(ann.psi_cls).all()
    assert ann.pixel_mask.shape == (64, 64)
    with torch.no_grad():  # the default preset (psi_comp too) runs as well
        [ann2] = Prompter(str(out), device="cpu").annotate(scene.image, "where is the red circle?")
    assert ann2.psi_comp is not None


def test_tokenizer_one_id_per_word(tmp_path):
    from transformers import AutoTokenizer

    vocab = write_tokenizer_files(tmp_path, 24)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    for w in WORDS:
        assert tok(w)["input_ids"] == [bos, vocab[w + "</w>"], eos], w
    scene = make_scene(5)
    texts = [scene.caption(np.random.default_rng(0))] + [q.text for q in scene.queries()]
    for text in texts:
        ids = tok(text)["input_ids"]
        words = text.replace(",", " ,").replace("?", " ?").split()
        assert len(ids) == len(words) + 2, text
        assert ids[0] == bos and ids[-1] == eos
        assert eos not in ids[1:-1]  # every word known
        assert len(ids) <= 24
    assert tok("Where is the RED Circle?")["input_ids"] == tok("where is the red circle?")["input_ids"]
    assert len(build_vocab()[0]) == len(vocab)


def test_time_budget_stops_training(tmp_path):
    out = tmp_path / "m"
    cfg = TrainConfig(out=str(out), time_budget=0.0, steps=1000, batch_size=4, pool=8, warmup=1,
                      checkpoint_every=0, probe_scenes=0)
    summary = train(cfg, SMALL, verbose=False)
    assert summary["stopped"] == "time"
    assert summary["steps"] == 1  # one step to measure the step time, then the budget is spent
    assert (out / "model.safetensors").is_file()


def test_loss_masks_false_negatives():
    import torch

    logits = torch.tensor([[5.0, 5.0], [0.0, 5.0]])
    none = torch.zeros(2, 2, dtype=torch.bool)
    masked = torch.tensor([[False, True], [False, False]])
    assert clip_loss(logits, masked) < clip_loss(logits, none)


def test_shipped_shapes_clip_loads_by_short_name_and_finds_the_object():

    from attnprompt import Prompter
    from attnprompt.shapes import make_scene

    prompter = Prompter("shapes-clip", device="cpu", layers=tuple(range(-6, 0)), comp_layer=None)
    scene = make_scene(1, size=(64, 64))
    query = next(q for q in scene.queries() if q.text == "where is the orange square?")
    [result] = prompter.annotate(scene.image, query.text)
    target = scene.masks[query.target]
    mass_ratio = (result.pixel_mask * target).sum() / result.pixel_mask.sum() / target.mean()
    assert mass_ratio > 2.0  # the map concentrates on the named object (a uniform map gives 1.0)


def test_schedule_and_atomic_folder(tmp_path):
    from attnprompt.shapes.training import replace_folder, warmup_cosine

    assert warmup_cosine(0, 1.0, 10, 110, 0.05) == pytest.approx(0.1)
    assert warmup_cosine(10, 1.0, 10, 110, 0.05) == pytest.approx(1.0)
    assert warmup_cosine(60, 1.0, 10, 110, 0.05) == pytest.approx(0.525)
    assert warmup_cosine(500, 1.0, 10, 110, 0.05) == pytest.approx(0.05)

    out = tmp_path / "model"
    replace_folder(out, lambda d: (d / "a.txt").write_text("1"))
    with pytest.raises(RuntimeError):
        def broken(d):
            (d / "a.txt").write_text("2")
            raise RuntimeError("killed mid-save")
        replace_folder(out, broken)
    assert (out / "a.txt").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_batched_false_negatives_match_the_pairwise_rule():
    from attnprompt.shapes.train_clip import _compatible, _text_for, false_negatives
    from attnprompt.shapes.world import make_dataset

    rng = np.random.default_rng(3)
    objects = [[(o.color, o.shape) for o in s.objects] for s in make_dataset(40, 9, n_objects=(1, 5))]
    objects += [objects[0], objects[1]]  # identical object sets: captions are true of both images
    texts = []
    for objs in objects:
        _, req, exhaustive = _text_for(objs, rng, 0.4, 0.3)
        texts.append((req, exhaustive))
    texts[5] = ([objects[0][0]], True)  # a caption naming a set that is no image's but the first's
    got = false_negatives(objects, texts).numpy()
    want = np.array([[i != j and _compatible(objects[i], *texts[j]) for j in range(len(texts))]
                     for i in range(len(objects))])
    assert got.shape == (42, 42) and np.array_equal(got, want)
    assert want.sum() > 42  # the check is not vacuous: many texts are true of other images
    assert got[:, 40].sum() >= 1 and got[0, 40]  # the copied object sets: captions fit both images


def test_pools_are_the_same_for_any_number_of_workers():
    from attnprompt.shapes.train_clip import ScenePool
    from attnprompt.shapes.train_llava import _pool_entry
    from attnprompt.shapes.training import parallel_map

    one, two = ScenePool(10, 4, 64, 0.5, workers=1), ScenePool(10, 4, 64, 0.5, workers=2)
    assert np.array_equal(one.pixels, two.pixels) and one.objects == two.objects
    assert len({p.tobytes() for p in one.pixels}) == 10
    jobs = [(0, i, 64, 8, (1, 3), 0.5) for i in range(6)]
    serial, parallel = parallel_map(_pool_entry, jobs, 1), parallel_map(_pool_entry, jobs, 2)
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(serial, parallel))


def test_cli_flags_reach_the_config_and_bad_mixes_are_refused(capsys):
    from attnprompt.shapes.train_clip import parse_args

    cfg = parse_args(["--out", "x", "--weight-decay", "0.5", "--p-caption", "0.7", "--p-phrase", "0.3",
                      "--letterbox", "0", "--seed", "3", "--steps", "905"])
    assert (cfg.weight_decay, cfg.p_caption, cfg.p_phrase, cfg.letterbox, cfg.seed, cfg.steps) == (0.5, 0.7, 0.3, 0.0,
                                                                                                   3, 905)
    default = parse_args(["--out", "x"])
    assert default == TrainConfig(out="x")
    for bad in (["--p-caption", "0.8", "--p-phrase", "0.3"], ["--letterbox", "1.5"], ["--p-phrase", "-0.1"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--out", "x", *bad])
        assert exc.value.code == 2
    assert "--p-caption" in capsys.readouterr().err
