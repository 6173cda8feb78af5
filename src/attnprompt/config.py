"""Mask settings and named presets, as data.

A :class:`MaskConfig` holds every knob of the pipeline; a preset is a named ``MaskConfig``, one
table per auxiliary kind (``clip``: :data:`PRESETS`, ``lvlm``: :data:`LVLM_PRESETS`).
Layer indices are 0-based blocks as the official ``layer_index``; negative indices count from
the end (``-1`` = last block), so a preset means the same relative depth on any tower.

A preset can also be a file (:func:`load_preset_file`, the format of :data:`PRESET_FORMAT`), and a
model folder may carry its own recommended preset as ``attnprompt_preset.json`` beside its
``config.json`` (as ``generation_config.json`` does for generation): ``preset="default"`` resolves to
it for that model (:func:`resolve_preset`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import AttnPromptError

__all__ = [
    "MaskConfig",
    "AuxiliarySettings",
    "PRESETS",
    "LVLM_PRESETS",
    "presets_for",
    "DEFAULT_PRESET",
    "INTERPOLATIONS",
    "GEOMETRIES",
    "get_preset",
    "resolve_layer",
    "parse_layers",
    "PresetFile",
    "PRESET_FORMAT",
    "MODEL_PRESET_FILE",
    "load_preset_file",
    "write_preset_file",
    "model_preset_path",
    "resolve_preset",
    "REFERENCE_GRID",
    "is_preset_path",
    "preset_file_text",
    "parse_key_values",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
GEOMETRIES = ("auto", "stretch", "aligned", "tiled")
REFERENCE_GRID = 24
"""The token grid side the official numbers were set for (LLaVA-1.5's and ViT-L/14-336's 24 x 24):
the ``kernel_grid`` of the scale-aware presets."""
REDUCTIONS = ("official", "paper")
KINDS = ("clip", "lvlm")
LVLM_ONLY_FIELDS = ("reduction", "max_new_tokens", "highlight")
"""MaskConfig fields that only an LVLM auxiliary reads."""
CLIP_ONLY_FIELDS = ("comp_layer",)
"""MaskConfig fields that only a CLIP auxiliary reads."""


@dataclass(frozen=True)
class MaskConfig:
    """Every setting of the CLIP attention-prompting pipeline.

    Attributes:
        layers: blocks whose CLS attention builds ``psi_cls`` (summed over these blocks).
            The official code uses one block, the second to last (``(-2,)``); the paper sums a
            range of late blocks.
        comp_layer: block after which the residual stream gives ``psi_comp``; ``None`` disables
            the complementary map.
        enhance: sharpening coefficient of :func:`attnprompt.maps.enhance`.
        kernel: odd size of the mean filter applied in token space (1 = none).
        interpolation: resize filter from the token grid to pixels.
        gray: background level (0-255) that masked regions fade to.
        geometry: ``"stretch"`` spreads the map over the whole image (official; misaligned on
            non-square images); ``"aligned"`` maps the grid back onto exactly the region the
            auxiliary model saw (letterboxing the image first where its processor would crop);
            ``"tiled"`` (CLIP only) covers a non-square image with overlapping square crops at
            the model's native scale and stitches their maps (one forward per crop); ``"auto"``
            is ``aligned`` up to :data:`attnprompt.geometry.AUTO_MAX_ASPECT` (5:4) and ``tiled``
            beyond for CLIP, ``aligned`` for an LVLM.
        kernel_grid: the grid side ``kernel`` is defined for; on a map whose short side has ``n``
            tokens the filter is ``kernel * n / kernel_grid`` rounded to the nearest odd size
            (:func:`attnprompt.maps.grid_kernel`). ``None``: ``kernel`` tokens on any grid (official).
        strict_order: the enhance step and the final normalisation keep the raw map's order, so
            a saturated sigmoid never turns the top cells into ties (:func:`attnprompt.maps.enhance`;
            values move by at most ``2**-9``, half an 8-bit gray level).
        style: how the pixel mask becomes the prompt image(s): a name in
            :data:`attnprompt.styles.STYLES` (``"alpha"``: the official blend).
        style_params: the style's parameters (``{"floor": 0.3}``...); missing ones take the
            style's defaults.
        reduction: LVLM only. ``"official"``: pre-softmax scores of the last query over the
            image span, softmax over that span, mean over heads; ``"paper"``: post-softmax
            attention weights over all keys, restricted to the image span, mean over heads.
        max_new_tokens: LVLM only: length of the auxiliary model's greedy answer.
        highlight: LVLM only: build the map from the answer tokens that spell this text.

    For the LVLM kind ``layers`` are decoder layers, ``None`` meaning the family default
    (layer 20 for 32- and 40-layer decoders as the official code, else the same relative depth).
    """

    layers: tuple[int, ...] | None = (-2,)
    comp_layer: int | None = -2
    enhance: float = 5.0
    kernel: int = 3
    interpolation: str = "lanczos"
    gray: int = 0
    geometry: str = "aligned"
    reduction: str = "official"
    max_new_tokens: int = 20
    highlight: str | None = None
    kernel_grid: int | None = None
    strict_order: bool = False
    style: str = "alpha"
    # stored as sorted (name, value) pairs so the config stays hashable; to_dict gives a dict
    style_params: Any = field(default=())

    def __post_init__(self) -> None:
        if self.layers is not None:
            layers = tuple(int(x) for x in (self.layers if isinstance(self.layers, Iterable) else (self.layers,)))
            if not layers:
                raise AttnPromptError("at least one layer is needed")
            if len(set(layers)) != len(layers):
                raise AttnPromptError(f"repeated layer in {list(layers)}")
            object.__setattr__(self, "layers", layers)
        reduction = str(self.reduction).lower()
        if reduction not in REDUCTIONS:
            raise AttnPromptError(f"unknown reduction {self.reduction!r}; choose one of {', '.join(REDUCTIONS)}")
        object.__setattr__(self, "reduction", reduction)
        if isinstance(self.max_new_tokens, bool) or int(self.max_new_tokens) != self.max_new_tokens or self.max_new_tokens < 1:
            raise AttnPromptError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens}")
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        if self.highlight is not None and not str(self.highlight).strip():
            raise AttnPromptError("highlight text is empty")
        if self.comp_layer is not None:
            object.__setattr__(self, "comp_layer", int(self.comp_layer))
        if isinstance(self.kernel, bool) or int(self.kernel) != self.kernel or self.kernel < 1 or self.kernel % 2 == 0:
            raise AttnPromptError(f"kernel size must be a positive odd integer (1, 3, 5, ...), got {self.kernel}")
        object.__setattr__(self, "kernel", int(self.kernel))
        interp = str(self.interpolation).lower()
        if interp not in INTERPOLATIONS:
            raise AttnPromptError(f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "interpolation", interp)
        if isinstance(self.gray, bool) or int(self.gray) != self.gray or not 0 <= self.gray <= 255:
            raise AttnPromptError(f"gray must be an integer in 0-255, got {self.gray}")
        object.__setattr__(self, "gray", int(self.gray))
        geometry = str(self.geometry).lower()
        if geometry not in GEOMETRIES:
            raise AttnPromptError(f"unknown geometry {self.geometry!r}; choose one of {', '.join(GEOMETRIES)}")
        object.__setattr__(self, "geometry", geometry)
        try:
            enhance = float(self.enhance)
        except (TypeError, ValueError):
            raise AttnPromptError(f"enhance must be a number, got {self.enhance!r}") from None
        if not enhance == enhance or enhance in (float("inf"), float("-inf")):
            raise AttnPromptError(f"enhance must be finite, got {self.enhance}")
        object.__setattr__(self, "enhance", enhance)
        if self.kernel_grid is not None:
            kg = self.kernel_grid
            if isinstance(kg, bool) or int(kg) != kg or kg < 1:
                raise AttnPromptError(f"kernel_grid must be a positive integer (a grid side) or None, got {kg}")
            object.__setattr__(self, "kernel_grid", int(kg))
        if not isinstance(self.strict_order, bool):
            raise AttnPromptError(f"strict_order must be true or false, got {self.strict_order!r}")
        from .styles import check_style  # styles import no config at module level

        style, params = check_style(str(self.style).lower(), self.style_params)
        object.__setattr__(self, "style", style)
        object.__setattr__(self, "style_params", tuple(sorted(params.items())))

    @property
    def style_options(self) -> dict[str, Any]:
        """The style's parameters as given (the style fills in its defaults when rendering)."""
        return dict(self.style_params)

    def replace(self, **changes: Any) -> "MaskConfig":
        """A copy with some fields changed (``None`` values are ignored, except for ``comp_layer``,
        ``highlight``, ``layers`` and ``kernel_grid``, where ``None`` is a meaningful value)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise AttnPromptError(f"unknown mask option(s): {', '.join(sorted(unknown))}")
        kept = {k: v for k, v in changes.items()
                if v is not None or k in ("comp_layer", "highlight", "layers", "kernel_grid")}
        return dataclasses.replace(self, **kept)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["style_params"] = dict(self.style_params)
        return out

    @property
    def auxiliary(self) -> "AuxiliarySettings":
        """The settings the auxiliary model computes its token maps from (the rest is post-processing)."""
        return AuxiliarySettings(layers=self.layers, comp_layer=self.comp_layer, reduction=self.reduction,
                                 max_new_tokens=self.max_new_tokens, highlight=self.highlight,
                                 geometry=self.geometry)


@dataclass(frozen=True)
class AuxiliarySettings:
    """What an auxiliary model needs of a :class:`MaskConfig`: the fields that change its token maps.

    The mask stage (``enhance``, ``kernel``...), the pixel stage (``interpolation``) and the
    rendering (``gray``, ``style``...) never reach a model adapter. Fields as in :class:`MaskConfig`.
    """

    layers: tuple[int, ...] | None = (-2,)
    comp_layer: int | None = -2
    reduction: str = "official"
    max_new_tokens: int = 20
    highlight: str | None = None
    geometry: str = "aligned"

    @staticmethod
    def of(config: "MaskConfig | AuxiliarySettings") -> "AuxiliarySettings":
        """``config``'s auxiliary settings (a settings object is returned as is)."""
        return config if isinstance(config, AuxiliarySettings) else config.auxiliary


