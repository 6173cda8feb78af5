"""Dataset annotation: a manifest of (id, image, question) rows -> annotated images + a manifest.

Built to be left running: images are decoded by background threads while the model works,
every output file is written atomically, the output manifest is appended one fsynced line per
row, a rerun skips finished ids, and one bad row is recorded and skipped, never fatal.
"""

from __future__ import annotations

import io as _io
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from .errors import AttnPromptError
from .io import ManifestRow, append_jsonl, atomic_write_bytes, atomic_save_image, load_image, read_jsonl_tolerant, read_manifest, safe_stem
from .prompter import OUTPUT_FORMATS, Annotation, Prompter

__all__ = ["JobSummary", "run_manifest", "OUTPUT_MANIFEST"]

OUTPUT_MANIFEST = "manifest.jsonl"
# Errors that belong to one row (bad input, a model error on that input). Anything else, such as
# KeyboardInterrupt or MemoryError, stops the run; finished rows are already on disk.
ROW_ERRORS = (AttnPromptError, ValueError, RuntimeError, OSError)


@dataclass
class JobSummary:
    """Counts of one run, and where its output manifest is."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    manifest: Path | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0


def save_maps(path: Path, annotation: Annotation) -> None:
    """The raw maps and masks as an ``.npz`` (read with ``numpy.load``; no pickles)."""
    buffer = _io.BytesIO()
    np.savez_compressed(buffer, **annotation.arrays())
    atomic_write_bytes(path, buffer.getvalue())


def _finished_ids(manifest: Path, out_dir: Path) -> set[str]:
    if not manifest.exists():
        return set()
    done = set()
    for record in read_jsonl_tolerant(manifest):
        output = record.get("output")
        if record.get("status") == "ok" and output and (out_dir / output).is_file():
            done.add(str(record.get("id")))
    return done


def _load(row: ManifestRow) -> Image.Image:
    return load_image(row.image)


def _prefetch(rows: Sequence[ManifestRow], batch_size: int, workers: int) -> Iterator[list[tuple[ManifestRow, Future]]]:
    """Yield batches of (row, future image) with the next two batches decoding in the background."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="attnprompt-decode") as pool:
        pending: deque[list[tuple[ManifestRow, Future]]] = deque()
        starts = iter(range(0, len(rows), batch_size))
        for _ in range(2):
            start = next(starts, None)
            if start is not None:
                pending.append([(r, pool.submit(_load, r)) for r in rows[start:start + batch_size]])
        while pending:
            batch = pending.popleft()
            start = next(starts, None)
            if start is not None:
                pending.append([(r, pool.submit(_load, r)) for r in rows[start:start + batch_size]])
            yield batch


def run_manifest(
    prompter: Prompter,
    manifest: str | os.PathLike[str] | Sequence[ManifestRow],
    out_dir: str | os.PathLike[str],
    *,
    format: str = "rgb",
    save_map_files: bool = False,
    batch_size: int = 8,
    workers: int = 4,
    progress: bool = True,
) -> JobSummary:
    """Annotate every row of ``manifest`` into ``out_dir``.

    Outputs: ``out_dir/<safe id>.png`` (and ``out_dir/maps/<safe id>.npz`` with
    ``save_map_files``), and ``out_dir/manifest.jsonl`` with one record per row:
    ``id, source, question, output, maps, status ("ok" | "error"), error`` (and ``answer``, the
    auxiliary's own answer, for an LVLM auxiliary). Rows already ``ok``
    (with their file present) are skipped, so an interrupted run resumes where it stopped.
    """
    if format not in OUTPUT_FORMATS:
        raise AttnPromptError(f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if batch_size < 1:
        raise AttnPromptError("batch size must be at least 1")
    rows = list(manifest) if isinstance(manifest, (list, tuple)) else read_manifest(manifest)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if save_map_files:
        (out / "maps").mkdir(exist_ok=True)
    record_path = out / OUTPUT_MANIFEST
    finished = _finished_ids(record_path, out)
    summary = JobSummary(total=len(rows), manifest=record_path)

    def record(row: ManifestRow, status: str, output: str | None = None, maps: str | None = None,
               error: str | None = None, answer: str | None = None, prompt: Annotation | None = None,
               extra: list[str] | None = None) -> None:
        entry = {
            "id": row.id, "source": row.image, "question": row.question,
            "output": output, "maps": maps, "status": status, "error": error,
        }
        if prompter.kind == "lvlm":
            entry["answer"] = answer  # the auxiliary model's own answer
        if prompt is not None and prompt.config.style != "alpha":  # the style and the boxes it used
            entry["style"] = prompt.config.style
            entry["boxes"] = [list(b) for b in prompt.boxes or []]
        if extra:
            entry["extra_outputs"] = extra  # more prompt images of the style (vicrop's crop)
        append_jsonl(record_path, entry)
        if status == "ok":
            summary.done += 1
        else:
            summary.failed += 1
            summary.errors.append(f"{row.id}: {error}")

    todo: list[ManifestRow] = []
    for row in rows:
        if row.error:
            record(row, "error", error=row.error)
        elif row.id in finished:
            summary.skipped += 1
        else:
            todo.append(row)

    bar = _progress(len(todo), progress)
    try:
        for batch in _prefetch(todo, batch_size, workers):
            ready: list[tuple[ManifestRow, Image.Image]] = []
            for row, future in batch:
                try:
                    ready.append((row, future.result()))
                except ROW_ERRORS as exc:
                    record(row, "error", error=_message(exc))
                    bar.update(1)
            for row, result in _annotate(prompter, ready):
                if isinstance(result, Exception):
                    record(row, "error", error=_message(result))
                else:
                    stem = safe_stem(row.id)
                    name = f"{stem}.png"
                    maps_name = f"maps/{stem}.npz" if save_map_files else None
                    extra = [f"{stem}_{n}.png" for n in range(2, len(result.images or []) + 1)]
                    try:
                        for extra_name, extra_image in zip(extra, (result.images or [])[1:]):
                            atomic_save_image(extra_image, out / extra_name)
                        atomic_save_image(result.render(format), out / name)
                        if maps_name:
                            save_maps(out / maps_name, result)
                    except OSError as exc:  # e.g. a full disk: this row fails, the next may fit
                        record(row, "error", error=f"cannot write output: {_message(exc)}")
                    else:
                        record(row, "ok", output=name, maps=maps_name, answer=result.answer, prompt=result,
                               extra=extra)
                bar.update(1)
    finally:
        bar.close()
    return summary


def _annotate(prompter: Prompter, ready: list[tuple[ManifestRow, Image.Image]]) -> list[tuple[ManifestRow, Annotation | Exception]]:
    """Annotate a batch; if the batch fails, retry row by row so only the bad rows fail."""
    if not ready:
        return []
    rows = [r for r, _ in ready]
    try:
        results = prompter.annotate_loaded([im for _, im in ready], [r.question for r in rows])
        return list(zip(rows, results))
    except ROW_ERRORS as exc:
        if len(ready) == 1:
            return [(rows[0], exc)]
    out: list[tuple[ManifestRow, Annotation | Exception]] = []
    for row, image in ready:
        try:
            out.append((row, prompter.annotate_loaded([image], [row.question])[0]))
        except ROW_ERRORS as exc:
            out.append((row, exc))
    return out


def _message(exc: BaseException) -> str:
    if isinstance(exc, AttnPromptError):
        return str(exc)
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"[:500]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> object:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="annotate", file=sys.stderr, dynamic_ncols=True)
