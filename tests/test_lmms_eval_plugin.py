"""The lmms-eval plugin (``--model attnprompt``): request rewriting, registration, model args.

The wrapper logic runs against small stand-in models that read requests exactly as lmms-eval's
models do (``doc_to_visual[0](self.task_dict[task][split][doc_id])`` for every doc of a batch).
Tests of lmms-eval's own registry, entry points and ``llava_hf`` skip where lmms-eval is not
installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from PIL import Image

from attnprompt.errors import AttnPromptError
from attnprompt.integrations import lmms_eval as plugin
from attnprompt.integrations.lmms_eval import (
    AttnPromptChatLMM,
    AttnPromptLMM,
    parse_model_args,
    question_from_context,
    split_model_args,
)

# CI installs lmms-eval (scripts/setup.sh test): there a missing lmms-eval fails these tests instead of skipping.
requires_lmms_eval = pytest.mark.skipif(not plugin.HAVE_LMMS_EVAL and not os.environ.get("CI"),
                                        reason="lmms-eval is not installed (pip install 'attnprompt[lmms_eval]')")

if plugin.HAVE_LMMS_EVAL:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms as Base
else:  # stand-ins with the fields and behaviour of lmms_eval.api.{instance.Instance, model.lmms}

    @dataclasses.dataclass
    class Instance:  # type: ignore[no-redef]
        request_type: str
        arguments: tuple
        idx: int
        metadata: dict = dataclasses.field(default_factory=dict)
        resps: list = dataclasses.field(default_factory=list)

        @property
        def args(self):
            return self.arguments if isinstance(self.arguments, tuple) else (self.arguments,)

    class Base:  # type: ignore[no-redef]
        is_simple = True

        def __init__(self) -> None:
            self._rank, self._world_size, self.task_dict = 0, 1, {}

        @property
        def rank(self):
            return self._rank

        @property
        def world_size(self):
            return self._world_size


# ----------------------------------------------------------------------------------------------
# stand-ins: a task, an inner simple model, an inner chat model, a spying Prompter

SUFFIX = "\nAnswer the question using a single word or phrase."


class ToyTask:
    """Bound ``doc_to_visual`` / ``doc_to_messages`` like lmms-eval's ConfigurableTask."""

    def doc_to_visual(self, doc):
        return [doc["image"]] + ([doc["video"]] if "video" in doc else [])

    def doc_to_text(self, doc):
        return f"<image>\n{doc['question']}{SUFFIX}"

    def message_text(self, doc):  # chat tasks leave image placeholders to the chat template
        return f"{doc['question']}{SUFFIX}"

    def doc_to_messages(self, doc):
        content = [{"type": "image", "url": v} if isinstance(v, Image.Image) else {"type": "video", "url": v}
                   for v in self.doc_to_visual(doc)]
        content.append({"type": "text", "text": self.message_text(doc)})
        return [{"role": "user", "content": content}]


TASK = ToyTask()


