"""Dataset annotation: a manifest of (id, image, question) rows -> annotated images + a manifest.

A pipeline, so the model runs at its own speed: decoding threads load each image and make its
view (letterbox, resized to the model's input where that is exact) two batches ahead; the model
runs in the calling thread; a pool of writer threads does the pixel stage (mask at image size,
blend), encodes and writes the files and records the row. The model waits for the writers only
when they fall more than two batches behind.

Built to be left running: every output file is written atomically, the output manifest keeps
one record per row (:mod:`attnprompt.outputs`), a rerun skips finished ids and retries failed
ones, one bad row is recorded and skipped, never fatal, and a second job on the same folder is
refused.
"""

from __future__ import annotations

import io as _io
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from .auxiliary.protocol import Attribution
from .errors import ROW_ERRORS, AttnPromptError, first_line
from .files import ManifestRow, atomic_write_bytes, load_image, read_manifest, safe_stem
from .geometry import View
from .outputs import OUTPUT_MANIFEST, ImageEncoding, OutputFolder, RecordKey
from .progress import progress_bar
from .prompter import OUTPUT_FORMATS, Annotation, Prompter

__all__ = ["JobSummary", "run_manifest", "OUTPUT_MANIFEST", "ROW_ERRORS", "annotate_rows", "row_keys",
           "make_record", "encode_outputs", "save_maps", "maps_bytes"]

# ROW_ERRORS (attnprompt.errors) belong to one row (bad input, a model error on that input).
# Anything else, such as KeyboardInterrupt or MemoryError, stops the run; finished rows are
# already on disk.


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


def maps_bytes(annotation: Annotation) -> bytes:
    """The raw maps and masks as ``.npz`` bytes (read with ``numpy.load``; no pickles)."""
    buffer = _io.BytesIO()
    arrays: dict[str, Any] = annotation.arrays()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save_maps(path: Path, annotation: Annotation) -> None:
    """The raw maps and masks as an ``.npz`` file, written atomically."""
    atomic_write_bytes(path, maps_bytes(annotation))


def row_keys(rows: Sequence[ManifestRow]) -> list[RecordKey]:
    """Each row's record key: its id for the first row that uses it, else its line."""
    seen: set[str] = set()
    keys: list[RecordKey] = []
    for row in rows:
        if row.id and row.id not in seen:
            seen.add(row.id)
            keys.append(("id", row.id))
        else:
            keys.append(("line", str(row.line)))
    return keys


def make_record(row: ManifestRow, key: RecordKey, status: str, *, output: str | None = None,
                maps: str | None = None, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One output-manifest record; ``extra`` holds per-kind fields (``answer``, ``boxes``...)."""
    record: dict[str, Any] = {
        "id": row.id, "source": row.image, "question": row.question, "line": row.line,
        "output": output, "maps": maps, "status": status, "error": error,
    }
    if key[0] == "line" and row.id:
        record["duplicate_id"] = True  # the id's record is its first row's
    record.update(extra)
    return record


def annotation_extras(annotation: Annotation | None, kind: str) -> dict[str, Any]:
    """Record fields beyond the core ones: the LVLM's own answer, a style's boxes."""
    extra: dict[str, Any] = {}
    if kind == "lvlm":
        extra["answer"] = None if annotation is None else annotation.answer
    boxes = getattr(annotation, "boxes", None)
    if boxes is not None:
        extra["boxes"] = [list(map(int, b)) for b in boxes]
    if annotation is not None and annotation.config.style != "alpha":
        extra["style"] = annotation.config.style
    return extra


def extra_output_names(annotation: Annotation | None, stem: str, encoding: ImageEncoding) -> list[str]:
    """File names of a style's further prompt images (vicrop's crop): ``<stem>_2.png``..."""
    count = len(annotation.images or []) if annotation is not None else 0
    return [f"{stem}_{n}{encoding.suffix}" for n in range(2, count + 1)]


def encode_outputs(annotation: Annotation, stem: str, format: str, encoding: ImageEncoding,
                   with_maps: bool) -> tuple[str, bytes, str | None, bytes | None]:
    """``(image name, image bytes, maps name, maps bytes)`` for one annotated row."""
    name = f"{stem}{encoding.suffix}"
    data = encoding.encode(annotation.render(format))
    if not with_maps:
        return name, data, None, None
    return name, data, f"maps/{stem}.npz", maps_bytes(annotation)


def _load(row: ManifestRow, prompter: Prompter) -> tuple[Image.Image, View]:
    image = load_image(row.image)
    return image, prompter.auxiliary.view(image, prompter.config.geometry)


def _prefetch(rows: Sequence[ManifestRow], batch_size: int, workers: int,
              prompter: Prompter) -> Iterator[list[tuple[ManifestRow, Future]]]:
    """Yield batches of (row, future (image, view)) with the next two batches loading in the background."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="attnprompt-decode") as pool:
        pending: deque[list[tuple[ManifestRow, Future]]] = deque()
        starts = iter(range(0, len(rows), batch_size))

        def submit(start: int) -> None:
            pending.append([(r, pool.submit(_load, r, prompter)) for r in rows[start:start + batch_size]])

        for _ in range(2):
            start = next(starts, None)
            if start is not None:
                submit(start)
        while pending:
            batch = pending.popleft()
            start = next(starts, None)
            if start is not None:
                submit(start)
            yield batch