PRESETS: Mapping[str, MaskConfig] = {
    # The official API_CLIP script defaults: layer 22 of 24 for ViT-L/14-336 (second to last),
    # enhance 5, kernel 3, LANCZOS, black background, mask stretched over the whole image.
    "official": MaskConfig(layers=(-2,), comp_layer=-2, enhance=5.0, kernel=3,
                           interpolation="lanczos", gray=0, geometry="stretch"),
    # The settings behind the paper's LLaVA-1.5 numbers (enhance 1, BICUBIC), official geometry.
    "paper-llava": MaskConfig(layers=(-2,), comp_layer=-2, enhance=1.0, kernel=3,
                              interpolation="bicubic", gray=0, geometry="stretch"),
    # The project default: the official numbers where they were set (a 24 x 24 grid), the map
    # where CLIP looked (letterboxed near-square images, tiles for elongated ones), the kernel
    # scaled to other grids, and no ties from a saturated enhance. On a square image and a 24 x 24
    # grid it differs from "official" only where the official sigmoid saturates into ties.
    "default": MaskConfig(layers=(-2,), comp_layer=-2, enhance=5.0, kernel=3,
                          interpolation="lanczos", gray=0, geometry="auto",
                          kernel_grid=REFERENCE_GRID, strict_order=True),
}
DEFAULT_PRESET = "default"
DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"
"""The auxiliary model when none is named: the paper's CLIP (from the hub)."""

