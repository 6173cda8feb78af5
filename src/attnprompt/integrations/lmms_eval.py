"""lmms-eval plugin: attention prompting in front of any lmms-eval model.

``lmms-eval --model attnprompt --model_args inner=llava_hf,pretrained=...,aux=...,preset=...``
builds the lmms-eval model named by ``inner`` (through lmms-eval's own registry, with the
remaining model args) and one :class:`~attnprompt.Prompter` (the auxiliary model ``aux``). For
every request the images are annotated with the request's question as query before the inner
model sees them; answers and scores come from the inner model unchanged.

How it hooks in (lmms-eval >= 0.6, ``lmms_eval/api/task.py``, ``construct_requests``):

* simple models get ``Instance.args = (context, gen_kwargs | continuation, doc_to_visual, doc_id,
  task, split)`` (multi-round: ``(context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task,
  split)``) and call ``doc_to_visual(self.task_dict[task][split][doc_id])``;
* chat models (``is_simple = False``) get ``(context, doc_to_messages, gen_kwargs, doc_id, task,
  split)`` and call ``doc_to_messages(doc)``, whose ``{"type": "image", "url": PIL.Image}`` parts
  carry the images.

The wrapper swaps that callable for one that returns annotated images. Because models call the
*first* request's callable for every doc of a batch (``doc_to_visual[0](...) for ids in doc_id``),
the replacement finds the request from the doc itself: the inner model reads its docs through a
view of ``task_dict`` that tags each doc with its ``(task, split, doc_id)``.

Registration: the entry point ``lmms_eval.models`` -> :func:`lmms_eval_manifest` (a
``ModelManifest``); lmms-eval loads that group in ``lmms_eval/models/__init__.py``
(``registry.load_entrypoint_manifests``). :func:`register` does the same by hand.

lmms-eval is optional: this module imports without it (the wrapper then derives from ``object``
and takes an inner model *instance*); naming an inner model needs lmms-eval installed.
"""

from __future__ import annotations

import copy
import difflib
import gc
import hashlib
import numbers
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from PIL import Image

from ..errors import AttnPromptError

try:  # the base class must exist when the class is defined; everything else is imported lazily
    from lmms_eval.api.model import lmms as _LMMS_BASE

    HAVE_LMMS_EVAL = True
except ImportError:  # pragma: no cover - exercised where lmms-eval is not installed
    _LMMS_BASE = object
    HAVE_LMMS_EVAL = False

__all__ = [
    "HAVE_LMMS_EVAL",
    "MODEL_ID",
    "AttnPromptChatLMM",
    "AttnPromptLMM",
    "lmms_eval_manifest",
    "parse_model_args",
    "question_from_context",
    "register",
    "split_model_args",
]

MODEL_ID = "attnprompt"
SIMPLE_CLASS_PATH = f"{__name__}.AttnPromptLMM"
CHAT_CLASS_PATH = f"{__name__}.AttnPromptChatLMM"
DEFAULT_AUX = "openai/clip-vit-large-patch14-336"

#: model_args that belong to the wrapper; every other key except ``aux_*`` goes to the inner model.
WRAPPER_KEYS = frozenset({"inner", "aux", "preset", "force_simple"})
#: ``aux_*`` keys the wrapper itself reads; any other ``aux_<name>`` becomes ``Prompter(<name>=...)``.
WRAPPER_AUX_KEYS = frozenset({
    "aux_device", "aux_dtype", "aux_batch_size", "aux_query", "aux_strip", "aux_chunk_size", "aux_cache_size",
})

