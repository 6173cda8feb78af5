"""The benchmarks: one module per benchmark, and the registry that names them.

Each module holds the benchmark's file reader (its official release layout -> a list of
:class:`~attnprompt.bench.items.Item`), the mapping of its Hugging Face copy's rows, and its
scorer, all named by one :class:`~attnprompt.bench.benchmarks.common.BenchmarkSpec` (``SPEC``).
``docs/benchmarks.md`` says where each release comes from and how its folder must look. The
prompts follow the LLaVA-1.5 evaluation (``llava/eval`` and ``scripts/v1_5/eval`` of
haotian-liu/LLaVA); each short-answer or multiple-choice reader takes ``prompt_suffix`` to change
the instruction appended to the question.

A new benchmark is one module with a ``SPEC``, added with :func:`register_benchmark`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ...errors import AttnPromptError, first_line
from ..items import Item
from . import llavabench, mmbench, mme, mmvet, pope, textvqa, vizwiz
from .common import (
    DOCS,
    MULTIPLE_CHOICE_SUFFIX,
    SHORT_ANSWER_SUFFIX,
    VIZWIZ_SUFFIX,
    BadRow,
    BenchmarkDataWarning,
    BenchmarkSpec,
    Log,
    check_limit,
    finish,
    full,
)

__all__ = [
    "BENCHMARKS",
    "BenchmarkDataWarning",
    "BenchmarkSpec",
    "SHORT_ANSWER_SUFFIX",
    "VIZWIZ_SUFFIX",
    "MULTIPLE_CHOICE_SUFFIX",
    "load_benchmark",
    "load_from_hub",
    "register_benchmark",
]

#: Every benchmark by name (``--benchmark NAME``), in the order ``--help`` lists them.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    module.SPEC.name: module.SPEC for module in (mmvet, llavabench, pope, mme, textvqa, vizwiz, mmbench)
}


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add ``spec`` to :data:`BENCHMARKS` (replacing one of the same name) and return it."""
    BENCHMARKS[spec.name] = spec
    return spec


def _spec(name: str) -> BenchmarkSpec:
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise AttnPromptError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return spec


def _check_options(spec: BenchmarkSpec, options: dict[str, Any]) -> None:
    allowed = spec.options()
    extra = [k for k in options if k not in allowed]
    if extra:
        raise AttnPromptError(
            f"{spec.name}: unknown option(s) {', '.join(extra)}; it takes {', '.join(allowed) or 'none'}"
        )


def load_benchmark(name: str, data: str | os.PathLike[str], *, limit: int | None = None, **options: Any) -> list[Item]:
    """The items of benchmark ``name`` read from its official release folder ``data``.

    ``limit`` keeps the first units of the file: questions, except MME (images: both questions
    of each) and MMBench (questions: all circular shifts of each). ``options`` go to the reader
    (``prompt_suffix`` for all; ``images_dir``/``splits`` for POPE; ``subtasks`` for MME;
    ``image_cache_dir``/``tsv``/``circular`` for MMBench). Raises :class:`AttnPromptError` for an
    unknown benchmark or option, a missing file, or data with no usable row.
    """
    spec = _spec(name)
    _check_options(spec, options)
    data_path = Path(data).expanduser()
    if not data_path.exists():
        raise AttnPromptError(f"{name}: data folder {data_path} does not exist; expected layout: {spec.layout} (see {DOCS})")
    return spec.reader(data_path, limit=check_limit(limit), **options)


def load_from_hub(
    name: str, hub_id: str, split: str, *, limit: int | None = None, image_cache_dir: str | os.PathLike[str] | None = None,
    prompt_suffix: str | None = None, circular: bool = True, config: str | None = None,
) -> list[Item]:
    """The items of benchmark ``name`` from a Hugging Face dataset in the lmms-lab schema.

    ``config`` is the dataset configuration (``"en"`` for lmms-lab/MMBench). Needs the optional ``datasets`` package and network access (or its cache). Images are saved
    as PNG under ``image_cache_dir`` (default ``~/.cache/attnprompt/hub/<hub_id>/<split>``), named
    by row number. ``limit`` counts rows. The official files (:func:`load_benchmark`) remain the
    reference; the hub copies re-encode images and differ in small ways (see ``docs/benchmarks.md``).
    """
    spec = _spec(name)
    if spec.hub_items is None:
        raise AttnPromptError(f"load_from_hub does not support {name!r}")
    hub_items = spec.hub_items
    limit = check_limit(limit)
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise AttnPromptError(
            "load_from_hub needs the 'datasets' package (pip install datasets); or download the official "
            f"files and use load_benchmark / --data (see {DOCS})"
        ) from None
    try:
        ds = datasets.load_dataset(hub_id, config, split=split) if config else datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # network, auth, unknown split...: one clear line
        first = first_line(e, None, empty="")
        raise AttnPromptError(
            f"cannot load {hub_id!r} split {split!r} from the Hugging Face Hub ({type(e).__name__}: {first}); "
            f"offline? download the official files and use --data (see {DOCS})"
        ) from None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{hub_id}/{split}")
    cache = Path(image_cache_dir).expanduser().absolute() if image_cache_dir is not None else (
        Path.home() / ".cache" / "attnprompt" / "hub" / safe
    )
    cache.mkdir(parents=True, exist_ok=True)
    suffix = spec.prompt_suffix if prompt_suffix is None else prompt_suffix
    log = Log(name)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(ds):
        if full(limit, n):
            break
        log.rows += 1
        try:
            img = row.get("image")
            if not hasattr(img, "save"):
                raise BadRow("column 'image' is not an image")
            path = cache / f"{n:06d}.png"
            if not path.is_file():
                img.convert("RGB").save(path)
            items.extend(hub_items(row, path, n, seen, suffix, circular))
        except BadRow as e:
            log.bad(f"{hub_id} [{split}] row {n}", str(e))
    return finish(items, log, f"{hub_id} [{split}]", limit)