LVLM_PRESETS: Mapping[str, MaskConfig] = {
    # The official API_LLaVA script: decoder layer 20, attention of the last query position at
    # every forward call, enhance 5, kernel 3, LANCZOS, map stretched over the whole image. Its
    # --grayscale argument is never passed to its blend, whose default background is 200; this
    # preset follows what the code does.
    "official": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                           gray=200, geometry="stretch", reduction="official", max_new_tokens=20),
    # The project default: the same numbers on a 24 x 24 grid, with the grid mapped back through
    # the processor's transform, the kernel scaled to other grids and no ties from the enhance.
    "default": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                          gray=200, geometry="aligned", reduction="official", max_new_tokens=20,
                          kernel_grid=REFERENCE_GRID, strict_order=True),
    # The paper's definition: post-softmax attention weights, averaged over heads and tokens.
    "paper": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                        gray=200, geometry="aligned", reduction="paper", max_new_tokens=20,
                        kernel_grid=REFERENCE_GRID, strict_order=True),
}


def presets_for(kind: str) -> Mapping[str, MaskConfig]:
    """The preset table of an auxiliary kind (``clip`` or ``lvlm``)."""
    if kind not in KINDS:
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose one of {', '.join(KINDS)}")
    return PRESETS if kind == "clip" else LVLM_PRESETS