# Instruction suffixes that lmms-eval task configs append as ``post_prompt`` (the most common
# ones in lmms_eval/tasks/*/*.yaml); they say how to answer, not what to look at.
_POST_PROMPTS = (
    "Answer the question using a single word or phrase.",
    "Answer the question with a single word.",
    "Answer with the option's letter from the given choices directly.",
    "Answer with the option letter only.",
    "Answer with the option's letter (A, B, C, D or E) from the given choices directly.",
    "Answer the question with A, B, C, or D.",
    "Only give the best option.",
    "Give me the answer letter directly. The best answer is:",
    "The best answer is:",
    "Your response must be concise.",
    "Please answer yes or no.",
    "Answer yes or no.",
    "ASSISTANT:",
    "Answer:",
)
_MEDIA_TOKENS = re.compile(r"<\s*(?:image|video|audio)(?:[ _]?\d+)?\s*>", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# registration


def lmms_eval_manifest():
    """The ``ModelManifest`` of ``attnprompt`` (the payload of the ``lmms_eval.models`` entry point).

    Both slots are filled: lmms-eval resolves the chat class by default and the simple class under
    ``--force_simple``; the wrapper then resolves its inner model the same way.
    """
    from lmms_eval.models.registry_v2 import ModelManifest  # not lmms_eval.models: it calls us

    return ModelManifest(model_id=MODEL_ID, simple_class_path=SIMPLE_CLASS_PATH, chat_class_path=CHAT_CLASS_PATH)


def register(registry: Any = None) -> Any:
    """Register ``attnprompt`` in ``registry`` (default: lmms-eval's ``MODEL_REGISTRY_V2``).

    Only needed where the package's entry point is not installed (e.g. running from a source
    tree without ``pip install -e .``). Returns the manifest.
    """
    manifest = lmms_eval_manifest()
    if registry is None:
        from lmms_eval import models

        registry = models.MODEL_REGISTRY_V2
        available = getattr(models, "AVAILABLE_MODELS", None)
        if isinstance(available, dict):
            available[MODEL_ID] = CHAT_CLASS_PATH.rsplit(".", 1)[-1]
    registry.register_manifest(manifest, overwrite=True)
    return manifest


def _inner_class(name: str, force_simple: bool) -> type:
    """The lmms-eval model class registered as ``name``, or a one-line error."""
    if name == MODEL_ID:
        raise AttnPromptError("inner=attnprompt would wrap the wrapper; name the model to evaluate (e.g. inner=llava_hf)")
    if not HAVE_LMMS_EVAL:
        raise AttnPromptError(f"inner={name!r} names an lmms-eval model, but lmms-eval is not installed: pip install lmms-eval")
    from lmms_eval import models

    known = models.MODEL_REGISTRY_V2.list_model_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `lmms-eval models --aliases` lists them"
        raise AttnPromptError(f"unknown lmms-eval model inner={name!r}{hint}")
    return models.get_model(name, force_simple=force_simple)


# --------------------------------------------------------------------------------------------
# model_args


def _parse_value(value: str) -> Any:
    """lmms-eval's ``handle_arg_string``: true/false -> bool, digits -> int, numbers -> float."""
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    if value.isnumeric():
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def parse_model_args(arg_string: str) -> dict[str, Any]:
    """Parse ``k1=v1,k2=v2`` exactly as lmms-eval does (``lmms_eval.utils.simple_parse_args_string``)."""
    try:
        from lmms_eval.utils import simple_parse_args_string
    except ImportError:
        arg_string = arg_string.strip()
        if not arg_string:
            return {}
        return {k: _parse_value(v) for k, v in (part.split("=", 1) for part in arg_string.split(",") if part)}
    return simple_parse_args_string(arg_string)


def split_model_args(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(wrapper_kwargs, inner_kwargs)``: ``inner``, ``aux``, ``preset``, ``force_simple`` and every
    ``aux_*`` key are the wrapper's, the rest go to the inner model."""
    ours = {k: v for k, v in args.items() if k in WRAPPER_KEYS or k.startswith("aux_")}
    return ours, {k: v for k, v in args.items() if k not in ours}


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _prompter_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """``aux_<name>=value`` model args -> ``Prompter(<name>=value)`` (layers as ``-2`` or ``20..23;-1``)."""
    from ..config import parse_layers

    out: dict[str, Any] = {}
    for key, value in options.items():
        name, value = key[len("aux_"):], _unquote(value)
        if isinstance(value, str) and value.lower() == "none":
            value = None
        elif name == "layers" and value is not None:
            if isinstance(value, float) and value.is_integer():
                value = (int(value),)
            elif isinstance(value, int):
                value = (value,)
            elif isinstance(value, str):
                value = parse_layers(re.split(r"[;\s]+", value.strip()))
        elif isinstance(value, float) and value.is_integer() and name in ("comp_layer", "kernel", "gray", "max_new_tokens"):
            value = int(value)
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# queries


def question_from_context(context: Any, strip: Iterable[str] = ()) -> str:
    """The question in an lmms-eval request context.

    Drops media placeholders (``<image>``, ``<image 1>``, ``<video>``), any ``strip`` strings
    (anywhere), and the common lmms-eval answer-format ``post_prompt`` suffixes (``Answer the
    question using a single word or phrase.``...). Falls back to the whole context when nothing
    would remain.
    """
    if not isinstance(context, str):
        return ""
    text = _MEDIA_TOKENS.sub(" ", context)
    for phrase in strip:
        if phrase:
            text = text.replace(phrase, " ")
    text = text.strip()
    changed = True
    while changed and text:
        changed = False
        for suffix in _POST_PROMPTS:
            if text.endswith(suffix) and len(text) > len(suffix):
                text, changed = text[: -len(suffix)].rstrip(), True
    text = re.sub(r"[ \t]+", " ", text).strip()
    return text or context.strip()


def _content_parts(message: dict) -> list[dict]:
    """The dict parts of a chat message's list content (none for plain-text content)."""
    content = message.get("content")
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _messages_text(messages: Any) -> str:
    parts = []
    for message in messages or ():
        if isinstance(message, dict) and message.get("role", "user") == "user":
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return "\n".join(p for p in parts if p)


def _fingerprint(image: Image.Image) -> tuple:
    return image.mode, image.size, hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------------------------
# the inner model's view of task_dict: docs tagged with (task, split, doc_id)


class _TaggedDoc(dict):
    """A doc (a plain dict copy) that knows which request it belongs to."""

    __slots__ = ("attnprompt_key",)
    attnprompt_key: tuple[str, str, int]

    def __reduce__(self):  # pickles as the plain dict it wraps
        return dict, (dict(self),)


class _View:
    """Wraps ``self._inner``: its length, iteration and any attribute not defined here are the
    wrapped object's (datasets.Dataset methods, for instance)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self):
        return iter(self._inner)

    def __getattr__(self, name: str) -> Any:
        if "_inner" not in self.__dict__:  # during unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self.__dict__["_inner"], name)


class _DocsView(_View):
    def __init__(self, docs: Any, task: str, split: str) -> None:
        super().__init__(docs)
        self._task, self._split = task, split

    def __getitem__(self, index: Any) -> Any:
        doc = self._inner[index]
        if isinstance(index, numbers.Integral) and isinstance(doc, dict):
            tagged = _TaggedDoc(doc)
            tagged.attnprompt_key = (self._task, self._split, int(index))
            return tagged
        return doc


class _SplitsView(_View, Mapping):
    def __init__(self, splits: Any, task: str) -> None:
        super().__init__(splits)
        self._task = task

    def __getitem__(self, split: str) -> _DocsView:
        return _DocsView(self._inner[split], self._task, split)

    def __contains__(self, split: object) -> bool:
        return split in self._inner


class _TaskDictView(Mapping):
    """What the inner model sees as ``self.task_dict``: the wrapper's dict, docs tagged on read."""

    def __init__(self, source: dict) -> None:
        self._source = source

    def __getitem__(self, task: str) -> _SplitsView:
        return _SplitsView(self._source[task], task)

    def __setitem__(self, task: str, value: Any) -> None:
        self._source[task] = value

    def __contains__(self, task: object) -> bool:
        return task in self._source

    def __iter__(self):
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


# --------------------------------------------------------------------------------------------
# the wrapper


class AttnPromptLMM(_LMMS_BASE):
    """An lmms-eval model that annotates each request's images before an inner model answers.

    Args:
        inner: the lmms-eval model to evaluate: a registered name (``llava_hf``, ``qwen2_5_vl``...),
            an ``lmms`` class, or an already built ``lmms`` instance.
        aux: the auxiliary model of :class:`~attnprompt.Prompter` (hub id or local folder), or a
            built ``Prompter``.
        preset: mask preset (``default``, ``official``, ``paper-llava``...).
        force_simple: resolve ``inner`` to its simple implementation (default: this class's
            slot: ``AttnPromptLMM`` is the ``--force_simple`` one, ``AttnPromptChatLMM`` the default).
        aux_device, aux_dtype: where/how the auxiliary model runs (default: the inner model's
            ``device`` when it has one, else ``device``, else auto).
        aux_batch_size: images per auxiliary forward pass.
        aux_query: ``"question"`` (default: the request context without media tokens and common
            answer-format suffixes, see :func:`question_from_context`), ``"context"`` (the whole
            context string) or, from Python, a callable ``context -> query``.
        aux_strip: extra text to delete from contexts before they become queries, several
            separated by ``|`` (e.g. a task's ``pre_prompt``).
        aux_chunk_size: requests handed to the inner model per call, so that annotated images
            for at most this many docs are held at once (``0``: all requests in one call).
        aux_cache_size: docs whose annotated images are kept (LRU; at least ``aux_chunk_size``).
        aux_<name>: any other ``Prompter`` argument (``kind``, ``backend``, ``pretrained``) or mask
            option (``layers``, ``enhance``, ``gray``, ``geometry``...).
        device, batch_size, max_batch_size: lmms-eval's ``--device`` / ``--batch_size`` /
            ``--max_batch_size``; passed on to the inner model when given.
        **inner_args: the inner model's own model args (``pretrained=...``).
    """

    is_simple = True
    _inner_force_simple = True

    def __init__(
        self,
        inner: Any,
        aux: Any = DEFAULT_AUX,
        preset: str | None = None,
        force_simple: bool | None = None,
        aux_device: str | None = None,
        aux_dtype: str | None = None,
        aux_batch_size: int = 8,
        aux_query: str | Callable[[str], str] = "question",
        aux_strip: str | Sequence[str] | None = None,
        aux_chunk_size: int = 64,
        aux_cache_size: int = 256,
        device: Any = None,
        batch_size: Any = None,
        max_batch_size: Any = None,
        **kwargs: Any,
    ) -> None:
        if _LMMS_BASE is not object:
            super().__init__()
        self.__dict__.setdefault("task_dict", {})
        self.__dict__.setdefault("_local_rank_ws", {"_rank": 0, "_world_size": 1})
        prompter_options = {k: v for k, v in kwargs.items() if k.startswith("aux_")}
        inner_args = {k: v for k, v in kwargs.items() if not k.startswith("aux_")}

        query = _unquote(aux_query)
        if not callable(query) and query not in ("question", "context"):
            raise AttnPromptError(f"aux_query must be 'question' or 'context', got {aux_query!r}")
        self.aux_query = query
        strip = _unquote(aux_strip)
        self.aux_strip = tuple(s for s in (strip.split("|") if isinstance(strip, str) else (strip or ())) if s)
        self.aux_batch_size = max(1, int(aux_batch_size))
        self.aux_chunk_size = max(0, int(aux_chunk_size))
        self.aux_cache_size = max(1, int(aux_cache_size), self.aux_chunk_size)
        if force_simple is None:
            force_simple = type(self)._inner_force_simple

        # 1. resolve the inner class (cheap; unknown names fail before anything loads)
        extra = {k: v for k, v in (("device", device), ("batch_size", batch_size),
                                   ("max_batch_size", max_batch_size)) if v is not None}
        if isinstance(inner, str):
            inner_cls = _inner_class(_unquote(inner), bool(force_simple))
        elif isinstance(inner, type):
            inner_cls = inner
        else:
            if inner_args:
                raise AttnPromptError(f"model args {sorted(inner_args)} given with an already built inner model")
            inner_cls = None

        # 2. the auxiliary model: a built one, or checks that fail before the inner model loads
        self._prompter_spec = None
        if hasattr(aux, "annotate"):
            if preset is not None or prompter_options:
                raise AttnPromptError("preset / aux_* options given with an already built Prompter")
            self._prompter = aux
        else:
            self._prompter = None
            preset = _unquote(preset)
            if preset is not None:
                from ..config import get_preset, is_preset_path, load_preset_file, presets_for

                if is_preset_path(preset):
                    load_preset_file(preset)  # a preset file of either kind: checked now
                elif not any(str(preset).lower() in presets_for(kind) for kind in ("clip", "lvlm")):
                    get_preset(preset, kind="clip")  # raises with the list of presets
        # 3. the inner model
        built = inner_cls(**inner_args, **extra) if inner_cls is not None else inner
        self.inner = built
        self.is_simple = bool(getattr(built, "is_simple", True))
        if self._prompter is None:
            if aux_device is None:
                aux_device = self._inner_device() or (str(device) if device is not None else None)
            self._prompter_spec = dict(model=str(_unquote(aux)), preset=_unquote(preset), device=aux_device,
                                       dtype=_unquote(aux_dtype), **_prompter_kwargs(prompter_options))
            self._prompter = self._build_prompter()

        # the inner model reads docs through a tagging view of our task_dict
        existing = getattr(built, "task_dict", None)
        if isinstance(existing, dict):
            for k, v in existing.items():
                self.task_dict.setdefault(k, v)
        built.task_dict = _TaskDictView(self.task_dict)
        for attr, value in self.__dict__["_local_rank_ws"].items():
            if value not in (0, 1):
                setattr(built, attr, value)

        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._queries: dict[tuple, str] = {}
        self._pending: dict[tuple, list[tuple]] = {}
        self._warned: set[str] = set()

    # ---- construction helpers

    def _build_prompter(self) -> Any:
        from ..prompter import Prompter

        spec = dict(self._prompter_spec or {})
        return Prompter(spec.pop("model"), **{k: v for k, v in spec.items() if v is not None or k in ("layers",)})

    def _inner_device(self) -> str | None:
        try:
            dev = getattr(self.inner, "device", None)
        except Exception:
            return None
        if dev is None:
            return None
        if type(dev).__name__ == "device" or isinstance(dev, str):
            return str(dev)
        return None

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> AttnPromptLMM:
        """lmms-eval's constructor path: ``--model_args`` string plus ``batch_size``/``device``..."""
        args = parse_model_args(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**args, **extra)

    # ---- what lmms-eval reads from a model

    @property
    def prompter(self) -> Any:
        if self._prompter is None:
            self._prompter = self._build_prompter()
        return self._prompter

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    def _get_rw(name: str):
        def fget(self):
            inner = self.__dict__.get("inner")
            if inner is not None and hasattr(inner, name):
                return getattr(inner, name)
            return self.__dict__.setdefault("_local_rank_ws", {"_rank": 0, "_world_size": 1})[name]

        def fset(self, value):
            self.__dict__.setdefault("_local_rank_ws", {"_rank": 0, "_world_size": 1})[name] = value
            inner = self.__dict__.get("inner")
            if inner is not None:
                setattr(inner, name, value)

        return property(fget, fset)

    _rank = _get_rw("_rank")  # the evaluator sets lm._rank / lm._world_size on multi-rank runs
    _world_size = _get_rw("_world_size")
    del _get_rw

    def set_cache_hook(self, cache_hook: Any) -> None:
        self.cache_hook = cache_hook
        if hasattr(self.inner, "set_cache_hook"):
            self.inner.set_cache_hook(cache_hook)

    def clean(self) -> None:
        """Free the inner model (its ``clean``) and the auxiliary model (rebuilt if used again)."""
        if hasattr(self.inner, "clean"):
            self.inner.clean()
        if self._prompter_spec is not None:
            self._prompter = None
        self._cache.clear()
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes the wrapper lacks: device, accelerator, model, tokenizer...
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    # ---- requests

    def generate_until(self, requests: list) -> list:
        return self._run("generate_until", requests)

    def loglikelihood(self, requests: list) -> list:
        return self._run("loglikelihood", requests)

    def generate_until_multi_round(self, requests: list) -> list:
        return self._run("generate_until_multi_round", requests)

    def generate_visual_cot(self, requests: list) -> list:
        # two-stage generation of new images: handed over unchanged
        return self.inner.generate_visual_cot(requests)

    def _run(self, method: str, requests: Sequence[Any]) -> list:
        requests = list(requests)
        step = self.aux_chunk_size or max(1, len(requests))
        fns: dict[tuple, Callable] = {}
        out: list = []
        for start in range(0, len(requests), step):
            self._pending = {}
            chunk = [self._wrap_request(r, fns) for r in requests[start:start + step]]
            self._prefetch()
            out.extend(getattr(self.inner, method)(chunk))
        self._pending = {}
        return out

    def query_for(self, context: Any) -> str:
        """The auxiliary query for a request context (see ``aux_query``)."""
        if callable(self.aux_query):
            return self.aux_query(context)
        if self.aux_query == "context":
            return context if isinstance(context, str) else ""
        return question_from_context(context, self.aux_strip)

    def _wrap_request(self, request: Any, fns: dict) -> Any:
        args = request.args if hasattr(request, "args") else request.arguments
        if not isinstance(args, tuple) or len(args) < 5:
            return request  # e.g. ("", " choice") loglikelihood requests: no visuals
        if callable(args[1]):
            kind, index = "messages", 1  # chat models: (ctx, doc_to_messages, gen_kwargs, doc_id, task, split)
        elif callable(args[2]):
            kind, index = "visual", 2  # simple models: (ctx, x, doc_to_visual, ..., doc_id, task, split)
        else:
            return request
        doc_id, task, split = args[-3], args[-2], args[-1]
        try:
            key = (task, split, int(doc_id))
        except (TypeError, ValueError):
            return request
        if key not in self._queries:  # the first context of a doc is its question
            query = self.query_for(args[0])
            if query:  # else (chat) the text of the doc's messages
                self._queries[key] = query
        original = args[index]
        slot: tuple[str, Any, Any, Any] | None = (kind, original, task, split)
        try:
            fn = fns.get(slot)
        except TypeError:  # an unhashable callable
            slot, fn = None, None
        if fn is None:
            fn = self._make_fn(kind, original, task, split)
            if slot is not None:
                fns[slot] = fn
        self._pending.setdefault((task, split), []).append((key, kind, original))
        new = copy.copy(request)
        new.arguments = args[:index] + (fn,) + args[index + 1:]
        return new

    def _make_fn(self, kind: str, original: Callable, task: str, split: str) -> Callable:
        if kind == "visual":
            def annotated_doc_to_visual(doc, *args, **kwargs):
                visuals = original(doc, *args, **kwargs)
                return self._annotate_visuals(visuals, self._key_of(doc, task, split))

            return annotated_doc_to_visual

        def annotated_doc_to_messages(doc, *args, **kwargs):
            result = original(doc, *args, **kwargs)
            key = self._key_of(doc, task, split)
            if isinstance(result, tuple) and result and (result[0] is None or isinstance(result[0], list)):
                if result[0] is None:  # multi-round: (messages | None, terminal, outputs, info)
                    return result
                return (self._annotate_messages(result[0], key),) + tuple(result[1:])
            if isinstance(result, list):
                return self._annotate_messages(result, key)
            return result

        return annotated_doc_to_messages

    def _key_of(self, doc: Any, task: str, split: str) -> tuple | None:
        key = getattr(doc, "attnprompt_key", None)
        if key is not None:
            return key
        pending = {k for k, _, _ in self._pending.get((task, split), ())}
        if len(pending) == 1:
            return next(iter(pending))
        for k in pending:  # an untagged doc: find it among this chunk's docs
            try:
                if self.task_dict[task][split][k[2]] == doc:
                    return k
            except Exception:
                break
        return None

    # ---- annotation

    def _warn_once(self, tag: str, message: str) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            warnings.warn(message, stacklevel=3)

    def _entry(self, key: tuple) -> dict:
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = {}
            while len(self._cache) > self.aux_cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return entry

    def _annotate_into_cache(self, jobs: list[tuple[tuple, tuple, Image.Image]]) -> None:
        """Annotate ``(key, fingerprint, image)`` jobs in batches of ``aux_batch_size``."""
        todo, seen = [], set()
        for key, fp, image in jobs:
            if (key, fp) in seen or fp in self._entry(key):
                continue
            seen.add((key, fp))
            todo.append((key, fp, image))
        for start in range(0, len(todo), self.aux_batch_size):
            batch = todo[start:start + self.aux_batch_size]
            images = [image for _, _, image in batch]
            queries = [self._queries.get(key, "") for key, _, _ in batch]
            annotations = self.prompter.annotate(images, queries)
            for (key, fp, _), annotation in zip(batch, annotations):
                self._entry(key)[fp] = annotation.image

    def _replace_images(self, images: list, key: tuple | None) -> list:
        """The annotated version of each PIL image of a doc (non-PIL items unchanged)."""
        if key is None:
            if any(isinstance(v, Image.Image) for v in images):
                self._warn_once("unknown-doc", "attnprompt: a model asked for the visuals of a doc outside the current "
                                "requests; those images pass through without attention prompting")
            return list(images)
        jobs: list[tuple[Any, Any, Image.Image]] = []
        fps: list[Any] = []
        for item in images:
            if isinstance(item, Image.Image):
                fp = _fingerprint(item)
                fps.append(fp)
                jobs.append((key, fp, item))
            else:
                fps.append(None)
                if item is not None:
                    self._warn_once("non-pil", f"attnprompt: visuals of type {type(item).__name__} (videos, audio, "
                                    "paths...) pass through without attention prompting; only PIL images are annotated")
        if jobs:
            self._annotate_into_cache(jobs)
        entry = self._entry(key)
        return [entry[fp] if fp is not None else item for item, fp in zip(images, fps)]

    def _annotate_visuals(self, visuals: Any, key: tuple | None) -> Any:
        if visuals is None:
            return None
        if isinstance(visuals, Image.Image):
            return self._replace_images([visuals], key)[0]
        if not isinstance(visuals, (list, tuple)):
            self._replace_images([visuals], key)  # warns once about the type
            return visuals
        out = self._replace_images(list(visuals), key)
        return type(visuals)(out) if isinstance(visuals, tuple) else out

    def _annotate_messages(self, messages: list, key: tuple | None) -> list:
        if key is not None and key not in self._queries:
            self._queries[key] = self.query_for(_messages_text(messages))
        slots, images = [], []
        new_messages = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), list):
                new_messages.append(message)
                continue
            content = []
            for part in message["content"]:
                if isinstance(part, dict) and part.get("type") in ("image", "video", "audio"):
                    part = dict(part)
                    slots.append(part)
                    images.append(part.get("url"))
                content.append(part)
            new_messages.append({**message, "content": content})
        for part, image in zip(slots, self._replace_images(images, key)):
            part["url"] = image
        return new_messages

    def _prefetch(self) -> None:
        """Annotate the images of every doc in the current chunk, batched across docs."""
        jobs: list[tuple[Any, Any, Image.Image]] = []
        done = set()
        for (task, split), items in self._pending.items():
            for key, kind, original in items:
                if key in done:
                    continue
                done.add(key)
                try:
                    doc = self.task_dict[task][split][key[2]]
                    result = original(doc)
                except Exception:
                    continue  # the inner model's own call annotates it (unbatched)
                if kind == "messages":
                    if isinstance(result, tuple):
                        result = result[0]
                    visuals: list[Any] = [p.get("url") for m in (result or ()) if isinstance(m, dict)
                                          for p in _content_parts(m) if p.get("type") == "image"]
                    if key not in self._queries:
                        self._queries[key] = self.query_for(_messages_text(result))
                else:
                    visuals = list(result) if isinstance(result, (list, tuple)) else [result]
                jobs.extend((key, _fingerprint(v), v) for v in visuals if isinstance(v, Image.Image))
        if jobs:
            self._annotate_into_cache(jobs)


class AttnPromptChatLMM(AttnPromptLMM):
    """The chat-slot twin of :class:`AttnPromptLMM` (what ``--model attnprompt`` resolves to
    without ``--force_simple``): the inner model resolves to its chat implementation where it
    has one. Each instance reports the inner model's ``is_simple``, which decides the request
    format lmms-eval builds."""

    is_simple = False
    _inner_force_simple = False
