"""Files by concern: images (safe decoding), manifests, names (safe stems), durable writes.

Everything a batch job touches on disk goes through here, so that one bad input becomes one
:class:`~attnprompt.errors.AttnPromptError` (a single line naming the file or row) instead of a
traceback, a half-written output, or a job that dies on row 9,000 of 10,000.
"""

from .durable import append_jsonl, atomic_save_image, atomic_write_bytes, atomic_write_text, read_jsonl_tolerant
from .images import MAX_PIXELS, ImageLoadError, load_image
from .jsondata import JSONError, json_line, load_json
from .manifests import ManifestRow, read_manifest
from .names import confined_path, safe_stem, unicode_problem

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
