"""Per-benchmark mask settings as data: benchmark -> preset, with where each setting comes from.

The table holds the settings the paper's authors state per dataset (the official repository's
tutorial, ``sglang_inference/tutorial.ipynb`` of yu-rp/apiprompting, for CLIP ViT-L/14-336 with
LLaVA-1.5-13B as target); a benchmark without a stated setting uses the kind's ``default``
preset. Preset files that ``attnprompt tune`` writes (``attnprompt-preset`` files naming a
``benchmark``) extend and override the table when their folder is given (``--presets-dir DIR``
or ``$ATTNPROMPT_PRESETS_DIR``).

Precedence in ``attnprompt eval`` (first that applies):

1. ``--preset NAME|FILE`` (Python: ``preset=``): used for every benchmark, as given;
2. a preset file for this benchmark and auxiliary kind in the presets folder (the last one in
   name order when several match);
3. this table's entry for the benchmark and kind;
4. the kind's ``default`` preset (which a model folder's ``attnprompt_preset.json`` refines).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import MaskConfig, get_preset
from ..errors import AttnPromptError

__all__ = ["BenchmarkPreset", "BENCHMARK_PRESETS", "PRESETS_DIR_ENV", "benchmark_presets", "benchmark_preset"]

PRESETS_DIR_ENV = "ATTNPROMPT_PRESETS_DIR"
_TUTORIAL = "yu-rp/apiprompting sglang_inference/tutorial.ipynb"


@dataclass(frozen=True)
class BenchmarkPreset:
    """The mask settings for one benchmark and auxiliary kind, and where they come from."""

    benchmark: str
    kind: str
    config: MaskConfig
    source: str
    path: str | None = None  # the preset file it was read from, if any


BENCHMARK_PRESETS: dict[tuple[str, str], BenchmarkPreset] = {
    (p.benchmark, p.kind): p
    for p in (
        # "API for MM-Vet": --layer_index 22 (of 24) --interpolate_method_name BICUBIC --enhance_coe 1
        # --kernel_size 3 --grayscale 0; reported 31.2 -> 33.9 with LLaVA-1.5-13B.
        BenchmarkPreset("mmvet", "clip", MaskConfig(layers=(-2,), comp_layer=-2, enhance=1.0, kernel=3,
                                                    interpolation="bicubic", gray=0, geometry="stretch"),
                        f"{_TUTORIAL} (API for MM-Vet: layer 22, BICUBIC, enhance 1, kernel 3, gray 0)"),
        # "API for LLaVA-Wild": --layer_index 22 --interpolate_method_name LANCZOS --enhance_coe 10
        # --kernel_size 7 --grayscale 200; reported 67.6 -> 71.5.
        BenchmarkPreset("llavabench", "clip", MaskConfig(layers=(-2,), comp_layer=-2, enhance=10.0, kernel=7,
                                                         interpolation="lanczos", gray=200, geometry="stretch"),
                        f"{_TUTORIAL} (API for LLaVA-Wild: layer 22, LANCZOS, enhance 10, kernel 7, gray 200)"),
    )
}


def _files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.json"), *folder.glob("*/preset.json")])


def benchmark_presets(presets_dir: str | os.PathLike[str] | None = None) -> dict[tuple[str, str], BenchmarkPreset]:
    """The table extended by the preset files naming a benchmark in ``presets_dir`` (default
    ``$ATTNPROMPT_PRESETS_DIR``; ``*.json`` and ``*/preset.json``, i.e. a folder of tune runs).
    Other JSON files are ignored; a file that claims the preset format but is malformed is an error."""
    table = dict(BENCHMARK_PRESETS)
    folder = presets_dir if presets_dir is not None else os.environ.get(PRESETS_DIR_ENV) or None
    if folder is None:
        return table
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise AttnPromptError(f"presets folder {root} does not exist")
    from ..config import load_preset_file

    import json

    for path in _files(root):
        try:
            head = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(head, dict) or head.get("format") != "attnprompt-preset":
            continue
        preset = load_preset_file(path)
        if preset.benchmark:
            table[(preset.benchmark, preset.kind)] = BenchmarkPreset(
                preset.benchmark, preset.kind, preset.config, preset.source or f"preset file {path}", str(path))
    return table


def benchmark_preset(benchmark: str, kind: str, preset: Any = None,
                     presets_dir: str | os.PathLike[str] | None = None) -> tuple[Any, str]:
    """The preset ``eval`` uses for ``benchmark`` and auxiliary ``kind`` (see the module doc for the
    precedence): ``(preset for Prompter, where it comes from)``. The preset is ``preset`` itself
    when given, else a :class:`MaskConfig` or ``None`` (the kind's default)."""
    if preset is not None:
        get_preset(preset, kind=kind)  # an unknown name or a bad file fails here, before any model loads
        return preset, f"--preset {preset}"
    entry = benchmark_presets(presets_dir).get((benchmark, kind))
    if entry is not None:
        return entry.config, entry.source
    return None, f"the {kind} default preset (no per-benchmark setting)"
