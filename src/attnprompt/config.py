"""Mask settings and named presets, as data.

A :class:`MaskConfig` holds every knob of the pipeline; a preset is a named ``MaskConfig``, one
table per auxiliary kind (``clip``: :data:`PRESETS`, ``lvlm``: :data:`LVLM_PRESETS`).
Layer indices are 0-based blocks as the official ``layer_index``; negative indices count from
the end (``-1`` = last block), so a preset means the same relative depth on any tower.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import AttnPromptError

__all__ = [
    "MaskConfig",
    "PRESETS",
    "LVLM_PRESETS",
    "presets_for",
    "DEFAULT_PRESET",
    "INTERPOLATIONS",
    "GEOMETRIES",
    "get_preset",
    "resolve_layer",
    "parse_layers",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
GEOMETRIES = ("stretch", "aligned", "tiled")
REDUCTIONS = ("official", "paper")
KINDS = ("clip", "lvlm")


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
            the model's native scale and stitches their maps (one forward per crop).
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

    def replace(self, **changes: Any) -> "MaskConfig":
        """A copy with some fields changed (``None`` values are ignored, except for ``comp_layer``,
        ``highlight`` and ``layers``, where ``None`` is a meaningful value)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise AttnPromptError(f"unknown mask option(s): {', '.join(sorted(unknown))}")
        kept = {k: v for k, v in changes.items() if v is not None or k in ("comp_layer", "highlight", "layers")}
        return dataclasses.replace(self, **kept)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: Mapping[str, MaskConfig] = {
    # The official API_CLIP script defaults: layer 22 of 24 for ViT-L/14-336 (second to last),
    # enhance 5, kernel 3, LANCZOS, black background, mask stretched over the whole image.
    "official": MaskConfig(layers=(-2,), comp_layer=-2, enhance=5.0, kernel=3,
                           interpolation="lanczos", gray=0, geometry="stretch"),
    # The settings behind the paper's LLaVA-1.5 numbers (enhance 1, BICUBIC), official geometry.
    "paper-llava": MaskConfig(layers=(-2,), comp_layer=-2, enhance=1.0, kernel=3,
                              interpolation="bicubic", gray=0, geometry="stretch"),
    # The project default: the official numbers, but the map lands on what CLIP saw. Identical
    # to "official" on square images; on non-square ones it fixes the official misalignment.
    "default": MaskConfig(layers=(-2,), comp_layer=-2, enhance=5.0, kernel=3,
                          interpolation="lanczos", gray=0, geometry="aligned"),
}
DEFAULT_PRESET = "default"

LVLM_PRESETS: Mapping[str, MaskConfig] = {
    # The official API_LLaVA script: decoder layer 20, attention of the last query position at
    # every forward call, enhance 5, kernel 3, LANCZOS, map stretched over the whole image. Its
    # --grayscale argument is never passed to its blend, whose default background is 200; this
    # preset follows what the code does.
    "official": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                           gray=200, geometry="stretch", reduction="official", max_new_tokens=20),
    # The project default: the same, with the grid mapped back through the processor's transform.
    "default": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                          gray=200, geometry="aligned", reduction="official", max_new_tokens=20),
    # The paper's definition: post-softmax attention weights, averaged over heads and tokens.
    "paper": MaskConfig(layers=None, comp_layer=None, enhance=5.0, kernel=3, interpolation="lanczos",
                        gray=200, geometry="aligned", reduction="paper", max_new_tokens=20),
}


def presets_for(kind: str) -> Mapping[str, MaskConfig]:
    """The preset table of an auxiliary kind (``clip`` or ``lvlm``)."""
    if kind not in KINDS:
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose one of {', '.join(KINDS)}")
    return PRESETS if kind == "clip" else LVLM_PRESETS


def get_preset(name: str | MaskConfig | None = None, *, kind: str = "clip", **overrides: Any) -> MaskConfig:
    """The named preset of ``kind`` (``None`` = the default) with ``overrides`` applied."""
    if isinstance(name, MaskConfig):
        base = name
    else:
        table = presets_for(kind)
        key = DEFAULT_PRESET if name is None else str(name).lower()
        if key not in table:
            raise AttnPromptError(f"unknown {kind} preset {name!r}; choose one of {', '.join(table)}")
        base = table[key]
    return base.replace(**overrides) if overrides else base


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
