"""Per-benchmark presets: the table with its sources, `attnprompt presets`, the precedence in eval
(--preset, then tune's preset files, then the table, then the default)."""

from __future__ import annotations

import json

import pytest

from attnprompt.bench.presets import BENCHMARK_PRESETS, benchmark_preset, benchmark_presets
from attnprompt.cli import main
from attnprompt.config import get_preset
from attnprompt.errors import AttnPromptError


def test_table_holds_the_official_per_dataset_settings_with_sources():
    mmvet = BENCHMARK_PRESETS[("mmvet", "clip")]
    assert (mmvet.config.enhance, mmvet.config.kernel, mmvet.config.interpolation, mmvet.config.gray) == \
        (1.0, 3, "bicubic", 0)
    wild = BENCHMARK_PRESETS[("llavabench", "clip")]
    assert (wild.config.enhance, wild.config.kernel, wild.config.interpolation, wild.config.gray) == \
        (10.0, 7, "lanczos", 200)
    assert all("tutorial.ipynb" in p.source for p in BENCHMARK_PRESETS.values())
    # precedence: --preset beats the table; no entry gives the kind's default
    assert benchmark_preset("mmvet", "clip")[0] == mmvet.config
    assert benchmark_preset("mmvet", "clip", "official") == ("official", "--preset official")
    config, source = benchmark_preset("pope", "clip")
    assert config is None and "default" in source
    with pytest.raises(AttnPromptError, match="unknown clip preset"):
        benchmark_preset("pope", "clip", "nonesuch")


def test_presets_command_lists_the_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "per benchmark" in out
    assert "mmvet      clip layers=(-2,), comp_layer=-2, enhance=1.0, kernel=3, interpolation=bicubic" in out
    assert "source: yu-rp/apiprompting sglang_inference/tutorial.ipynb (API for MM-Vet" in out
    assert "mmmu       clip default" in out


def _preset_file(path, kind="clip", benchmark="pope", **settings):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": "attnprompt-preset", "version": 1, "kind": kind, "settings": settings,
                                "benchmark": benchmark, "source": "attnprompt tune on shapes validation"}))
    return path


def test_tune_preset_files_extend_the_table(tmp_path, capsys, monkeypatch):
    _preset_file(tmp_path / "presets" / "run1" / "preset.json", enhance=2.0, kernel=1)  # a folder of tune runs
    _preset_file(tmp_path / "presets" / "mmvet.json", benchmark="mmvet", enhance=3.0)  # overrides the table
    (tmp_path / "presets" / "notes.json").write_text("[1, 2]")  # not a preset file: ignored
    table = benchmark_presets(tmp_path / "presets")
    assert table[("pope", "clip")].config == get_preset("default", kind="clip").replace(enhance=2.0, kernel=1)
    assert table[("pope", "clip")].source == "attnprompt tune on shapes validation"
    assert table[("mmvet", "clip")].config.enhance == 3.0
    monkeypatch.setenv("ATTNPROMPT_PRESETS_DIR", str(tmp_path / "presets"))
    assert benchmark_preset("pope", "clip")[0].kernel == 1
    assert main(["presets"]) == 0
    assert "pope       clip layers=(-2,), comp_layer=-2, enhance=2.0, kernel=1" in capsys.readouterr().out
    with pytest.raises(AttnPromptError, match="does not exist"):
        benchmark_presets(tmp_path / "nowhere")


def test_eval_records_the_preset_it_used(tmp_path, tiny_clip_dir):
    pytest.importorskip("openai")
    from attnprompt.bench.run import evaluate
    from attnprompt.targets import OpenAIEndpointTarget
    from attnprompt.testing_server import FakeChatServer
    from tests.test_bench_datasets import make_pope

    root = make_pope(tmp_path / "pope")
    _preset_file(tmp_path / "presets" / "pope.json", enhance=2.0, kernel=1)
    with FakeChatServer(responder=lambda request: "Yes") as server:
        target = OpenAIEndpointTarget("tiny", base_url=server.base_url, max_retries=0, timeout=10)
        args = dict(clip=str(tiny_clip_dir), progress=False, n_boot=10, data_options={"splits": "random"},
                    masks_dir=tmp_path / "masks")
        tuned = evaluate("pope", root, target, "api-clip", tmp_path / "a", presets_dir=tmp_path / "presets", **args)
        given = evaluate("pope", root, target, "api-clip", tmp_path / "b", preset="official", **args)
        plain = evaluate("pope", root, target, "api-clip", tmp_path / "c", **args)
    assert tuned["presets"]["clip"]["settings"]["enhance"] == 2.0
    assert tuned["presets"]["clip"]["source"] == "attnprompt tune on shapes validation"
    assert given["presets"]["clip"] == {"settings": get_preset("official").to_dict(), "source": "--preset official"}
    assert plain["presets"]["clip"]["settings"] == get_preset("default").to_dict()
    # three settings, three sets of masks in the shared store (the key holds every setting)
    assert [r["masks"]["computed"] for r in (tuned, given, plain)] == [2, 2, 2]