def _image(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_docs() -> list[dict]:
    shared = _image(1)
    return [
        {"image": shared, "question": "What color is the square?"},
        {"image": shared.copy(), "question": "Is there a circle?"},  # same picture, other question
        {"image": _image(2, (24, 36)), "question": "How many shapes are there?"},
    ]


def simple_request(doc_id: int, docs, kind="generate_until", second=None):
    ctx = TASK.doc_to_text(docs[doc_id])
    second = {"max_new_tokens": 4} if second is None else second
    return Instance(request_type=kind, arguments=(ctx, second, TASK.doc_to_visual, doc_id, "toy", "test"),
                    idx=0, metadata={"task": "toy", "doc_id": doc_id, "repeats": 1})


def chat_request(doc_id: int, docs):
    ctx = TASK.message_text(docs[doc_id])
    return Instance(request_type="generate_until", arguments=(ctx, TASK.doc_to_messages, {}, doc_id, "toy", "test"),
                    idx=0, metadata={"task": "toy", "doc_id": doc_id, "repeats": 1})


class RecordingInner(Base):
    """A simple lmms-eval model that records the visuals it is given (batches like llava_hf)."""

    is_simple = True

    def __init__(self, batch_size=2, device="cpu", **kwargs) -> None:
        super().__init__()
        self.batch_size, self.device, self.kwargs = int(batch_size), device, kwargs
        self.seen: dict[int, list] = {}
        self.cleaned = False

    def _visuals(self, chunk):
        *_, doc_to_visual, doc_id, task, split = zip(*chunk)
        # as lmms-eval's models do: the first request's callable for every doc of the batch
        return doc_id, [doc_to_visual[0](self.task_dict[task[0]][split[0]][i]) for i in doc_id]

    def generate_until(self, requests):
        args, out = [r.args for r in requests], []
        for start in range(0, len(args), self.batch_size):
            ids, visuals = self._visuals(args[start:start + self.batch_size])
            for i, v in zip(ids, visuals):
                self.seen[i] = v
                out.append(f"answer {i}")
        return out

    def loglikelihood(self, requests):
        args = [r.args for r in requests]
        ids, visuals = self._visuals(args)
        self.seen.update(zip(ids, visuals))
        return [(-1.0, True)] * len(requests)

    def generate_until_multi_round(self, requests):
        raise NotImplementedError

    def clean(self):
        self.cleaned = True


class RecordingChatInner(RecordingInner):
    """A chat lmms-eval model: ``(ctx, doc_to_messages, gen_kwargs, doc_id, task, split)``."""

    is_simple = False

    def generate_until(self, requests):
        _, doc_to_messages, _, doc_id, task, split = zip(*[r.args for r in requests])
        for i in doc_id:
            self.seen[i] = doc_to_messages[0](self.task_dict[task[0]][split[0]][i])
        return [f"answer {i}" for i in doc_id]


class SpyPrompter:
    """Delegates to a real Prompter and records what it was asked."""

    def __init__(self, prompter) -> None:
        self.prompter, self.calls = prompter, []

    def annotate(self, images, queries, **kwargs):
        self.calls.append((list(images), list(queries)))
        return self.prompter.annotate(images, queries, **kwargs)

    @property
    def queries(self):
        return [q for _, qs in self.calls for q in qs]


@pytest.fixture
def spy(tiny_prompter):
    return SpyPrompter(tiny_prompter)


def wrap(inner, spy, docs, cls=AttnPromptLMM, **kwargs):
    lm = cls(inner=inner, aux=spy, **kwargs)
    lm.task_dict["toy"] = {"test": docs}  # what lmms-eval's evaluator does: lm.task_dict[task] = dataset
    return lm


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ----------------------------------------------------------------------------------------------
# the wrapper


def test_generate_until_annotates_with_the_question(spy, tiny_prompter):
    docs = make_docs()
    inner = RecordingInner(batch_size=2)
    lm = wrap(inner, spy, docs)
    assert lm.generate_until([simple_request(i, docs) for i in range(3)]) == ["answer 0", "answer 1", "answer 2"]

    questions = [d["question"] for d in docs]
    assert sorted(spy.queries) == sorted(questions)  # pre/post prompts and <image> stripped
    assert len(spy.calls) == 1  # one batch across docs (aux_batch_size 8)
    for i, doc in enumerate(docs):
        [received] = inner.seen[i]
        assert isinstance(received, Image.Image) and received.size == doc["image"].size
        assert not np.array_equal(pixels(received), pixels(doc["image"]))
        [expected] = tiny_prompter.annotate([doc["image"]], [doc["question"]])
        assert np.abs(pixels(received) - pixels(expected.image)).max() <= 1  # batched vs single forward
    # the two docs that share a picture were annotated with their own questions
    shared = [q for ims, qs in spy.calls for im, q in zip(ims, qs) if im.size == docs[0]["image"].size]
    assert sorted(shared) == sorted(questions[:2])


def test_annotation_equals_prompter_output_exactly(spy, tiny_prompter):
    docs = make_docs()
    inner = RecordingInner(batch_size=1)
    lm = wrap(inner, spy, docs, aux_batch_size=1)
    lm.generate_until([simple_request(2, docs)])
    [expected] = tiny_prompter.annotate([docs[2]["image"]], [docs[2]["question"]])
    assert spy.queries == [docs[2]["question"]]
    assert np.array_equal(pixels(inner.seen[2][0]), pixels(expected.image))


def test_cache_per_doc_across_calls_and_choices(spy):
    docs = make_docs()
    inner = RecordingInner()
    lm = wrap(inner, spy, docs)
    requests = [simple_request(i, docs) for i in range(3)]
    first = lm.generate_until(requests)
    assert lm.generate_until(requests) == first
    assert len(spy.queries) == 3  # the second call annotated nothing
    # multiple choice: one loglikelihood request per option, same doc -> annotated once
    choices = [simple_request(0, docs, "loglikelihood", f" {c}") for c in ("A", "B", "C")]
    assert lm.loglikelihood(choices) == [(-1.0, True)] * 3
    assert len(spy.queries) == 3
    # text-only requests such as ("", " choice") pass through untouched
    bare = Instance(request_type="loglikelihood", arguments=("", " yes"), idx=0,
                    metadata={"task": "toy", "doc_id": 0, "repeats": 1})
    assert lm._wrap_request(bare, {}) is bare


def test_chunks_bound_what_is_held(spy):
    docs = make_docs()
    inner = RecordingInner(batch_size=1)
    lm = wrap(inner, spy, docs, aux_chunk_size=1, aux_cache_size=1)
    assert lm.generate_until([simple_request(i, docs) for i in range(3)]) == ["answer 0", "answer 1", "answer 2"]
    assert len(spy.calls) == 3 and len(lm._cache) == 1
    assert all(not np.array_equal(pixels(inner.seen[i][0]), pixels(d["image"])) for i, d in enumerate(docs))


def test_non_image_visuals_pass_through_with_one_warning(spy):
    docs = make_docs()
    docs[0]["video"] = "clips/0001.mp4"
    docs[1]["video"] = "clips/0002.mp4"
    inner = RecordingInner()
    lm = wrap(inner, spy, docs)
    with pytest.warns(UserWarning, match="pass through") as record:
        lm.generate_until([simple_request(i, docs) for i in range(3)])
    assert len([w for w in record if "pass through" in str(w.message)]) == 1
    assert inner.seen[0][1] == "clips/0001.mp4" and inner.seen[1][1] == "clips/0002.mp4"
    assert not np.array_equal(pixels(inner.seen[0][0]), pixels(docs[0]["image"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per wrapper
        lm.generate_until([simple_request(0, docs)])


def test_chat_models_get_annotated_messages(spy, tiny_prompter):
    docs = make_docs()
    docs[2]["video"] = "clips/0003.mp4"
    inner = RecordingChatInner()
    lm = wrap(inner, spy, docs, cls=AttnPromptChatLMM)
    assert lm.is_simple is False  # lmms-eval then builds chat requests
    with pytest.warns(UserWarning, match="pass through"):
        assert lm.generate_until([chat_request(i, docs) for i in range(3)]) == ["answer 0", "answer 1", "answer 2"]
    assert sorted(spy.queries) == sorted(d["question"] for d in docs)
    for i, doc in enumerate(docs):
        [message] = inner.seen[i]
        parts = message["content"]
        assert parts[-1] == {"type": "text", "text": TASK.message_text(doc)}
        [expected] = tiny_prompter.annotate([doc["image"]], [doc["question"]])
        assert parts[0]["type"] == "image"
        assert np.abs(pixels(parts[0]["url"]) - pixels(expected.image)).max() <= 1
    assert inner.seen[2][0]["content"][1] == {"type": "video", "url": "clips/0003.mp4"}
    # the task's own messages are not modified
    assert TASK.doc_to_messages(docs[0])[0]["content"][0]["url"] is docs[0]["image"]


def test_is_simple_follows_the_inner_model(spy):
    assert wrap(RecordingInner(), spy, make_docs(), cls=AttnPromptChatLMM).is_simple is True
    assert wrap(RecordingChatInner(), spy, make_docs()).is_simple is False


def test_query_modes(spy):
    docs = make_docs()
    lm = wrap(RecordingInner(), spy, docs, aux_query="context")
    lm.generate_until([simple_request(2, docs)])
    assert spy.queries == [TASK.doc_to_text(docs[2])]

    spy.calls.clear()
    lm = wrap(RecordingInner(), spy, docs, aux_strip='"How many|are there?"')
    lm.generate_until([simple_request(2, docs)])
    assert spy.queries == ["shapes"]

    with pytest.raises(AttnPromptError, match="aux_query"):
        wrap(RecordingInner(), spy, docs, aux_query="answer")


def test_question_from_context():
    assert question_from_context("<image>\nIs there a dog?\nAnswer the question using a single word or phrase.") == "Is there a dog?"
    assert question_from_context("<image 1> Which one?\nA. x\nB. y\nAnswer with the option's letter from the "
                                 "given choices directly.") == "Which one?\nA. x\nB. y"
    assert question_from_context("Describe the image.") == "Describe the image."
    assert question_from_context("Answer:") == "Answer:"  # nothing would remain: keep it
    assert question_from_context(None) == ""


def test_rank_world_size_and_attributes_come_from_the_inner_model(spy):
    inner = RecordingInner(device="cpu")
    lm = wrap(inner, spy, make_docs())
    assert (lm.rank, lm.world_size) == (0, 1)
    lm._rank, lm._world_size = 3, 4  # what the evaluator does on multi-rank runs
    assert (inner._rank, inner._world_size) == (3, 4) and (lm.rank, lm.world_size) == (3, 4)
    assert lm.device == "cpu" and lm.batch_size == 2  # delegated
    with pytest.raises(AttributeError):
        getattr(lm, "no_such_attribute")
    lm.clean()
    assert inner.cleaned and lm.prompter is spy  # a given Prompter is kept


# ----------------------------------------------------------------------------------------------
# model args


def test_model_args_split():
    args = parse_model_args("inner=llava_hf,pretrained=x,aux=/tmp/clip,preset=official")
    assert split_model_args(args) == ({"inner": "llava_hf", "aux": "/tmp/clip", "preset": "official"}, {"pretrained": "x"})
    args = parse_model_args("inner=qwen2_5_vl,pretrained=Qwen/Qwen2.5-VL-7B-Instruct,max_pixels=12845056,"
                            "aux_layers=-2,aux_enhance=1.0,aux_device=cuda:1,force_simple=true")
    ours, inner = split_model_args(args)
    assert inner == {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_pixels": 12845056}
    assert ours == {"inner": "qwen2_5_vl", "aux_layers": -2.0, "aux_enhance": 1.0, "aux_device": "cuda:1",
                    "force_simple": True}


def test_aux_options_become_prompter_arguments():
    kw = plugin._prompter_kwargs({"aux_layers": -2.0, "aux_enhance": 1.0, "aux_gray": 128, "aux_comp_layer": "none",
                                  "aux_kind": "clip"})
    assert kw == {"layers": (-2,), "enhance": 1.0, "gray": 128, "comp_layer": None, "kind": "clip"}
    assert plugin._prompter_kwargs({"aux_layers": "20..22;-1"})["layers"] == (20, 21, 22, -1)


def test_wrapper_builds_prompter_and_inner_from_model_args(tiny_clip_dir, tiny_prompter):
    docs = make_docs()
    lm = AttnPromptLMM(inner=RecordingInner, aux=str(tiny_clip_dir), preset="official", aux_device="cpu",
                       aux_gray=128, batch_size=3, foo="bar")
    assert isinstance(lm.inner, RecordingInner) and lm.inner.batch_size == 3 and lm.inner.kwargs == {"foo": "bar"}
    assert lm.prompter.config.gray == 128 and lm.prompter.config.geometry == "stretch"
    lm.task_dict["toy"] = {"test": docs}
    lm.generate_until([simple_request(0, docs)])
    expected = tiny_prompter.annotate([docs[0]["image"]], [docs[0]["question"]], gray=128, geometry="stretch",
                                      kernel_grid=None, strict_order=False)[0]  # = official
    assert np.array_equal(pixels(lm.inner.seen[0][0]), pixels(expected.image))
    lm.clean()
    assert lm._prompter is None and lm.prompter is not None  # rebuilt on demand


def test_bad_preset_fails_before_the_inner_model_loads():
    class Exploding(RecordingInner):
        def __init__(self, **kwargs):
            raise AssertionError("inner model built")

    with pytest.raises(AttnPromptError, match="preset"):
        AttnPromptLMM(inner=Exploding, aux="/nonexistent/clip", preset="no-such-preset")


def test_unknown_inner_model_is_a_clear_error():
    with pytest.raises(AttnPromptError, match="no_such_model_xyz") as info:
        AttnPromptLMM(inner="no_such_model_xyz", aux="/nonexistent/clip")  # fails before aux loads
    if plugin.HAVE_LMMS_EVAL:
        assert "unknown lmms-eval model" in str(info.value)
        with pytest.raises(AttnPromptError, match="did you mean llava_hf"):
            AttnPromptLMM(inner="llava_hff", aux="/nonexistent/clip")
    else:
        assert "pip install lmms-eval" in str(info.value)
    with pytest.raises(AttnPromptError, match="wrap the wrapper"):
        AttnPromptLMM(inner="attnprompt", aux="/nonexistent/clip")


# ----------------------------------------------------------------------------------------------
# lmms-eval itself


@requires_lmms_eval
def test_register_in_a_registry():
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    registry = ModelRegistryV2()
    manifest = plugin.register(registry)
    assert manifest.model_id == "attnprompt"
    assert registry.get_model_class("attnprompt") is AttnPromptChatLMM
    assert registry.get_model_class("attnprompt", force_simple=True) is AttnPromptLMM


@requires_lmms_eval
def test_entry_point_is_discovered(tmp_path):
    """The pyproject entry point, installed as package metadata, registers ``attnprompt``."""
    dist = tmp_path / "attnprompt_entry_point_probe-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: attnprompt-entry-point-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[lmms_eval.models]\nattnprompt = attnprompt.integrations.lmms_eval:lmms_eval_manifest\n"
    )
    code = textwrap.dedent("""
        import lmms_eval.models as m
        print(m.get_model("attnprompt").__name__, m.get_model("attnprompt", force_simple=True).__name__,
              "attnprompt" in m.list_available_models())
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["AttnPromptChatLMM", "AttnPromptLMM", "True"]


@pytest.fixture
def lmms_registry():
    """lmms-eval's live registry with ``attnprompt`` and a recording inner model registered."""
    from lmms_eval import models
    from lmms_eval.models.registry_v2 import ModelManifest

    registry = models.MODEL_REGISTRY_V2
    plugin.register()
    name = "attnprompt_test_inner"
    registry.register_manifest(ModelManifest(model_id=name, simple_class_path=f"{RecordingInner.__module__}.RecordingInner"),
                               overwrite=True)
    yield models
    registry._manifests.pop(name, None)
    registry._alias_to_model_id.pop(name, None)


@requires_lmms_eval
def test_through_lmms_eval_registry(lmms_registry, tiny_clip_dir, tiny_prompter):
    cls = lmms_registry.get_model("attnprompt")  # what `lmms-eval --model attnprompt` does
    lm = cls.create_from_arg_string(
        f"inner=attnprompt_test_inner,aux={tiny_clip_dir},aux_device=cpu,preset=official,foo=3",
        {"batch_size": 2, "max_batch_size": None, "device": "cpu"},
    )
    assert isinstance(lm, cls) and type(lm.inner).__name__ == "RecordingInner"
    assert lm.inner.kwargs == {"foo": 3} and lm.inner.batch_size == 2 and lm.inner.device == "cpu"
    assert lm.is_simple is True  # the inner model has no chat implementation
    docs = make_docs()
    lm.task_dict["toy"] = {"test": docs}
    assert lm.generate_until([simple_request(i, docs) for i in range(3)]) == ["answer 0", "answer 1", "answer 2"]
    expected = tiny_prompter.annotate([docs[2]["image"]], [docs[2]["question"]], geometry="stretch",
                                      kernel_grid=None, strict_order=False)[0]  # = official
    assert np.abs(pixels(lm.inner.seen[2][0]) - pixels(expected.image)).max() <= 1


def _llava_hf_importable() -> bool:
    return plugin.HAVE_LMMS_EVAL and importlib.util.find_spec("decord") is not None


@pytest.mark.skipif(not _llava_hf_importable(), reason="lmms-eval's llava_hf needs lmms-eval and decord")
@pytest.mark.parametrize("force_simple", [True, False], ids=["simple", "chat"])
def test_real_llava_hf_inner_model(force_simple, tmp_path_factory, tiny_clip_dir, monkeypatch):
    """lmms-eval's own ``llava_hf`` (simple and chat) on a tiny local LLaVA sees annotated images."""
    from lmms_eval import models

    from attnprompt.testing_lvlm import make_tiny_llava_dir

    plugin.register()
    folder = make_tiny_llava_dir(tmp_path_factory.mktemp("tiny_llava"))
    cls = models.get_model("attnprompt", force_simple=force_simple)
    lm = cls.create_from_arg_string(f"inner=llava_hf,pretrained={folder},aux={tiny_clip_dir},aux_device=cpu,dtype=float32,device_map=cpu",
                                    {"batch_size": 1, "device": "cpu"})
    assert lm.is_simple is force_simple
    seen = []
    processor = lm.inner._image_processor
    original_call = type(processor).__call__

    def spy_call(self, *args, images=None, **kwargs):
        seen.append(images)
        return original_call(self, *args, images=images, **kwargs)

    monkeypatch.setattr(type(processor), "__call__", spy_call)
    docs = make_docs()
    lm.task_dict["toy"] = {"test": docs}
    if force_simple:
        requests = [simple_request(i, docs, second={"max_new_tokens": 2, "until": ["\n"]}) for i in range(2)]
    else:
        requests = [chat_request(i, docs) for i in range(2)]
        for r in requests:
            r.arguments[2]["max_new_tokens"] = 2
    out = lm.generate_until(requests)
    assert len(out) == 2
    assert len(seen) == 2 and all(len(images) == 1 for images in seen)
    for images in seen:
        assert images[0].size == docs[0]["image"].size
        assert not np.array_equal(pixels(images[0]), pixels(docs[0]["image"]))
