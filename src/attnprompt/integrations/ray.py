"""The manifest job on Ray Data: one model per actor, on one machine or a cluster.

The pieces, usable on their own with any ``ray.data.Dataset``:

- :class:`Annotator`: a picklable callable class for ``Dataset.map_batches``. Each actor loads
  the auxiliary model once; a batch has an ``image`` column (file paths, encoded bytes, or
  ``HxWx3`` arrays as ``ray.data.read_images`` gives) and a ``question`` column (or ``query``;
  or one ``question=`` for all rows), and comes back with the annotated image encoded as file
  bytes (``annotated``), the maps and masks (``maps``, ``.npz`` bytes with ``save_maps``), and
  ``status`` / ``error`` per row (plus ``answer`` for an LVLM and ``boxes`` for box styles).
  Other columns pass through; ``image`` is dropped.
- :func:`read_table`: parquet or JSON Lines with image paths or bytes; :func:`dataset_from_rows`:
  the project's manifests (the rows :func:`attnprompt.files.read_manifest` returns).
- :func:`write_results`: writes a result dataset into an output folder exactly as the local job
  does (same files, same records, one record per id, the same lock), streaming, row by row.
- :func:`run_manifest_ray`: all of it for a manifest, with the local job's resume.

Byte-identical to the local job at equal thread counts: Ray sets each actor's ``OMP_NUM_THREADS``
to its CPUs, and float reductions in torch depend on the thread count in their last bits.

Example::

    import ray
    from attnprompt.integrations.ray import Annotator, RayJobOptions

    ds = ray.data.read_parquet("questions.parquet")          # columns: id, image (bytes), question
    out = ds.map_batches(Annotator, fn_constructor_kwargs={"options": RayJobOptions(model="DIR")},
                         concurrency=4, num_gpus=1, batch_size=32)
"""

from __future__ import annotations

import io as _io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import AttnPromptError
from ..files import ManifestRow, load_image, safe_stem
from ..jobs import (ROW_ERRORS, JobSummary, annotate_rows, annotation_extras, encode_outputs, make_record, message,
                    row_keys)
from ..outputs import ImageEncoding, OutputFolder, RecordKey

