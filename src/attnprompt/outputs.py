"""The output folder of a manifest job, shared by every engine (local threads, Ray).

What a folder holds and guarantees:

- ``manifest.jsonl``: one record per row, keyed by the row's id (rows without a usable id, and
  second uses of an id, by their manifest line). During a run records are appended, one fsynced
  line each; before and after a run the file is compacted atomically to the last record per key,
  so a rerun replaces a failed row's record instead of adding another.
- a lock file (``.attnprompt.lock``, ``fcntl.flock``): a second job on the same folder is refused
  with one line; the kernel drops the lock with its process, so a killed job never leaves it stuck.
- annotated images in the chosen :class:`ImageEncoding`, and ``maps/<stem>.npz`` on request.
  Every file is written atomically through a hidden ``.NAME.XXXXXXXX.tmp`` temporary; a kill -9
  can leave one behind, and the next run (holding the lock, so no writer of ours is active)
  removes them.
"""

from __future__ import annotations

import contextlib
import io as _stdio
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from PIL import Image

from .errors import AttnPromptError
from .files import append_jsonl, atomic_write_bytes, atomic_write_text, json_line, read_jsonl_tolerant

__all__ = [
    "OUTPUT_MANIFEST",
    "LOCK_FILE",
    "IMAGE_FORMATS",
    "ImageEncoding",
    "RecordKey",
    "record_key",
    "OutputFolder",
    "remove_stale_temporaries",
]

OUTPUT_MANIFEST = "manifest.jsonl"
LOCK_FILE = ".attnprompt.lock"
IMAGE_FORMATS = ("png", "jpeg", "webp")
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# zlib's Z_RLE strategy: on annotated images (runs of the gray level, smooth photos) level 1 with
# RLE is ~6x faster than Pillow's default (level 6) at a similar or smaller size; still lossless.
_Z_RLE = 3


@dataclass(frozen=True)
class ImageEncoding:
    """How annotated images are stored.

    The default, PNG at zlib level 1 with the RLE strategy, is lossless: the file holds exactly
    the annotated pixels (what the target model should see). ``jpeg`` and ``webp`` are lossy and
    much smaller; ``quality`` (1-100) defaults to 95 for JPEG and 90 for WebP.
    """

    format: str = "png"
    quality: int | None = None
    png_compress_level: int = 1

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise AttnPromptError(f"unknown image format {self.format!r}; choose one of {', '.join(IMAGE_FORMATS)}")
        if self.quality is not None:
            if self.format == "png":
                raise AttnPromptError("--quality applies to jpeg and webp; PNG is lossless (see --png-compress-level)")
            if not 1 <= self.quality <= 100:
                raise AttnPromptError(f"quality must be in 1..100, got {self.quality}")
        if not 0 <= self.png_compress_level <= 9:
            raise AttnPromptError(f"PNG compression level must be in 0..9, got {self.png_compress_level}")

    @property
    def suffix(self) -> str:
        return _SUFFIX[self.format]

    def encode(self, image: Image.Image) -> bytes:
        """The image as file bytes in this encoding."""
        if self.format == "jpeg" and image.mode not in ("RGB", "L"):
            raise AttnPromptError(f"JPEG cannot store a {image.mode} image (the rgba output): use png or webp")
        buffer = _stdio.BytesIO()
        if self.format == "png":
            image.save(buffer, format="PNG", compress_level=self.png_compress_level, compress_type=_Z_RLE)
        elif self.format == "jpeg":
            image.save(buffer, format="JPEG", quality=self.quality or 95)
        else:
            image.save(buffer, format="WEBP", quality=self.quality or 90)
        return buffer.getvalue()


RecordKey = tuple[str, str]


def record_key(record: dict[str, Any]) -> RecordKey:
    """What a record describes: its id, or its manifest line when the row owns no id."""
    item_id = record.get("id")
    if item_id and not record.get("duplicate_id"):
        return ("id", str(item_id))
    return ("line", str(record.get("line")))


