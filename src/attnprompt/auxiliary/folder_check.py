"""A local model folder checked before transformers reads it, so that damage is one line naming
the folder and the file instead of a traceback from deep inside a loader.

Cheap checks only (no weight is read): every JSON file the loaders read parses, and every
``.safetensors`` file has a sane header whose tensors fit inside the file (a truncated copy or
an absurd header length is caught here).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import AttnPromptError
from ..files.jsondata import JSONError, load_json

__all__ = ["check_model_folder"]

# The safetensors format caps its JSON header at 100 MB.
_MAX_HEADER = 100_000_000


def _problem_with_safetensors(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes, no header)"
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            return f"damaged header (claims {n} bytes in a {size}-byte file)"
        raw = f.read(n)
    try:
        header = load_json(raw)
    except JSONError as exc:
        return f"damaged header ({exc.reason})"
    if not isinstance(header, dict):
        return "damaged header (not a JSON object)"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(v, int) for v in offsets)):
            return f"damaged header (tensor {name!r} has no data offsets)"
        end = max(end, offsets[1])
    if 8 + n + end > size:
        return f"truncated ({size} bytes; its tensors need {8 + n + end})"
    return None


def check_model_folder(folder: str | os.PathLike[str]) -> None:
    """Raise one :class:`AttnPromptError` naming the folder and the first damaged file in it."""
    root = Path(folder)
    for path in sorted(root.iterdir()):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                load_json(path.read_bytes())
                problem = None
            elif path.suffix == ".safetensors":
                problem = _problem_with_safetensors(path)
            else:
                continue
        except JSONError as exc:
            problem = exc.reason
        except OSError as exc:
            problem = f"cannot read ({exc.strerror or exc})"
        if problem:
            raise AttnPromptError(f"model folder {str(root)!r}: {path.name}: {problem}")
