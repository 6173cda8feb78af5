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
from typing import Any, Iterable

from ...errors import AttnPromptError, first_line
from ..items import Item
from . import llavabench, mmbench, mme, mmmu, mmvet, pope, textvqa, vizwiz
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
    "HUB_SPLITS",
    "load_benchmark",
    "load_data",
    "load_from_hub",
    "register_benchmark",
]

#: Every benchmark by name (``--benchmark NAME``), in the order ``--help`` lists them.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    module.SPEC.name: module.SPEC for module in (mmvet, llavabench, pope, mme, textvqa, vizwiz, mmbench, mmmu)
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


#: the split a ``hf:ID`` copy is read from when ``@split`` is not given (lmms-lab's names)
HUB_SPLITS = {"pope": "test", "mme": "test", "mmbench": "dev", "textvqa": "validation", "vizwiz": "val",
              "mmvet": "test", "llavabench": "train", "mmmu": "validation"}
#: reader options that also apply to hub data (the others name files of the official layout)
_HUB_OPTIONS = {"prompt_suffix", "image_cache_dir", "circular", "splits", "subtasks", "subjects", "open_prompt_suffix"}


def _open_hub(datasets: Any, hub_id: str, split: str, config: str | None) -> Iterable[dict[str, Any]]:
    """Rows of ``hub_id``: a folder saved with ``save_to_disk``, a local data folder or file
    (parquet...), or a dataset on the Hugging Face Hub (or in its cache)."""
    local = Path(hub_id).expanduser()
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        ds = datasets.load_from_disk(str(local))
        if hasattr(ds, "keys") and not hasattr(ds, "features"):  # a DatasetDict
            if split not in ds:
                raise AttnPromptError(f"{local} has no split {split!r}; it has {', '.join(ds)}")
            ds = ds[split]
        return ds  # type: ignore[no-any-return]
    if local.exists():
        files = [str(local)] if local.is_file() else sorted(
            str(p) for p in local.rglob("*.parquet") if split in p.name or split in p.parent.name)
        if not files:
            raise AttnPromptError(f"no {split} parquet file in {local} (names must contain the split)")
        return datasets.load_dataset("parquet", data_files={split: files}, split=split)  # type: ignore[no-any-return]
    if config:
        return datasets.load_dataset(hub_id, config, split=split)  # type: ignore[no-any-return]
    return datasets.load_dataset(hub_id, split=split)  # type: ignore[no-any-return]


def load_from_hub(
    name: str, hub_id: str, split: str | None = None, *, limit: int | None = None,
    image_cache_dir: str | os.PathLike[str] | None = None, config: str | None = None, **options: Any,
) -> list[Item]:
    """The items of benchmark ``name`` read through the ``datasets`` library (``--data hf:ID[@split]``).

    ``hub_id`` is a Hugging Face dataset in the lmms-lab schema (MMMU: MMMU/MMMU, one
    configuration per subject, all read unless ``subjects=`` is given), a folder written by
    ``save_to_disk``, or a local folder of parquet files whose names (or folder) contain the split.
    ``split`` defaults to :data:`HUB_SPLITS`; ``config`` is the configuration (``"en"`` for
    lmms-lab/MMBench). ``options`` are the reader's that apply to hub data (``prompt_suffix``;
    ``circular`` for MMBench; ``splits`` for POPE and ``subtasks`` for MME filter the category
    column; ``subjects``/``open_prompt_suffix`` for MMMU). Images are saved as PNG under
    ``image_cache_dir`` (default ``~/.cache/attnprompt/hub/<id>/<split>``). ``limit`` counts
    questions. The official files (:func:`load_benchmark`) remain the reference; the hub copies
    re-encode images and differ in small ways (see ``docs/benchmarks.md``).
    """
    spec = _spec(name)
    if spec.hub_items is None and spec.hub_reader is None:
        raise AttnPromptError(f"load_from_hub does not support {name!r}")
    limit = check_limit(limit)
    split = split or HUB_SPLITS.get(name, "test")
    _check_options(spec, {k: v for k, v in options.items() if k != "image_cache_dir"})
    not_hub = [k for k in options if k not in _HUB_OPTIONS]
    if not_hub:
        raise AttnPromptError(f"{name}: option(s) {', '.join(not_hub)} name files of the official layout and do "
                              "not apply to hf: data")
    try:
        import datasets
    except ImportError:
        raise AttnPromptError(
            "load_from_hub needs the 'datasets' package (pip install datasets); or download the official "
            f"files and use load_benchmark / --data (see {DOCS})"
        ) from None
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{hub_id}/{split}")
    cache = Path(image_cache_dir).expanduser().absolute() if image_cache_dir is not None else (
        Path.home() / ".cache" / "attnprompt" / "hub" / safe
    )
    cache.mkdir(parents=True, exist_ok=True)
    where = f"{hub_id} [{split}]"

    def rows_of(cfg: str | None) -> Iterable[dict[str, Any]]:
        try:
            return _open_hub(datasets, hub_id, split, cfg)
        except AttnPromptError:
            raise
        except Exception as e:  # network, auth, unknown split...: one clear line
            first = first_line(e, None, empty="")
            raise AttnPromptError(
                f"cannot load {hub_id!r} split {split!r} from the Hugging Face Hub ({type(e).__name__}: {first}); "
                f"offline? download the official files and use --data (see {DOCS})"
            ) from None

    if spec.hub_reader is not None:
        return spec.hub_reader(rows_of, where, local=Path(hub_id).expanduser().exists(), config=config,
                               limit=limit, cache=cache, options=options)
    assert spec.hub_items is not None
    hub_items = spec.hub_items
    suffix = options.get("prompt_suffix", spec.prompt_suffix)
    keep = options.get("splits") if name == "pope" else options.get("subtasks") if name == "mme" else None
    if isinstance(keep, str):
        keep = [x.strip() for x in keep.split(",") if x.strip()]
    log = Log(name)
    items: list[Item] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows_of(config)):
        if full(limit, len(items)):
            break
        if keep and str(row.get("category")) not in keep:
            continue
        log.rows += 1
        try:
            img: Any = row.get("image")
            if not hasattr(img, "save"):
                raise BadRow("column 'image' is not an image")
            path = cache / f"{n:06d}.png"
            if not path.is_file():
                img.convert("RGB").save(path)
            items.extend(hub_items(row, path, n, seen, suffix, bool(options.get("circular", True))))
        except BadRow as e:
            log.bad(f"{where} row {n}", str(e))
    return finish(items, log, where, limit)


def load_data(name: str, data: str | os.PathLike[str], *, limit: int | None = None, **options: Any) -> list[Item]:
    """``--data``: ``hf:ID[@split]`` reads through :func:`load_from_hub`, anything else is the
    folder of the official release (:func:`load_benchmark`)."""
    text = str(data)
    if text.startswith("hf:"):
        ref = text[3:]
        hub_id, _, split = ref.rpartition("@") if "@" in ref else (ref, "", "")
        if not hub_id.strip():
            raise AttnPromptError(f"--data {text!r}: expected hf:ORG/NAME[@split] or hf:FOLDER[@split]")
        return load_from_hub(name, hub_id, split or None, limit=limit, **options)
    return load_benchmark(name, data, limit=limit, **options)
