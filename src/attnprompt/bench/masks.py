"""The content-addressed store of attention-prompted images: each mask is computed once.

A stored prompt image is keyed by what determines it: the image's content (SHA-256 of the file's
bytes, so a copy under another name or another benchmark is the same entry), the query the
auxiliary sees, the auxiliary's identity (its class, model name or folder, dtype) and every
:class:`~attnprompt.config.MaskConfig` field. Conditions that use the same auxiliary share the
entries, and so do benchmarks and runs that point ``--masks-dir`` at the same folder.

The folder is the output folder of the core's manifest job (``attnprompt.jobs.run_manifest``)
with the key as row id: ``DIR/<key>.png`` plus ``DIR/manifest.jsonl``. A key already recorded
"ok" with its file present is never recomputed; an interrupted computation resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import AttnPromptError
from ..files import ManifestRow, confined_path, read_jsonl_tolerant, unicode_problem
from ..targets.cache import model_identity

__all__ = ["MaskCounts", "auxiliary_identity", "file_digest", "mask_key", "make_masks"]


@dataclass
class MaskCounts:
    """How many prompt images a run needed, computed and reused (per auxiliary kind)."""

    computed: int = 0
    reused: int = 0
    failed: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, kind: str, computed: int, reused: int, failed: int) -> None:
        self.computed += computed
        self.reused += reused
        self.failed += failed
        mine = self.by_kind.setdefault(kind, {"computed": 0, "reused": 0, "failed": 0})
        mine["computed"] += computed
        mine["reused"] += reused
        mine["failed"] += failed

    def to_dict(self) -> dict[str, Any]:
        return {"computed": self.computed, "reused": self.reused, "failed": self.failed, "by_kind": self.by_kind}


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (the image's content, whatever its name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def auxiliary_identity(prompter: Any) -> dict[str, Any]:
    """What identifies the auxiliary behind a :class:`~attnprompt.Prompter`: its class, its model
    (hub id, or the folder it was loaded from), dtype and kind, and the mask settings."""
    aux = prompter.auxiliary
    device = getattr(aux, "device", None)
    return {
        "class": type(aux).__name__,
        # a local folder by its real path and its weight files' sizes and times: two folders named
        # alike, or a model retrained in place, are different auxiliaries
        "model": model_identity(str(getattr(aux, "name", "") or "")),
        "dtype": str(getattr(aux, "dtype", "")),
        "device": str(getattr(device, "type", device)),  # cpu and cuda kernels differ in the last bits
        "kind": str(getattr(prompter, "kind", "")),
        "config": prompter.config.to_dict(),
    }


def mask_key(image_digest: str, query: str, identity: dict[str, Any]) -> str:
    """The store key of one prompt image (hex SHA-256 of the canonical JSON of its inputs)."""
    blob = json.dumps({"image": image_digest, "query": query, "auxiliary": identity}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def make_masks(
    wanted: Sequence[tuple[str, str]],
    prompter: Any,
    folder: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[str | Exception], int, int]:
    """The prompt image of each ``(image path, query)`` in ``wanted``, from the store in ``folder``
    or computed into it.

    Returns ``(paths or errors in the order of wanted, computed, reused)``: ``computed`` counts
    the distinct entries made now, ``reused`` the uses of ``wanted`` served by an entry that was
    already there or made earlier in this call.
    """
    from ..jobs import OUTPUT_MANIFEST, run_manifest

    root = Path(folder)
    identity = auxiliary_identity(prompter)
    digests: dict[str, str | Exception] = {}
    keys: list[str | Exception] = []
    for image, query in wanted:
        if image not in digests:
            try:
                digests[image] = file_digest(image)
            except OSError as e:
                digests[image] = AttnPromptError(f"cannot read image {image}: {e.strerror or e}")
        d = digests[image]
        keys.append(d if isinstance(d, Exception) else mask_key(d, query, identity))
    rows: dict[str, ManifestRow] = {}
    for (image, query), key in zip(wanted, keys):
        if isinstance(key, str) and key not in rows:
            # checked here so the error names the image, not the query's place in a batch
            problem = "empty" if not query.strip() else unicode_problem(query)
            rows[key] = ManifestRow(id=key, image=image, question=query, line=len(rows) + 1,
                                    error=f"the question about {image} is {problem}" if problem else None)
    summary = run_manifest(prompter, list(rows.values()), root, batch_size=batch_size, progress=progress)
    made: dict[str, str | Exception] = {}
    for rec in read_jsonl_tolerant(root / OUTPUT_MANIFEST):
        rid = str(rec.get("id"))
        if rid not in rows:
            continue
        if rec.get("status") == "ok" and rec.get("output"):
            try:  # a shared --masks-dir is input: its manifest must not point anywhere else
                path = confined_path(root, rec["output"])
            except AttnPromptError as exc:
                made[rid] = exc
                continue
            if path.is_file():
                made[rid] = str(path)
        elif not isinstance(made.get(rid), str):
            made[rid] = AttnPromptError(str(rec.get("error") or "annotation failed"))
    out: list[str | Exception] = []
    for key in keys:
        if isinstance(key, Exception):
            out.append(key)
        else:
            out.append(made.get(key, AttnPromptError("annotation failed")))
    computed = summary.done
    ok_uses = sum(isinstance(o, str) for o in out)
    return out, computed, max(0, ok_uses - computed)