__all__ = ["RayJobOptions", "Annotator", "read_table", "dataset_from_rows", "write_results", "run_manifest_ray"]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise AttnPromptError("the ray engine needs Ray Data: pip install 'attnprompt[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayJobOptions:
    """How each actor builds its :class:`~attnprompt.Prompter` (picklable: names, not models)."""

    model: str | None = None
    kind: str = "auto"
    preset: str | None = None
    backend: str = "auto"
    pretrained: str | None = None
    model_config: str | None = None
    device: str | None = "auto"
    dtype: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def prompter(self) -> Any:
        from ..auxiliary.base import DEFAULT_MODEL
        from ..prompter import Prompter

        return Prompter(self.model or DEFAULT_MODEL, kind=self.kind, preset=self.preset, backend=self.backend,
                        pretrained=self.pretrained, model_config=self.model_config, device=self.device,
                        dtype=self.dtype, **dict(self.overrides))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _decode(value: Any) -> Image.Image:
    """An image cell: a path, encoded file bytes, or an ``HxW[xC]`` array."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            opened = Image.open(_io.BytesIO(bytes(value)))
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad data
            raise AttnPromptError(f"cannot load image <bytes>: not a recognised image ({type(exc).__name__})") from None
        return load_image(opened)
    if isinstance(value, np.ndarray):
        return load_image(value)
    if isinstance(value, (str, os.PathLike)) and str(value):
        return load_image(value)
    raise AttnPromptError(f"cannot load image: expected a path, bytes or an array, got {type(value).__name__}")


class Annotator:
    """``map_batches`` callable class: annotated images, maps and status columns for a batch.

    Args:
        options: how to load the model (default: :class:`RayJobOptions` defaults).
        format: ``rgb`` (annotated), ``rgba`` (mask as alpha) or ``heatmap``.
        encoding: the file format of ``annotated`` (default: lossless PNG).
        save_maps: also return the maps and masks as ``.npz`` bytes in ``maps``.
        question: the query for rows without a ``question`` / ``query`` column.
    """

    def __init__(self, options: RayJobOptions | None = None, *, format: str = "rgb",
                 encoding: ImageEncoding | None = None, save_maps: bool = False, question: str | None = None) -> None:
        self.prompter = (options or RayJobOptions()).prompter()
        self.format = format
        self.encoding = encoding or ImageEncoding()
        self.save_maps = save_maps
        self.question = question

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        images = list(batch["image"])
        n = len(images)
        questions = batch.get("question", batch.get("query"))
        questions = [_text(q) for q in questions] if questions is not None else [self.question or ""] * n
        ids = [_text(v) for v in batch["id"]] if "id" in batch else [_text(v) for v in batch.get("path", [""] * n)]
        errors = [_text(e) or None for e in batch["error"]] if "error" in batch else [None] * n
        rows = [ManifestRow(ids[i], "", questions[i], i + 1, errors[i]) for i in range(n)]
        out: dict[str, list[Any]] = {k: [None] * n for k in ("annotated", "output_suffix", "maps", "status", "error",
                                                          "answer", "boxes", "record_extras")}
        out["extra_annotated"] = [[] for _ in range(n)]  # a style's further prompt images (vicrop's crop)

        def fail(i: int, error: str) -> None:
            out["status"][i], out["error"][i] = "error", error
            out["record_extras"][i] = json.dumps(annotation_extras(None, self.prompter.kind))

        ready = []
        index = {}
        for i, (row, value) in enumerate(zip(rows, images)):
            if row.error:
                fail(i, row.error)
                continue
            try:
                image = _decode(value)
                ready.append((row, image, self.prompter.auxiliary.view(image, self.prompter.config.geometry)))
                index[id(row)] = i
            except ROW_ERRORS as exc:
                fail(i, message(exc))
        for row, image, view, result in annotate_rows(self.prompter, ready):
            i = index[id(row)]
            if isinstance(result, Exception):
                fail(i, message(result))
                continue
            try:
                annotation = self.prompter.finish(image, row.question, view, result)
                _, data, _, maps = encode_outputs(annotation, "x", self.format, self.encoding, self.save_maps)
            except ROW_ERRORS as exc:
                fail(i, f"cannot write output: {message(exc)}")
                continue
            extras = annotation_extras(annotation, self.prompter.kind)
            out["annotated"][i], out["maps"][i], out["status"][i] = data, maps, "ok"
            out["extra_annotated"][i] = [self.encoding.encode(im) for im in (annotation.images or [])[1:]]
            out["output_suffix"][i] = self.encoding.suffix
            out["answer"][i] = extras.get("answer")
            out["boxes"][i] = json.dumps(extras["boxes"]) if "boxes" in extras else None
            out["record_extras"][i] = json.dumps(extras)  # every record field the local job adds
        columns = {k: v for k, v in batch.items() if k != "image"}
        columns["id"] = _column(ids)  # read_images' rows are named by their path
        columns.update({k: _column(v) for k, v in out.items()})
        if self.prompter.kind != "lvlm" and all(a is None for a in out["answer"]):
            del columns["answer"]
        return columns


def _column(values: list[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _cell(value: Any) -> Any:
    """A cell as Python: Arrow turns an all-null column into floats (NaN) on the way back."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    if isinstance(value, np.str_):
        return str(value)
    return value


def _items(value: Any) -> list[Any]:
    """A list cell (a list, an array, or null) as a Python list."""
    return [] if _cell(value) is None else list(value)


def read_table(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A Ray dataset from parquet (``.parquet``, or a folder of them) or JSON Lines (``.jsonl``/``.json``).

    Expected columns: ``id``, ``image`` (a path, relative paths from the file's folder, or the
    encoded bytes) and ``question``.
    """
    ray = _ray()
    text = os.fsdecode(os.fspath(path))
    if text.endswith((".jsonl", ".json", ".ndjson")):
        ds = ray.data.read_json(text, lines=True, **kwargs) if "lines" in _params(ray.data.read_json) else \
            ray.data.read_json(text, **kwargs)
    else:
        ds = ray.data.read_parquet(text, **kwargs)
    base = os.path.dirname(os.path.abspath(text)) if os.path.isfile(text) else os.path.abspath(text)

    def resolve(batch: dict[str, Any]) -> dict[str, Any]:
        batch["image"] = _column([os.path.join(base, v) if isinstance(v, str) and not os.path.isabs(v) else v
                                  for v in batch["image"]])
        return batch

    return ds.map_batches(resolve, batch_format="numpy")


def _params(fn: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def dataset_from_rows(rows: Sequence[ManifestRow]) -> Any:
    """A Ray dataset of manifest rows: ``id``, ``image`` (path), ``question``, ``line``, ``error``, ``row``."""
    ray = _ray()
    return ray.data.from_items([
        {"row": i, "id": r.id, "image": r.image, "question": r.question, "line": r.line, "error": r.error or ""}
        for i, r in enumerate(rows)
    ])


def write_results(results: Iterable[Mapping[str, Any]], folder: OutputFolder, *, rows: Sequence[ManifestRow] | None = None,
                  keys: Sequence[RecordKey] | None = None, save_maps: bool = False,
                  summary: JobSummary | None = None, progress: Any = None) -> JobSummary:
    """Write result batches (from :class:`Annotator`) into ``folder``: files, then one record per row.

    ``rows``/``keys``: the manifest rows the batches' ``row`` column points into (else a row is
    rebuilt from the batch's ``id``, ``source``/``image`` and ``question``).
    """
    summary = summary or JobSummary()
    for batch in results:
        n = len(batch["status"])
        for i in range(n):
            if rows is not None and keys is not None:
                j = int(batch["row"][i])
                row, key = rows[j], keys[j]
            else:
                row = ManifestRow(_text(batch["id"][i]), _text(batch.get("source", batch.get("path", [""] * n))[i]),
                                  _text(batch.get("question", [""] * n)[i]), int(batch.get("line", [0] * n)[i] or 0))
                key = ("id", row.id) if row.id else ("line", str(row.line))
            extras = _cell(batch["record_extras"][i]) if "record_extras" in batch else None
            extra: dict[str, Any] = json.loads(extras) if isinstance(extras, str) else {}
            status, error = _text(batch["status"][i]), _cell(batch["error"][i])
            output = maps = None
            if status == "ok":
                stem = safe_stem(row.id)
                suffix = _text(batch["output_suffix"][i])
                output = f"{stem}{suffix}"
                further = _items(batch["extra_annotated"][i]) if "extra_annotated" in batch else []
                names = [f"{stem}_{n}{suffix}" for n in range(2, len(further) + 2)]
                if names:
                    extra["extra_outputs"] = names
                try:
                    for name, data in zip(names, further):
                        folder.write(name, bytes(data))  # before the record that names it
                    folder.write(output, bytes(batch["annotated"][i]))
                    if save_maps and _cell(batch["maps"][i]) is not None:
                        maps = f"maps/{stem}.npz"
                        folder.write(maps, bytes(batch["maps"][i]))
                except ROW_ERRORS as exc:
                    status, error, output, maps = "error", f"cannot write output: {message(exc)}", None, None
            folder.record(make_record(row, key, status, output=output, maps=maps, error=error, **extra))
            if status == "ok":
                summary.done += 1
            else:
                summary.failed += 1
                summary.errors.append(f"{row.id or f'line {row.line}'}: {error}")
            if progress is not None and not row.error:
                progress.update(1)
    return summary


def run_manifest_ray(
    options: RayJobOptions,
    rows: Sequence[ManifestRow],
    out_dir: str | os.PathLike[str],
    *,
    format: str = "rgb",
    save_map_files: bool = False,
    batch_size: int = 8,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    address: str | None = None,
    encoding: ImageEncoding | None = None,
    progress: bool = True,
) -> JobSummary:
    """The manifest job on Ray Data: ``workers`` model actors, the driver writes ``out_dir``.

    Same outputs, records, resume and per-row errors as :func:`attnprompt.jobs.run_manifest`.
    Joins the Ray cluster at ``address`` (or the one already initialised in this process, or a
    new local one). Outputs are written by this process, so ``out_dir`` need not be shared storage.
    """
    from ..progress import progress_bar

    ray = _ray()
    encoding = encoding or ImageEncoding()
    rows = list(rows)
    keys = row_keys(rows)
    summary = JobSummary(total=len(rows))
    with OutputFolder(out_dir, maps=save_map_files) as folder:
        folder.order = keys
        summary.manifest = folder.manifest
        finished = folder.finished_ids()
        todo = [i for i, (r, k) in enumerate(zip(rows, keys)) if r.error or not (k[0] == "id" and r.id in finished)]
        summary.skipped = len(rows) - len(todo)
        if not todo:
            return summary
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise AttnPromptError(f"cannot start or join the Ray cluster {address or '(local)'}: {exc}") from None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        items = [{"row": i, "id": rows[i].id, "image": rows[i].image, "question": rows[i].question,
                  "error": rows[i].error or ""} for i in todo]
        resources: dict[str, Any] = {"num_cpus": cpus_per_worker}
        if gpus_per_worker:
            resources["num_gpus"] = gpus_per_worker
        ds = ray.data.from_items(items).map_batches(
            Annotator, fn_constructor_kwargs=dict(options=options, format=format, encoding=encoding,
                                                  save_maps=save_map_files),
            concurrency=workers, batch_size=batch_size, batch_format="numpy", **resources)
        bar = progress_bar(sum(1 for i in todo if not rows[i].error), desc="annotate", unit="img", enabled=progress)
        try:
            batches = ds.iter_batches(batch_size=None, batch_format="numpy")
            write_results(batches, folder, rows=rows, keys=keys, save_maps=save_map_files, summary=summary,
                          progress=bar)
        except Exception as exc:
            if type(exc).__module__.startswith("ray"):
                raise AttnPromptError(f"the Ray job failed: {message(exc)}") from exc
            raise
        finally:
            bar.close()
    return summary