Loaded = tuple[ManifestRow, Image.Image, View]
Attributed = tuple[ManifestRow, Image.Image, View, "Attribution | Exception"]


def annotate_rows(prompter: Prompter, ready: Sequence[Loaded]) -> list[Attributed]:
    """The model step for a batch; if the batch fails, retry row by row so only the bad rows fail."""
    if not ready:
        return []
    rows, images, views = [r for r, _, _ in ready], [im for _, im, _ in ready], [v for _, _, v in ready]
    try:
        pairs = prompter.attribute_loaded(images, [r.question for r in rows], prompter.config, views)
        return [(r, im, v, a) for (r, im), (v, a) in zip(zip(rows, images), pairs)]
    except ROW_ERRORS as exc:
        if len(ready) == 1:
            return [(rows[0], images[0], views[0], exc)]
    out: list[Attributed] = []
    for row, image, view in ready:
        try:
            [(_, attribution)] = prompter.attribute_loaded([image], [row.question], prompter.config, [view])
            out.append((row, image, view, attribution))
        except ROW_ERRORS as exc:
            out.append((row, image, view, exc))
    return out


class _Writers:
    """The pixel stage, encoding and writing on a thread pool, at most ``limit`` rows behind."""

    def __init__(self, record: Any, finish: Any, threads: int, limit: int) -> None:
        self._record = record  # (row, status, output=None, maps=None, error=None, annotation=None)
        self._finish = finish  # (row, image, view, attribution) -> (output, maps, annotation)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="attnprompt-write")
        self._slots = threading.Semaphore(max(1, limit))
        self._fatal: list[BaseException] = []

    def submit(self, item: Attributed) -> None:
        self._slots.acquire()  # the model waits only when the writers are `limit` rows behind
        self._pool.submit(self._run, item)

    def _run(self, item: Attributed) -> None:
        row, image, view, result = item
        try:
            if isinstance(result, Exception):
                self._record(row, "error", error=message(result))
                return
            try:
                output, maps, annotation = self._finish(row, image, view, result)
            except ROW_ERRORS as exc:  # e.g. a full disk: this row fails, the next may fit
                self._record(row, "error", error=f"cannot write output: {message(exc)}")
            else:
                self._record(row, "ok", output=output, maps=maps, annotation=annotation)
        except BaseException as exc:  # noqa: BLE001 - handed to the model thread by close()
            self._fatal.append(exc)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Wait for every submitted row; re-raise the first error that was not a row's."""
        self._pool.shutdown(wait=True)
        if self._fatal:
            raise self._fatal[0]


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
    encoding: ImageEncoding | None = None,
    writers: int = 2,
) -> JobSummary:
    """Annotate every row of ``manifest`` into ``out_dir``.

    Outputs: ``out_dir/<safe id>.png`` (or ``.jpg`` / ``.webp`` with ``encoding``; and
    ``out_dir/maps/<safe id>.npz`` with ``save_map_files``), and ``out_dir/manifest.jsonl`` with
    one record per row: ``id, source, question, line, output, maps, status ("ok" | "error"),
    error`` (plus ``answer``, the auxiliary's own answer, for an LVLM auxiliary; ``boxes`` for
    styles that use boxes; ``duplicate_id`` for a second row with an id). Rows already ``ok``
    (with their file present) are skipped, so an interrupted run resumes where it stopped.
    ``workers`` threads decode, ``writers`` threads make the pixels, encode and write.

    Raises:
        AttnPromptError: bad options, an unusable output folder, or another job holding it.
    """
    if format not in OUTPUT_FORMATS:
        raise AttnPromptError(f"unknown output format {format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if batch_size < 1:
        raise AttnPromptError("batch size must be at least 1")
    encoding = encoding or ImageEncoding()
    if encoding.format == "jpeg" and format == "rgba":
        raise AttnPromptError("JPEG cannot store the rgba output (no alpha channel): use png or webp")
    rows = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    keys = row_keys(rows)
    key_of = {id(row): key for row, key in zip(rows, keys)}
    summary = JobSummary(total=len(rows))
    counts = threading.Lock()

    with OutputFolder(out_dir, maps=save_map_files) as folder:
        folder.order = keys
        summary.manifest = folder.manifest
        finished = folder.finished_ids()
        bar = progress_bar(sum(1 for r, k in zip(rows, keys) if not r.error and not (k[0] == "id" and r.id in finished)),
                           desc="annotate", unit="img", enabled=progress)

        def record(row: ManifestRow, status: str, output: str | None = None, maps: str | None = None,
                   error: str | None = None, annotation: Annotation | None = None) -> None:
            extras = annotation_extras(annotation, prompter.kind)
            if status == "ok" and extra_output_names(annotation, safe_stem(row.id), encoding):
                extras["extra_outputs"] = extra_output_names(annotation, safe_stem(row.id), encoding)
            folder.record(make_record(row, key_of[id(row)], status, output=output, maps=maps, error=error,
                                      **extras))
            with counts:
                if status == "ok":
                    summary.done += 1
                else:
                    summary.failed += 1
                    summary.errors.append(f"{row.id or f'line {row.line}'}: {error}")
            if not row.error:
                bar.update(1)

        def finish(row: ManifestRow, image: Image.Image, view: View, attribution: Attribution) -> tuple[str, str | None, Annotation]:
            annotation = prompter.finish(image, row.question, view, attribution)
            name, data, maps_name, maps_data = encode_outputs(annotation, safe_stem(row.id), format, encoding,
                                                              save_map_files)
            for extra_name, extra_image in zip(extra_output_names(annotation, safe_stem(row.id), encoding),
                                               (annotation.images or [])[1:]):
                folder.write(extra_name, encoding.encode(extra_image))  # before the record that names it
            folder.write(name, data)
            if maps_name and maps_data is not None:
                folder.write(maps_name, maps_data)
            return name, maps_name, annotation

        todo: list[ManifestRow] = []
        for row, key in zip(rows, keys):
            if row.error:
                record(row, "error", error=row.error)
            elif key[0] == "id" and row.id in finished:
                summary.skipped += 1
            else:
                todo.append(row)

        pool = _Writers(record, finish, writers, limit=2 * batch_size)
        try:
            for batch in _prefetch(todo, batch_size, workers, prompter):
                ready: list[Loaded] = []
                for row, future in batch:
                    try:
                        image, view = future.result()
                        ready.append((row, image, view))
                    except ROW_ERRORS as exc:
                        pool.submit((row, None, None, exc))  # type: ignore[arg-type]
                for item in annotate_rows(prompter, ready):
                    pool.submit(item)
        finally:
            try:
                pool.close()
            finally:
                bar.close()
    return summary


def message(exc: BaseException) -> str:
    """A row's error as one line."""
    if isinstance(exc, AttnPromptError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc, None, empty='')}"[:500]


_message = message  # the old private name