def get_preset(name: str | os.PathLike[str] | MaskConfig | None = None, *, kind: str = "clip",
               **overrides: Any) -> MaskConfig:
    """The named preset of ``kind`` (``None`` = the built-in default), or a preset file
    (:func:`load_preset_file`), with ``overrides`` applied."""
    if isinstance(name, MaskConfig):
        base = name
    else:
        table = presets_for(kind)
        key = DEFAULT_PRESET if name is None else str(name).lower()
        if key in table:
            base = table[key]
        elif is_preset_path(name):
            preset = load_preset_file(name)  # type: ignore[arg-type]
            if preset.kind != kind:
                raise AttnPromptError(f"preset file {str(name)!r} is for a {preset.kind} auxiliary, not {kind}")
            base = preset.config
        else:
            raise AttnPromptError(f"unknown {kind} preset {name!r}; choose one of {', '.join(table)} "
                                  "or give a preset file (.json)")
    return base.replace(**overrides) if overrides else base


# --- preset files ---------------------------------------------------------------------------------

PRESET_FORMAT = "attnprompt-preset"
PRESET_VERSION = 1
MODEL_PRESET_FILE = "attnprompt_preset.json"
"""A model folder's recommended preset: what ``preset="default"`` means for that model."""


@dataclass(frozen=True)
class PresetFile:
    """A preset read from a file.

    The file is JSON: ``{"format": "attnprompt-preset", "version": 1, "kind": "clip" | "lvlm",
    "settings": {MaskConfig field: value, ...}, "benchmark": optional name, "source": optional
    text}``. Fields ``settings`` leaves out take the kind's built-in ``default`` preset's values.
    """

    kind: str
    config: MaskConfig
    benchmark: str | None = None
    source: str | None = None
    path: str | None = None


def is_preset_path(name: object) -> bool:
    """A preset argument that names a file rather than a built-in preset."""
    if isinstance(name, os.PathLike):
        return True
    text = str(name)
    return text.lower().endswith(".json") or os.sep in text or "/" in text or Path(text).is_file()


