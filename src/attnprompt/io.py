"""Compatibility: the file helpers now live in :mod:`attnprompt.files`, by concern.

This module only re-exports their public names (it shadows the standard library's ``io`` in
name only: inside the package, ``io`` still means the standard library).
"""

from .files import (
    MAX_PIXELS,
    ImageLoadError,
    JSONError,
    ManifestRow,
    confined_path,
    json_line,
    load_json,
    unicode_problem,
    append_jsonl,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    read_jsonl_tolerant,
    read_manifest,
    safe_stem,
)
from .files.durable import _atomic_write  # noqa: F401 - a private name some tests reach for

__all__ = [
    "MAX_PIXELS",
    "ImageLoadError",
    "load_image",
    "ManifestRow",
    "read_manifest",
    "safe_stem",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_save_image",
    "append_jsonl",
    "read_jsonl_tolerant",
    "JSONError",
    "load_json",
    "json_line",
    "unicode_problem",
    "confined_path",
]
