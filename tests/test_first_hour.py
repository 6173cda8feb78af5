"""What a new user meets in the first hour: help texts that run, folders made for outputs,
several images per command, a fast offline error with the right command, a warning for photos
given to the shipped shapes models, and `attnprompt figure`."""

from __future__ import annotations

import json
import shlex
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt.cli import EXAMPLES, _glue_negative_values, build_parser, main
from attnprompt.shapes.world import make_scene


def _example_commands() -> list[str]:
    joined = EXAMPLES.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("attnprompt ")]


def test_every_help_example_parses() -> None:
    commands = _example_commands()
    assert len(commands) >= 8
    parser = build_parser()
    for cmd in commands:
        argv = shlex.split(cmd)[1:]
        try:
            parser.parse_args(_glue_negative_values(argv))
        except SystemExit:  # pragma: no cover - the message says which example
            pytest.fail(f"help example does not parse: {cmd}")
    lvlm = [c for c in commands if "--aux lvlm" in c]
    assert lvlm and all("--layer 20" in c for c in lvlm)  # the continuation line stays part of it


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_model_help_names_the_shipped_models(capsys) -> None:
    text = _help("annotate", capsys=capsys)
    assert "shapes-clip" in text and "shapes-llava" in text


def test_self_prompt_help_offers_only_what_it_uses(capsys) -> None:
    text = _help("self-prompt", capsys=capsys).split(" examples:")[0]  # the options, not the shared examples
    assert "openai/clip" not in text  # a CLIP cannot self-prompt
    for option in ("--batch-size", "--workers", "--comp-layer", "--no-comp", "--pretrained", "--aux"):
        assert option not in text, option
    assert "shapes-llava" in text


def test_presets_print_only_the_fields_their_kind_reads(capsys) -> None:
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    clip = [line for line in lines if line.startswith("clip")]
    lvlm = [line for line in lines if line.startswith("lvlm")]
    assert clip and lvlm
    for line in clip:
        assert "reduction" not in line and "max_new_tokens" not in line and "highlight" not in line
        assert "comp_layer" in line
    for line in lvlm:
        assert "comp_layer" not in line and "reduction" in line


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    out = []
    for seed in (3, 4):
        path = folder / f"scene{seed}.png"
        make_scene(seed, size=(64, 64)).image.save(path)
        out.append(path)
    return out


def test_output_folder_is_created(scenes, tmp_path, capsys) -> None:
    out = tmp_path / "new" / "deeper" / "out.png"
    assert main(["annotate", str(scenes[0]), "-q", "where is the square?", "-o", str(out),
                 "--model", "shapes-clip", "--device", "cpu"]) == 0
    assert Image.open(out).size == (64, 64)


def test_several_images_one_question(scenes, tmp_path, capsys) -> None:
    from attnprompt import Prompter

    out = tmp_path / "prompted"
    question = "where is the circle?"
    assert main(["annotate", *map(str, scenes), "-q", question, "--out-dir", str(out),
                 "--model", "shapes-clip", "--device", "cpu", "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["scene3", "scene4"]
    assert all(r["status"] == "ok" and r["question"] == question for r in records)
    expected = Prompter("shapes-clip", device="cpu").annotate(list(map(str, scenes)), [question] * 2)
    for path, want in zip(scenes, expected):
        assert np.array_equal(np.asarray(Image.open(out / f"{path.stem}.png").convert("RGB")), np.asarray(want.image))
    # -o names one file: with several images it is refused before any model loads
    assert main(["annotate", *map(str, scenes), "-q", question, "-o", str(tmp_path / "x.png")]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_shapes_model_warns_on_a_photo() -> None:
    from attnprompt import Prompter

    prompter = Prompter("shapes-clip", device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompter.annotate(make_scene(1, size=(64, 64)).image, "where is the square?")
    assert not [w for w in caught if "shapes world" in str(w.message)]
    photo = Image.new("RGB", (640, 480), (120, 130, 140))
    with pytest.warns(UserWarning, match="640x480.*openai/clip-vit-large-patch14-336"):
        prompter.annotate(photo, "where is the car?")


@pytest.fixture()
def unreachable_hub(monkeypatch):
    from attnprompt.auxiliary import hub
    from attnprompt.testing_server import unused_base_url

    monkeypatch.setenv("HF_ENDPOINT", unused_base_url().rsplit("/v1", 1)[0])  # a port nothing listens on
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_REACHABLE", {})


def test_unreachable_hub_fails_fast_once_with_the_right_command(scenes, unreachable_hub, capsys) -> None:
    start = time.perf_counter()
    code = main(["annotate", str(scenes[0]), "-q", "what?", "--model", "attnprompt-tests/not-a-real-model",
                 "--device", "cpu"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 5.0, elapsed
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "hf download attnprompt-tests/not-a-real-model --local-dir DIR" in err
    assert "--model shapes-clip" in err and "huggingface-cli" not in err


def test_unreachable_hub_fails_fast_for_an_open_clip_tag(scenes, unreachable_hub, monkeypatch, tmp_path,
                                                          capsys) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    code = main(["annotate", str(scenes[0]), "-q", "what?", "--model", "ViT-B-16", "--pretrained", "laion2b_s34b_b88k"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 5.0, (code, elapsed)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "not in the local cache and the hub is unreachable" in lines[0], err
    assert "--model shapes-clip" in err


def test_unreachable_hub_fails_fast_in_the_library_too(unreachable_hub) -> None:
    from attnprompt import AttnPromptError, Prompter

    start = time.perf_counter()
    with pytest.raises(AttnPromptError, match="hf download attnprompt-tests/other-model --local-dir DIR"):
        Prompter("attnprompt-tests/other-model", device="cpu")
    assert time.perf_counter() - start < 5.0


def test_figure_command(scenes, tmp_path, capsys) -> None:
    out = tmp_path / "figs" / "fig.png"
    assert main(["figure", str(scenes[0]), "-q", "where is the square?", "--model", "shapes-clip",
                 "--device", "cpu", "--preset", "official", "-o", str(out)]) == 0
    picture = Image.open(out)
    assert picture.format == "PNG"
    assert picture.width > 2 * picture.height  # three panels side by side, a caption below


def test_settings_text_names_what_made_the_mask() -> None:
    from attnprompt import Prompter
    from attnprompt.figure import settings_text

    [a] = Prompter("shapes-clip", device="cpu").annotate(make_scene(2, size=(64, 64)).image, "the square",
                                                         layers=(-3, -2), gray=40)
    text = settings_text(a, "shapes-clip", "default")
    assert "auxiliary shapes-clip" in text and "layers -3,-2" in text and "gray 40" in text
    assert "reduction" not in text and "max new tokens" not in text
