"""Data as users have it: a partial POPE folder, reader options on the command line, `datasets`
copies (save_to_disk and parquet) through --data hf:, data checked before any model loads, and
masks computed once and reused across conditions and runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")

from attnprompt.bench.datasets import SHORT_ANSWER_SUFFIX, BenchmarkDataWarning, load_data  # noqa: E402
from attnprompt.bench.run import evaluate  # noqa: E402
from attnprompt.cli import main  # noqa: E402
from attnprompt.targets import OpenAIEndpointTarget  # noqa: E402
from attnprompt.testing_server import FakeChatServer  # noqa: E402
from tests.test_bench_datasets import make_pope  # noqa: E402


def _random_only(root: Path) -> Path:
    make_pope(root)
    for split in ("popular", "adversarial"):
        (root / f"coco_pope_{split}.json").unlink()
    return root


def test_pope_folder_with_one_split(tmp_path):
    root = _random_only(tmp_path / "pope")
    with pytest.warns(BenchmarkDataWarning, match=r"split\(s\) popular, adversarial not found.*reading random") as rec:
        items = load_data("pope", root)
    assert len(rec) == 1
    assert [it.id for it in items] == ["random-1", "random-2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchmarkDataWarning)  # asked for what is there: no warning
        assert len(load_data("pope", root, splits="random")) == 2
    with pytest.raises(Exception, match="missing file .*coco_pope_popular.json"):
        load_data("pope", root, splits="random,popular")  # asked for explicitly: an error


def _eval_cli(tmp_path, server, *extra) -> list[str]:
    return ["eval", "--benchmark", "pope", "--target", "tiny", "--endpoint", server.base_url,
            "--conditions", "original", "--out", str(tmp_path / "run"), "--quiet", *extra]


def test_option_accepted_and_refused(tmp_path, capsys):
    root = make_pope(tmp_path / "pope")
    with FakeChatServer(responder=lambda request: "Yes") as server:
        assert main(_eval_cli(tmp_path, server, "--data", str(root), "--option", "splits=popular,adversarial",
                              "--option", "prompt_suffix=\\nOne word.")) == 0
        prompts = [json.loads(line)["prompt"] for line in (tmp_path / "run" / "answers" / "original.jsonl").open()]
        assert len(prompts) == 4 and all(p.endswith("?\nOne word.") for p in prompts)
        assert len(server.chat_requests) == 3  # popular-1 and adversarial-1: same image and question, asked once
        capsys.readouterr()
        assert main(_eval_cli(tmp_path, server, "--data", str(root), "--option", "split=random")) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0  # one line
        assert err.startswith("error: pope has no option 'split'; its options: images_dir, splits, prompt_suffix")
        assert main(_eval_cli(tmp_path, server, "--data", str(root), "--option", "splits")) == 2
        assert "expected KEY=VALUE" in capsys.readouterr().err


def test_wrong_folder_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import attnprompt.targets.hf as hf

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(hf.HFTarget, "__init__", no_load)
    empty = tmp_path / "not-pope"
    empty.mkdir()
    code = main(["eval", "--benchmark", "pope", "--data", str(empty), "--target", "shapes-llava",
                 "--conditions", "original", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "pope: missing file" in capsys.readouterr().err


def _pope_rows() -> list[dict]:
    colors = {"1": (255, 0, 0), "2": (0, 255, 0), "3": (0, 0, 255)}
    return [{"question_id": qid, "question": f"Is there a {obj} in the image?", "answer": ans, "category": cat,
             "image": Image.new("RGB", (8, 8), colors[qid])}
            for qid, obj, ans, cat in (("1", "dog", "yes", "random"), ("2", "car", "no", "random"),
                                       ("3", "fork", "no", "adversarial"))]


def test_hf_data_saved_to_disk_and_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(_pope_rows())
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    want = [("random-1", "Is there a dog in the image?" + SHORT_ANSWER_SUFFIX, ("yes",), "random"),
            ("random-2", "Is there a car in the image?" + SHORT_ANSWER_SUFFIX, ("no",), "random"),
            ("adversarial-3", "Is there a fork in the image?" + SHORT_ANSWER_SUFFIX, ("no",), "adversarial")]
    for source in ("saved", "pq"):
        items = load_data("pope", f"hf:{tmp_path / source}@test", image_cache_dir=str(tmp_path / f"img-{source}"))
        assert [(it.id, it.question, it.answers, it.category) for it in items] == want, source
        assert Image.open(items[1].image).getpixel((0, 0)) == (0, 255, 0)
        # reader options that make sense for hub data apply; file-layout ones are refused
        assert [it.id for it in load_data("pope", f"hf:{tmp_path / source}", splits="adversarial",
                                          image_cache_dir=str(tmp_path / "x"))] == ["adversarial-3"]
    with pytest.raises(Exception, match="images_dir.*do not apply to hf: data"):
        load_data("pope", f"hf:{tmp_path / 'saved'}", images_dir=str(tmp_path))
    with pytest.raises(Exception, match="has no split 'validation'"):
        load_data("pope", f"hf:{tmp_path / 'saved'}@validation")

    # the whole command line on a saved dataset
    with FakeChatServer(responder=lambda request: "No") as server:
        code = main(["eval", "--benchmark", "pope", "--data", f"hf:{tmp_path / 'saved'}@test", "--target", "tiny",
                     "--endpoint", server.base_url, "--conditions", "original", "--out", str(tmp_path / "run"),
                     "--option", f"image_cache_dir={tmp_path / 'img'}", "--quiet"])
    assert code == 0
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert scores["conditions"]["original"]["overall"] == pytest.approx(100.0 * 2 / 3)


def test_mmmu_hf_parquet_folder(tmp_path):
    pytest.importorskip("datasets")
    from tests.test_bench_mmmu import make_mmmu

    root = make_mmmu(tmp_path / "MMMU")
    items = load_data("mmmu", f"hf:{root}", image_cache_dir=str(tmp_path / "img"))
    assert sorted(it.id for it in items) == ["validation_Art_1", "validation_Art_2", "validation_Math_1",
                                             "validation_Math_2", "validation_Math_3"]
    multi = next(it for it in items if it.id == "validation_Math_2")
    assert len(multi.meta["images"]) == 3


def test_masks_computed_once_across_conditions_and_runs(tmp_path, tiny_clip_dir):
    root = tmp_path / "pope"
    (root / "val2014").mkdir(parents=True)
    lines = []
    for i in range(22):
        Image.new("RGB", (16, 16), (10 * i, 255 - 10 * i, 40)).save(root / "val2014" / f"{i}.png")
        lines.append(json.dumps({"question_id": i + 1, "image": f"{i}.png", "text": f"Is there a thing {i}?",
                                 "label": "yes" if i % 2 else "no"}))
    (root / "coco_pope_random.json").write_text("\n".join(lines) + "\n")
    conditions = "api-clip,masked-hint,api-clip+self-reflection"
    args = dict(clip=str(tiny_clip_dir), progress=False, n_boot=10, masks_dir=tmp_path / "masks")
    with FakeChatServer(responder=lambda request: "Yes") as server:
        target = OpenAIEndpointTarget("tiny", base_url=server.base_url, max_retries=0, timeout=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BenchmarkDataWarning)
            first = evaluate("pope", root, target, conditions, tmp_path / "run1", **args)
            assert first["masks"]["computed"] == 22 and first["masks"]["reused"] == 44
            again = evaluate("pope", root, target, conditions, tmp_path / "run2", **args)
    assert again["masks"]["computed"] == 0 and again["masks"]["reused"] == 66
    assert len(list((tmp_path / "masks").glob("*.png"))) == 22
    md = (tmp_path / "run2" / "table.md").read_text()
    assert "masks: 0 computed, 66 reused" in md