# tempfile's names: the prefix we give (".<target name, cut at 40>."), 8 random characters from
# its alphabet, and our ".tmp" suffix (see attnprompt.files.durable).
_TEMPORARY = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Remove the hidden temporaries our atomic writes leave when killed; returns how many.

    Only call this while holding the folder's lock: a live writer's temporary looks the same.
    """
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class _Lock:
    """An exclusive, non-blocking lock on a file that the OS releases when its process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def acquire(self, folder: Path) -> None:
        try:
            handle = open(self.path, "a+b")  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise AttnPromptError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            _lock_handle(handle)
        except OSError:
            handle.close()
            raise AttnPromptError(
                f"{folder} is in use by another attnprompt job (lock {self.path.name}); "
                "wait for it to finish or choose another output folder"
            ) from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                _unlock_handle(self._handle)
            self._handle.close()
            self._handle = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_handle(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_handle(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_handle(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_handle(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class OutputFolder:
    """A job's output folder, held for the length of a ``with`` block.

    Entering creates the folder (and ``maps/`` with ``maps=True``), takes the lock, removes stale
    temporaries and compacts the output manifest (dropping line-keyed records, which the run
    records again from the manifest it reads). :meth:`record` appends one record (thread-safe);
    :meth:`compact` rewrites the manifest atomically with one record per key. Leaving compacts
    and releases the lock, also when the run was interrupted.
    """

    def __init__(self, path: str | os.PathLike[str], *, maps: bool = False) -> None:
        self.path = Path(path)
        self.manifest = self.path / OUTPUT_MANIFEST
        self.maps = maps
        self.order: list[RecordKey] = []  # preferred record order (the input manifest's)
        self._lock = _Lock(self.path / LOCK_FILE)
        self._write_lock = threading.Lock()

    def __enter__(self) -> "OutputFolder":
        if self.path.exists() and not self.path.is_dir():
            raise AttnPromptError(f"output folder {self.path} is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.maps:
                (self.path / "maps").mkdir(exist_ok=True)
        except OSError as exc:
            raise AttnPromptError(f"cannot create the output folder {self.path}: {exc.strerror or exc}") from None
        self._lock.acquire(self.path)
        try:
            remove_stale_temporaries(self.path)
            if (self.path / "maps").is_dir():
                remove_stale_temporaries(self.path / "maps")
            self.compact(drop_lines=True)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.compact()
        finally:
            self._lock.release()

    # -- records ------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """The records on disk, one per key (the last written wins)."""
        if not self.manifest.exists():
            return []
        latest: dict[RecordKey, dict[str, Any]] = {}
        for record in read_jsonl_tolerant(self.manifest):
            latest.pop(record_key(record), None)  # re-insert: dict order = last write
            latest[record_key(record)] = record
        return list(latest.values())

    def record(self, record: dict[str, Any]) -> None:
        """Append one record (fsynced); safe to call from several threads."""
        with self._write_lock:
            append_jsonl(self.manifest, record)

    def compact(self, *, drop_lines: bool = False) -> None:
        """Rewrite the manifest atomically with one record per key, in :attr:`order` first."""
        if not self.manifest.exists():
            return
        with self._write_lock:
            raw = read_jsonl_tolerant(self.manifest)
            latest = {record_key(r): r for r in raw}
            if drop_lines:
                latest = {k: r for k, r in latest.items() if k[0] != "line"}
            rank = {key: i for i, key in enumerate(self.order)}
            first_seen = {key: i for i, key in reversed(list(enumerate(map(record_key, raw))))}
            keys = sorted(latest, key=lambda k: (rank.get(k, len(rank)), first_seen[k]))
            records = [latest[k] for k in keys]
            if records == raw:
                return
            text = "".join(json_line(r) for r in records)  # json_line: ids with lone surrogates too
            atomic_write_text(self.manifest, text)

    def finished_ids(self) -> set[str]:
        """Ids whose last record is ``ok`` and whose output file (inside this folder) exists."""
        root = self.path.resolve()
        done = set()
        for record in self.records():
            output = record.get("output")
            if record.get("status") != "ok" or not isinstance(output, str) or not output:
                continue
            target = (self.path / output).resolve()
            if root in target.parents and target.is_file():
                done.add(str(record.get("id")))
        return done

    # -- files --------------------------------------------------------------------------------
    def write(self, name: str, data: bytes) -> None:
        """Write ``data`` atomically to ``name`` (a name made by the job, never from input)."""
        atomic_write_bytes(self.path / name, data)