def load_preset_file(path: str | os.PathLike[str]) -> PresetFile:
    """Read and validate a preset file (the format of :class:`PresetFile`); clear errors."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttnPromptError(f"preset file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AttnPromptError(f"cannot read preset file {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise AttnPromptError(f"preset file {str(path)!r} is not valid JSON: {exc}") from None
    where = f"preset file {str(path)!r}"
    if not isinstance(data, dict) or data.get("format") != PRESET_FORMAT:
        raise AttnPromptError(f"{where} is not an attnprompt preset (it needs \"format\": \"{PRESET_FORMAT}\")")
    if data.get("version") != PRESET_VERSION:
        raise AttnPromptError(f"{where} has version {data.get('version')!r}; this attnprompt reads version "
                              f"{PRESET_VERSION}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise AttnPromptError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise AttnPromptError(f"{where}: settings must be an object of MaskConfig fields")
    if isinstance(settings.get("layers"), list):
        settings = {**settings, "layers": tuple(settings["layers"])}
    try:
        config = presets_for(kind)[DEFAULT_PRESET].replace(**settings)
    except AttnPromptError as exc:
        raise AttnPromptError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise AttnPromptError(f"{where}: bad setting: {exc}") from None
    for key in ("benchmark", "source"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise AttnPromptError(f"{where}: {key} must be a string")
    return PresetFile(kind=kind, config=config, benchmark=data.get("benchmark"), source=data.get("source"),
                      path=str(p))


def preset_file_text(config: MaskConfig, kind: str, *, benchmark: str | None = None,
                     source: str | None = None) -> str:
    """The JSON text of a preset file holding every field of ``config``."""
    if kind not in KINDS:
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose one of {', '.join(KINDS)}")
    data: dict[str, Any] = {"format": PRESET_FORMAT, "version": PRESET_VERSION, "kind": kind,
                            "settings": config.to_dict()}
    if benchmark is not None:
        data["benchmark"] = benchmark
    if source is not None:
        data["source"] = source
    return json.dumps(data, indent=1) + "\n"


def write_preset_file(path: str | os.PathLike[str], config: MaskConfig, kind: str, *,
                      benchmark: str | None = None, source: str | None = None) -> Path:
    """Write ``config`` as a preset file (atomically); :func:`load_preset_file` reads it back equal."""
    from .files import atomic_write_text

    text = preset_file_text(config, kind, benchmark=benchmark, source=source)
    atomic_write_text(path, text)
    return Path(path)


def model_preset_path(model: str | os.PathLike[str] | None) -> Path | None:
    """The model's own ``attnprompt_preset.json``: in a local model folder, or in the local hub
    cache for a hub id (never downloaded here). ``None`` when the model has none."""
    if model is None:
        return None
    folder = Path(str(model)).expanduser()
    if folder.is_dir():
        candidate = folder / MODEL_PRESET_FILE
        return candidate if candidate.is_file() else None
    if str(model).count("/") == 1 and not str(model).startswith(("hf-hub:", "local-dir:")):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), MODEL_PRESET_FILE)
        except Exception:  # an odd id or cache layout just means: no model preset
            return None
        return Path(cached) if isinstance(cached, str) else None
    return None


def resolve_preset(name: str | os.PathLike[str] | MaskConfig | None, *, kind: str,
                   model: str | os.PathLike[str] | None = None, **overrides: Any) -> MaskConfig:
    """:func:`get_preset`, where ``None`` / ``"default"`` means the model's own preset file when
    it has one (:func:`model_preset_path`), else the built-in default."""
    if name is None or (isinstance(name, str) and name.lower() == DEFAULT_PRESET):
        path = model_preset_path(model)
        if path is not None:
            preset = load_preset_file(path)
            if preset.kind != kind:
                raise AttnPromptError(f"{path} is a {preset.kind} preset, but the model is a {kind} auxiliary")
            return get_preset(preset.config, kind=kind, **overrides)
    return get_preset(name, kind=kind, **overrides)


def resolve_layer(index: int, num_layers: int, what: str = "layer", tower: str = "the vision tower") -> int:
    """Map a possibly negative block index to ``0..num_layers-1`` or fail with a clear message."""
    resolved = index + num_layers if index < 0 else index
    if not 0 <= resolved < num_layers:
        raise AttnPromptError(
            f"{what} {index} is out of range: {tower} has {num_layers} blocks "
            f"(valid: 0..{num_layers - 1} or -{num_layers}..-1)"
        )
    return resolved


#: Longest ``--layer A..B`` range accepted (the largest models have a few hundred blocks).
MAX_LAYER_RANGE = 10_000


def parse_layers(specs: Iterable[str | int]) -> tuple[int, ...]:
    """Parse CLI layer specs: ``"22"``, ``"-2"``, ranges ``"20..23"`` / ``"-4..-1"`` (inclusive)."""
    out: list[int] = []
    for spec in specs:
        if isinstance(spec, int):
            out.append(spec)
            continue
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if ".." in part:
                    a, b = (int(s) for s in part.split("..", 1))
                    if (a < 0) != (b < 0) or b < a:
                        raise ValueError
                    if b - a >= MAX_LAYER_RANGE:  # checked before the range is built
                        raise AttnPromptError(
                            f"bad layer spec {part!r}: a range of {b - a + 1} layers; models have far fewer")
                    out.extend(range(a, b + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise AttnPromptError(
                    f"bad layer spec {part!r}: use an integer (22, -2) or an inclusive range (20..23, -4..-1)"
                ) from None
    return tuple(out)


def parse_key_values(specs: Iterable[str], what: str = "option") -> dict[str, Any]:
    """``["floor=0.3", "color=blue"]`` -> ``{"floor": 0.3, "color": "blue"}`` (numbers parsed)."""
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = str(spec).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise AttnPromptError(f"bad {what} {spec!r}: use KEY=VALUE")
        out[key] = parse_value(value.strip())
    return out


def parse_value(text: str) -> Any:
    """A setting's value from text: an int, a float, true/false/none, or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
