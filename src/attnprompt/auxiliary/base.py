"""The auxiliary-model protocol, the registry of backends, and device/dtype/hub helpers.

An auxiliary model turns ``(images, queries)`` into token-space maps. A backend is one small file
that subclasses :class:`ClipAuxiliary` and registers a loader with :func:`register_backend`.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from ..errors import AttnPromptError
from .clip_common import ClipTower, TokenMaps, compute_token_maps

__all__ = [
    "ClipAuxiliary",
    "DEFAULT_MODEL",
    "BACKENDS",
    "register_backend",
    "load_auxiliary",
    "resolve_device",
    "resolve_dtype",
    "check_queries",
]

DEFAULT_MODEL = "openai/clip-vit-large-patch14-336"

Loader = Callable[..., "ClipAuxiliary"]
BACKENDS: dict[str, Loader] = {}


def register_backend(name: str) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(model, *, device, dtype, **options)`` under ``name``."""

    def wrap(loader: Loader) -> Loader:
        BACKENDS[name] = loader
        return loader

    return wrap


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` picks CUDA, then MPS, then CPU; an unavailable device is an error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AttnPromptError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AttnPromptError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AttnPromptError(f"device {device!r} requested but MPS is not available")
    return dev


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``None`` means float32. Accepts torch dtypes or names (float32, float16, bfloat16, fp16, bf16)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise AttnPromptError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise AttnPromptError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16") from None


def check_queries(queries: Sequence[str], count: int) -> list[str]:
    """One non-empty string per image."""
    if isinstance(queries, str):
        queries = [queries]
    out = list(queries)
    if len(out) != count:
        raise AttnPromptError(f"{count} image(s) but {len(out)} queries: give one query per image")
    for i, q in enumerate(out):
        if not isinstance(q, str):
            raise AttnPromptError(f"query {i} is not a string: {q!r}")
        if not q.strip():
            raise AttnPromptError(f"query {i} is empty: give a question or instruction about the image")
    return out


def warn_truncated(query: str, length: int, limit: int) -> None:
    warnings.warn(
        f"query truncated to the text encoder's {limit}-token context ({length} tokens): {query[:60]!r}...",
        stacklevel=3,
    )


def looks_like_path(name: str) -> bool:
    """A name that can only mean a local file or folder (not a hub id like ``org/name``)."""
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name in (".", "..")
        or Path(name).exists()
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def load_from_hub_or_dir(load: Callable[..., Any], name: str, what: str, **kwargs: Any) -> Any:
    """Call a ``from_pretrained``-style ``load`` on a local folder or a hub id, with clear errors.

    Hub ids are tried from the local cache first, so a cached model works offline without
    waiting for network time-outs.
    """
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise AttnPromptError(f"model path {name!r} does not exist")
        if not path.is_dir():
            raise AttnPromptError(f"model path {name!r} is not a folder (a Hugging Face model folder has config.json)")
        try:
            return load(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise AttnPromptError(f"cannot load {what} from {name!r}: {_one_line(exc)}") from None
    try:
        return load(name, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if hub_offline():
        raise AttnPromptError(_not_cached(name, "HF_HUB_OFFLINE is set"))
    try:
        return load(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise AttnPromptError(_not_cached(name, _one_line(exc))) from None


def _not_cached(name: str, why: str) -> str:
    return (
        f"cannot load model {name!r}: it is not in the local cache and the hub could not provide it ({why}). "
        f"Download it where the hub is reachable (huggingface-cli download {name} --local-dir DIR) "
        f"and pass the folder instead: --model DIR"
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class ClipAuxiliary(ABC):
    """A CLIP model that produces ``psi_cls`` / ``psi_comp`` token maps for (image, query) pairs.

    Subclasses load a model and describe its vision tower; the attribution math is shared
    (:mod:`attnprompt.auxiliary.clip_common`).
    """

    backend: str = ""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype

    # -- what a backend provides -------------------------------------------------------------
    @property
    @abstractmethod
    def tower(self) -> ClipTower:
        """The vision tower, described for the shared decomposition."""

    @property
    @abstractmethod
    def pad_color(self) -> tuple[int, int, int]:
        """The processor's mean colour in 0-255: letterbox padding that normalises to ~0."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the square input the tower sees."""

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> pixel tensor ``[B, 3, S, S]`` on the model's device and dtype."""

    @abstractmethod
    def tokenize(self, queries: Sequence[str]) -> Any:
        """Queries -> whatever :meth:`encode_text` takes (truncating with a warning)."""

    @abstractmethod
    def encode_text(self, tokens: Any) -> torch.Tensor:
        """Tokenized queries -> text embeddings ``[B, E]`` (not normalised)."""

    # -- shared ------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.tower.num_layers

    def token_maps(
        self,
        images: Sequence[Image.Image],
        queries: Sequence[str],
        layers: tuple[int, ...],
        comp_layer: int | None,
    ) -> TokenMaps:
        """Maps for RGB images (already in the geometry's view) and one query per image."""
        queries = check_queries(queries, len(images))
        if not images:
            raise AttnPromptError("no images given")
        pixel_values = self.preprocess(images)
        tokens = self.tokenize(queries)
        return self.token_maps_from_tensors(pixel_values, tokens, layers, comp_layer)

    def token_maps_from_tensors(
        self,
        pixel_values: torch.Tensor,
        tokens: Any,
        layers: tuple[int, ...],
        comp_layer: int | None,
    ) -> TokenMaps:
        """Maps from preprocessed pixels ``[B, 3, S, S]`` and token ids (bypassing preprocessing)."""
        with torch.no_grad():
            text_embeds = self.encode_text(tokens)
        pixel_values = pixel_values.to(self.device, self.dtype)
        return compute_token_maps(self.tower, pixel_values, text_embeds, layers, comp_layer)


def load_auxiliary(
    model: str = DEFAULT_MODEL,
    *,
    backend: str = "auto",
    pretrained: str | None = None,
    model_config: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> ClipAuxiliary:
    """Load a CLIP auxiliary model through a registered backend.

    ``backend="auto"`` picks open_clip when ``pretrained`` or ``model_config`` is given, for
    ``hf-hub:`` ids and for open_clip architecture names (``ViT-B-16``), and transformers
    otherwise (hub ids such as ``openai/clip-vit-large-patch14-336`` and local folders).
    """
    # Backends register on import; importing here keeps optional dependencies optional.
    from . import clip_hf, clip_openclip  # noqa: F401

    name = backend
    if backend == "auto":
        name = _guess_backend(model, pretrained, model_config)
    if name not in BACKENDS:
        raise AttnPromptError(f"unknown backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    if name == "hf" and (pretrained or model_config):
        raise AttnPromptError("--pretrained and --model-config are open_clip options; use --backend open_clip")
    return BACKENDS[name](
        model, device=resolve_device(device), dtype=resolve_dtype(dtype),
        pretrained=pretrained, model_config=model_config,
    )


def _guess_backend(model: str, pretrained: str | None, model_config: object) -> str:
    if pretrained or model_config or model.startswith(("hf-hub:", "local-dir:")):
        return "open_clip"
    if looks_like_path(model):
        return "hf"
    from .clip_openclip import is_open_clip_name

    return "open_clip" if is_open_clip_name(model) else "hf"
