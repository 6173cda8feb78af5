"""Compatibility: the auxiliary-model plumbing now lives in one module per concern.

:mod:`~attnprompt.auxiliary.protocol` (what a backend is), :mod:`~attnprompt.auxiliary.devices`
(device and dtype), :mod:`~attnprompt.auxiliary.hub` (model names, local cache, offline) and
:mod:`~attnprompt.auxiliary.dispatch` (the backend registry and :func:`load_auxiliary`). This
module re-exports their names so that existing imports keep working.
"""

from .devices import dtype_kwargs, resolve_device, resolve_dtype
from .dispatch import BACKENDS, DEFAULT_MODEL, load_auxiliary, register_backend
from .dispatch import _guess_backend  # noqa: F401 - tests of the old path
from .hub import SHIPPED_MODELS_DIR, hub_offline, load_from_hub_or_dir, looks_like_path, shipped_model
from .protocol import Attribution, Auxiliary, ClipAuxiliary, TokenMaps, check_queries, warn_truncated

__all__ = [
    "Attribution",
    "Auxiliary",
    "ClipAuxiliary",
    "TokenMaps",
    "DEFAULT_MODEL",
    "BACKENDS",
    "register_backend",
    "load_auxiliary",
    "resolve_device",
    "resolve_dtype",
    "dtype_kwargs",
    "check_queries",
    "warn_truncated",
    "SHIPPED_MODELS_DIR",
    "shipped_model",
    "looks_like_path",
    "hub_offline",
    "load_from_hub_or_dir",
]
