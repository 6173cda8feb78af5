"""``attnprompt app``: the pipeline in the browser (Gradio Blocks), thin over the library.

One page: an image (upload or an example), the question, the auxiliary model (CLIP or LVLM, any
model the library loads, a preset and every :class:`~attnprompt.config.MaskConfig` knob as a
control), then original | heatmap with its colour bar | prompt image side by side. An LVLM
auxiliary's answer is shown; selecting part of it redraws the map from just those tokens
(``highlight``). A target panel asks a target model (a local transformers model, or an
OpenAI-compatible endpoint with its key from the environment) on the original and on the
prompted image. Models are loaded once and kept; requests go through Gradio's queue one at a
time; errors are shown in the page as one message.

The knob controls are built from ``MaskConfig``'s fields, so a new knob appears here by itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import traceback
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from . import config as config_module
from .config import MaskConfig, get_preset, parse_key_values, parse_layers, presets_for
from .errors import AttnPromptError

__all__ = ["build_app", "launch", "knob_names", "config_from_values", "shipped_models", "SHIPPED_DEFAULTS"]

SHIPPED_DEFAULTS = {"clip": "shapes-clip", "lvlm": "shapes-llava"}
"""The model each auxiliary kind starts on: shipped in the package, so the app works offline."""
HUB_DEFAULTS = {"clip": "openai/clip-vit-large-patch14-336", "lvlm": "llava-hf/llava-1.5-7b-hf"}
TARGET_KINDS = ("local model", "OpenAI-compatible endpoint")
_SLIDERS: dict[str, tuple[float, float, float]] = {"gray": (0, 255, 1), "enhance": (0, 20, 0.5), "kernel": (1, 15, 2)}
# small scenes fill their panel with crisp pixels (the files sent stay at their own size)
_CSS = ".panel img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"


# -- knobs: MaskConfig fields <-> controls ------------------------------------------------------

def knob_names() -> list[str]:
    """Every ``MaskConfig`` field, in declaration order: one control each."""
    return [f.name for f in dataclasses.fields(MaskConfig)]


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(MaskConfig)


def _choices(name: str) -> list[str] | None:
    """The allowed values of a string knob, from the module that owns them (never a copy here)."""
    if name == "style":
        try:
            from .styles import STYLES  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            return None
        return list(STYLES)
    table = getattr(config_module, name.upper() + "S", None)
    return list(table) if isinstance(table, (tuple, list)) else None


def _docs() -> dict[str, str]:
    """One-line help per field, from the ``Attributes:`` section of ``MaskConfig``'s docstring."""
    out: dict[str, str] = {}
    doc = MaskConfig.__doc__ or ""
    current = None
    for line in doc.split("Attributes:", 1)[-1].splitlines():
        m = re.match(r"^\s{8}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.startswith(" " * 12):
            out[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" " * 8):
            current = None
    return out


def _base(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> ``(int, True)``."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    return typing.get_origin(hint) or hint, optional


def _pairs(name: str) -> bool:
    """A field of KEY=VALUE settings (its default is a tuple of pairs or a mapping)."""
    default = {f.name: f for f in dataclasses.fields(MaskConfig)}[name].default
    return _base(_hints()[name])[0] not in (tuple, int, float, str, bool) and isinstance(default, (tuple, dict))


def _display(name: str, value: Any) -> Any:
    """A config value as its control shows it."""
    if _pairs(name):
        return ", ".join(f"{k}={v}" for k, v in dict(value or ()).items())
    hint, optional = _base(_hints()[name])
    if hint is tuple:
        return "" if value is None else ",".join(str(v) for v in value)
    if value is None:
        return ""
    return str(value) if optional and hint is not str else value  # optional numbers sit in a textbox


def config_from_values(kind: str, preset: str | None, values: dict[str, Any]) -> MaskConfig:
    """The preset of ``kind`` with every knob set from the controls' values (``""`` = none)."""
    hints = _hints()
    overrides: dict[str, Any] = {}
    for name, value in values.items():
        hint, optional = _base(hints[name])
        if _pairs(name):
            text = str(value or "").replace(",", " ").split()
            overrides[name] = parse_key_values(text, name.replace("_", " "))
            continue
        if isinstance(value, str):
            value = value.strip()
            if value == "" and (optional or hint is not str):
                overrides[name] = None
                continue
        try:
            if hint is tuple:
                value = parse_layers([value]) if isinstance(value, str) else tuple(value)
            elif hint is int:
                value = int(float(value))
            elif hint is float:
                value = float(value)
            elif hint is bool:
                value = bool(value)
        except (TypeError, ValueError):
            raise AttnPromptError(f"{name.replace('_', ' ')}: {value!r} is not a valid value") from None
        overrides[name] = value
    base = get_preset(preset or None, kind=kind)  # every field is set below; the preset checks the name
    return dataclasses.replace(base, **overrides)


def shipped_models(kind: str) -> list[str]:
    """Names of the models shipped in the package for an auxiliary kind."""
    import json

    from .auxiliary.hub import SHIPPED_MODELS_DIR

    names = []
    for folder in sorted(SHIPPED_MODELS_DIR.iterdir()):
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            continue
        if (model_type == "clip") == (kind == "clip"):
            names.append(folder.name)
    return names


# -- models, loaded once -------------------------------------------------------------------------

class Models:
    """Auxiliary prompters and targets, loaded on first use and kept (one lock: one load at a time)."""

    def __init__(self, device: str | None = None, dtype: str | None = None) -> None:
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._targets: dict[tuple, Any] = {}

    def prompter(self, kind: str, model: str) -> Any:
        from .prompter import cached_prompter

        if not model.strip():
            raise AttnPromptError("give a model: a shipped name (shapes-clip), a hub id or a local folder")
        with self._lock:
            return cached_prompter(model.strip(), kind=kind, device=self.device, dtype=self.dtype)

    def target(self, kind: str, model: str, endpoint: str, key_env: str, max_new_tokens: int) -> Any:
        model = model.strip()
        if not model:
            raise AttnPromptError("give a target model")
        key = (kind, model, endpoint.strip(), key_env.strip(), int(max_new_tokens))
        with self._lock:
            if key not in self._targets:
                if kind == TARGET_KINDS[1]:
                    from .targets import OpenAIEndpointTarget

                    self._targets[key] = OpenAIEndpointTarget(
                        model, base_url=endpoint.strip() or None, api_key_env=key_env.strip() or "OPENAI_API_KEY",
                        max_tokens=int(max_new_tokens), max_retries=2, timeout=60.0)
                else:
                    from .prompter import cached_prompter
                    from .targets.hf import HFTarget

                    # shares the weights with the LVLM auxiliary of the same name
                    aux = cached_prompter(model, kind="lvlm", device=self.device, dtype=self.dtype).auxiliary
                    self._targets[key] = HFTarget(model, max_new_tokens=int(max_new_tokens), auxiliary=aux)
            return self._targets[key]


def _in_page(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Errors become one message in the page (a ``gr.Error``); warnings a ``gr.Warning``."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn(*args)
            for w in caught:
                if issubclass(w.category, UserWarning):
                    gr.Warning(str(w.message))
            return out
        except gr.Error:
            raise
        except AttnPromptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - a page shows a message, never a traceback
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(f"{type(exc).__name__}: {exc}", print_exception=False) from None

    return wrapped


# -- the page ----------------------------------------------------------------------------------

def _examples(folder: str | os.PathLike[str] | None) -> list[str]:
    """Example images: the given folder, else the repository's ``examples/``, plus shapes scenes."""
    from .shapes.world import make_scene

    found: list[str] = []
    candidates = [Path(folder)] if folder else [Path.cwd() / "examples", Path(__file__).resolve().parents[2] / "examples"]
    for cand in candidates:
        if cand.is_dir():
            found = [str(p) for p in sorted(cand.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
            break
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnprompt" / "app-examples"
    cache.mkdir(parents=True, exist_ok=True)
    for seed, size in ((11, (64, 64)), (5, (128, 64))):
        path = cache / f"shapes_{seed}_{size[0]}x{size[1]}.png"
        if not path.exists():
            make_scene(seed, size=size).image.save(path)
        found.append(str(path))
    return found


def build_app(
    *,
    device: str | None = "cpu",
    dtype: str | None = None,
    examples: str | os.PathLike[str] | None = None,
    models: Models | None = None,
) -> Any:
    """The ``gr.Blocks`` page. ``device``/``dtype`` apply to every model it loads."""
    import gradio as gr

    from .figure import COLORBAR_LABEL, heatmap_with_colorbar, settings_text

    models = models or Models(device, dtype)
    names = knob_names()
    hints, docs = _hints(), _docs()
    lvlm_only = set(getattr(config_module, "LVLM_ONLY_FIELDS", ()))
    clip_only = set(getattr(config_module, "CLIP_ONLY_FIELDS", ()))
    start = models.prompter("clip", SHIPPED_DEFAULTS["clip"]).config  # loaded once, at start

    def preset_settings(kind: str, preset: str, model: str) -> list[Any]:
        """Every knob's value under a preset; ``default`` is the model's own (its preset file, if any)."""
        if not preset or preset.strip().lower() == "default":
            cfg = models.prompter(kind, model).config
        else:
            cfg = get_preset(preset.strip(), kind=kind)
        return [_display(n, getattr(cfg, n)) for n in names]

    def style_defaults(style: str) -> str:
        from .styles import STYLES

        params = STYLES[style].params if style in STYLES else {}
        return ", ".join(f"{k}={p.default}" for k, p in params.items())

    def kind_changed(kind: str) -> list[Any]:
        presets = list(presets_for(kind))
        model_choices = shipped_models(kind) + [HUB_DEFAULTS[kind]]
        hidden = clip_only if kind == "lvlm" else lvlm_only
        return ([gr.update(choices=model_choices, value=SHIPPED_DEFAULTS[kind]),
                 gr.update(choices=presets, value="default")]
                + [gr.update(value=v, visible=n not in hidden)
                   for n, v in zip(names, preset_settings(kind, "default", SHIPPED_DEFAULTS[kind]))]
                + [gr.update(visible=kind == "lvlm")])

    def annotate(image: Image.Image | None, question: str, kind: str, model: str, preset: str, *values: Any):
        if image is None:
            raise AttnPromptError("upload an image or pick an example")
        if not (question or "").strip():
            raise AttnPromptError("type a question about the image")
        config = config_from_values(kind, preset, dict(zip(names, values)))
        prompter = models.prompter(kind, model)
        [result] = prompter.annotate(image, question, **config.to_dict())
        caption = settings_text(result, model.strip(), preset)
        return (result.original, heatmap_with_colorbar(result), result.image, result.answer or "", caption)

    def ask_target(image: Image.Image | None, prompt: Image.Image | None, question: str, kind: str,
                   target: str, endpoint: str, key_env: str, max_new_tokens: float) -> tuple[str, str]:
        if image is None or prompt is None:
            raise AttnPromptError("make the prompt image first (Run), then ask the target")
        if not (question or "").strip():
            raise AttnPromptError("type a question about the image")
        model = models.target(kind, target, endpoint, key_env, int(max_new_tokens or 32))
        original, prompted = model.answer([image.convert("RGB"), prompt.convert("RGB")], [question, question])
        return original, prompted

    def take_selection(selection: Any) -> str:
        return str(selection.value or "")

    take_selection.__annotations__["selection"] = gr.SelectData  # how Gradio knows to pass the selection

    with gr.Blocks(title="attnprompt: attention prompting on image", analytics_enabled=False) as page:
        gr.Markdown(
            "## Attention prompting on image\n"
            "An auxiliary model (a CLIP, or a vision-language model) reads the image with your question and "
            "says which regions matter; the rest of the image is faded to gray, and the target model answers "
            "the same question on that **prompt image**. Start with an example: the shipped `shapes-clip` and "
            "`shapes-llava` are tiny models of a synthetic world of shapes and work offline; for photos use a "
            f"real model (`{HUB_DEFAULTS['clip']}`, `{HUB_DEFAULTS['lvlm']}`).")
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(type="pil", label="image", sources=["upload", "clipboard"], elem_id="input-image",
                                 height=300, elem_classes="panel")
                question = gr.Textbox(label="question", placeholder="What color is the car?", elem_id="question")
                run = gr.Button("Run", variant="primary", elem_id="run")
                gr.Examples(examples=[[p] for p in _examples(examples)], inputs=[image], label="examples")
            with gr.Column(scale=1):
                with gr.Row():
                    kind = gr.Radio(["clip", "lvlm"], value="clip", label="auxiliary kind",
                                    info="clip: a CLIP's attention; lvlm: the attention of a VLM's own answer")
                    preset = gr.Dropdown(list(presets_for("clip")), value="default", label="preset",
                                         allow_custom_value=True, info="named settings, or a preset file's path")
                model = gr.Dropdown(shipped_models("clip") + [HUB_DEFAULTS["clip"]], value=SHIPPED_DEFAULTS["clip"],
                                    label="auxiliary model", allow_custom_value=True, elem_id="model",
                                    info="a shipped model, a hub id or a local folder; loaded once")
                with gr.Accordion("knobs (every setting of the mask; a preset sets them all)", open=False):
                    controls = []
                    for name in names:
                        controls.append(_control(gr, name, hints[name], _display(name, getattr(start, name)),
                                                 docs.get(name, ""), visible=name not in lvlm_only))
        with gr.Row(equal_height=True):
            original_out = gr.Image(type="pil", format="png", label="original", interactive=False,
                                    elem_id="original", height=360, elem_classes="panel")
            heatmap_out = gr.Image(type="pil", format="png", label=f"attention map ({COLORBAR_LABEL})",
                                   interactive=False, elem_id="heatmap", height=360)
            prompt_out = gr.Image(type="pil", format="png", label="prompt image (what the target sees)",
                                  interactive=False, elem_id="prompt", height=360, elem_classes="panel")
        settings = gr.Markdown(elem_id="settings")
        with gr.Group(visible=False) as answer_group:
            answer = gr.Textbox(label="the auxiliary's own answer (select words to redraw the map from just "
                                      "those tokens)", interactive=True, elem_id="aux-answer")
        with gr.Accordion("ask a target model on the original and on the prompt image", open=True):
            with gr.Row():
                target_kind = gr.Radio(list(TARGET_KINDS), value=TARGET_KINDS[0], label="target")
                target = gr.Textbox(value=SHIPPED_DEFAULTS["lvlm"], label="target model",
                                    info="local: shipped name, hub id or folder; endpoint: the served model name")
                endpoint = gr.Textbox(label="endpoint base URL (OpenAI-compatible)",
                                      placeholder="http://localhost:8000/v1 (default: $OPENAI_BASE_URL)")
                key_env = gr.Textbox(value="OPENAI_API_KEY", label="environment variable with the API key")
                max_new = gr.Number(value=32, precision=0, label="answer length (tokens)")
            ask = gr.Button("Ask the target", elem_id="ask")
            with gr.Row():
                on_original = gr.Textbox(label="answer on the original", interactive=False, elem_id="answer-original")
                on_prompt = gr.Textbox(label="answer on the prompt image", interactive=False, elem_id="answer-prompt")

        inputs = [image, question, kind, model, preset, *controls]
        outputs = [original_out, heatmap_out, prompt_out, answer, settings]
        run.click(_in_page(annotate), inputs, outputs, api_name="annotate")
        question.submit(_in_page(annotate), inputs, outputs, api_visibility="private")
        highlight = controls[names.index("highlight")] if "highlight" in names else None
        if highlight is not None:
            answer.select(take_selection, None, highlight, api_visibility="private").then(
                _in_page(annotate), inputs, outputs, api_visibility="private")
        ask.click(_in_page(ask_target),
                  [image, prompt_out, question, target_kind, target, endpoint, key_env, max_new],
                  [on_original, on_prompt], api_name="ask_target")
        preset.change(_in_page(preset_settings), [kind, preset, model], controls, api_name="preset_settings")
        model.change(_in_page(preset_settings), [kind, preset, model], controls, api_visibility="private")
        if "style" in names and "style_params" in names:  # a new style starts from its own parameters
            controls[names.index("style")].change(style_defaults, controls[names.index("style")],
                                                  controls[names.index("style_params")], api_visibility="private")
        kind.change(_in_page(kind_changed), [kind], [model, preset, *controls, answer_group],
                    api_visibility="private")
    page.queue(default_concurrency_limit=1, max_size=32)
    return page


def _control(gr: Any, name: str, hint: Any, value: Any, doc: str, visible: bool = True) -> Any:
    """One control for one MaskConfig field, chosen from its type (and its choices, if any)."""
    base, optional = _base(hint)
    label = name.replace("_", " ")
    common = dict(label=label, info=doc or None, visible=visible, elem_id=f"knob-{name}")
    choices = _choices(name)
    if choices is not None:
        return gr.Dropdown(choices, value=value, **common)
    if base is bool:
        return gr.Checkbox(value=bool(value), **common)
    if base in (int, float) and not optional:
        if name in _SLIDERS:
            lo, hi, step = _SLIDERS[name]
            return gr.Slider(lo, hi, value=value, step=step, **common)
        return gr.Number(value=value, precision=0 if base is int else None, **common)
    placeholder = "layers, e.g. -2 or -4..-1 (empty: the model's default)" if base is tuple else "empty: none"
    return gr.Textbox(value=value, placeholder=placeholder, **common)


def launch(
    page: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    auth: Sequence[tuple[str, str]] | None = None,
    block: bool = True,
) -> Any:
    """Serve the page (bound to ``host``; 127.0.0.1 unless asked otherwise)."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts: offline
    return page.launch(server_name=host, server_port=port, share=share, auth=list(auth) if auth else None,
                       prevent_thread_lock=not block, show_error=True, quiet=not block, ssr_mode=False,
                       theme=theme, footer_links=["api"], css=_CSS)


def parse_auth(spec: str | None) -> list[tuple[str, str]] | None:
    """``USER:PASSWORD`` (comma-separated for several), or ``@FILE`` with one pair per line."""
    if not spec:
        return None
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec.replace(",", "\n")
    pairs = []
    for line in text.splitlines():
        if line.strip():
            user, sep, password = line.strip().partition(":")
            if not sep or not user or not password:
                raise AttnPromptError("--auth takes USER:PASSWORD (comma-separated for several) or @FILE")
            pairs.append((user, password))
    return pairs
