"""The auxiliary-model protocol, the registry of backends, and device/dtype/hub helpers.

An auxiliary model turns ``(images, queries)`` into token-space maps and a mask per image
(:class:`Attribution`). Two kinds exist: ``clip`` (:class:`ClipAuxiliary`, one small file per
backend) and ``lvlm`` (:mod:`attnprompt.auxiliary.lvlm`, one small file per model family).
A loader registers itself with :func:`register_backend`.
"""

from __future__ import annotations

import os
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .. import maps as mapmath
from ..config import MaskConfig
from ..errors import AttnPromptError
from ..geometry import SquareResize, View, make_tiled_view, make_view, resolve_geometry
from ..io import unicode_problem
from .clip_common import ClipTower, TokenMaps, compute_token_maps

__all__ = [
    "Attribution",
    "Auxiliary",
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


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained``'s dtype argument: ``dtype`` in transformers 5, ``torch_dtype`` before."""
    import transformers

    return {"dtype": dtype} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": dtype}


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
        problem = unicode_problem(q)
        if problem:  # tokenizers raise a TypeError on these, outside every per-row error
            raise AttnPromptError(f"query {i} is {problem}")
    return out


def warn_truncated(query: str, length: int, limit: int) -> None:
    warnings.warn(
        f"query truncated to the text encoder's {limit}-token context ({length} tokens): {query[:60]!r}...",
        stacklevel=3,
    )


SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[1] / "shapes" / "models"


def shipped_model(name: str) -> str | None:
    """The folder of a model shipped in the package (``shapes-clip``), or ``None``.

    The shipped models are trained on the synthetic shapes world (``attnprompt.shapes``): they
    are for scenes of that world, tests and offline demos, not for photos.
    """
    folder = SHIPPED_MODELS_DIR / name
    return str(folder) if "/" not in name and (folder / "config.json").is_file() else None


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
        from .folder_check import check_model_folder

        check_model_folder(path)
        try:
            return load(str(path), **kwargs)
        except AttnPromptError:
            raise
        except Exception as exc:  # noqa: BLE001 - a local folder is user input: any loader failure is one line
            files = ", ".join(sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth")))
            hint = f" (pickle checkpoint {files}: only weights_only-safe files are loaded)" \
                if files and ("weights_only" in str(exc).lower() or "unpickl" in type(exc).__name__.lower()) else ""
            raise AttnPromptError(
                f"cannot load {what} from {name!r}{hint}: {type(exc).__name__}: {_one_line(exc)}") from None
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
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).strip().splitlines()  # no terminal colours
    return (text[0] if text else type(exc).__name__)[:300]


@dataclass
class Attribution:
    """What an auxiliary model says about one (image, query) pair.

    Attributes:
        mask: ``[h, w]`` float32 final mask in [0, 1] on the token grid.
        maps: the raw token-space maps by name (``psi_cls``, ``psi_comp`` or ``attention``).
        answer: the auxiliary model's own answer (LVLM kind), else ``None``.
    """

    mask: torch.Tensor
    maps: dict[str, torch.Tensor]
    answer: str | None = None


class Auxiliary(ABC):
    """An auxiliary model: a view of each image, then maps and a mask per (image, query)."""

    kind: str = ""
    backend: str = ""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype

    @abstractmethod
    def view(self, image: Image.Image, geometry: str) -> View:
        """What the model is given for ``image`` and where its token grid lands (see geometry.py)."""

    @abstractmethod
    def check_config(self, config: MaskConfig) -> None:
        """Fail early, with a clear message, on settings this model cannot honour (layers...)."""

    @abstractmethod
    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        """Maps and masks for images already in their view, one query per image."""

    def attribute_views(self, views: Sequence[View], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        """Maps and masks for views made by :meth:`view`, one query per view."""
        return self.attribute([v.image for v in views], queries, config)


class ClipAuxiliary(Auxiliary):
    """A CLIP model that produces ``psi_cls`` / ``psi_comp`` token maps for (image, query) pairs.

    Subclasses load a model and describe its vision tower; the attribution math is shared
    (:mod:`attnprompt.auxiliary.clip_common`).
    """

    kind = "clip"

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

    @property
    @abstractmethod
    def grid_size(self) -> int:
        """Tokens per side of the tower's patch grid (``image_size // patch_size``)."""

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

    @property
    def square_resize(self) -> SquareResize | None:
        """``(side, PIL filter)`` when preprocessing starts by resizing a square image to ``side x side``.

        Lets the aligned view hand the model the small letterboxed square instead of the full
        canvas (the same pixels, see :func:`~attnprompt.geometry.letterbox_resized`); ``None``
        (the default) keeps the full-size path.
        """
        return None

    def view(self, image: Image.Image, geometry: str) -> View:
        geometry = resolve_geometry(geometry, image.size)
        if geometry == "tiled":
            return make_tiled_view(image, self.image_size, self.grid_size, self.pad_color)
        return make_view(image, geometry, self.pad_color, resize=self.square_resize)

    @staticmethod
    def clip_layers(config: MaskConfig) -> tuple[int, ...]:
        return config.layers if config.layers is not None else (-2,)

    def check_config(self, config: MaskConfig) -> None:
        from ..config import resolve_layer

        for layer in self.clip_layers(config):
            resolve_layer(layer, self.num_layers, "layer")
        if config.comp_layer is not None:
            resolve_layer(config.comp_layer, self.num_layers, "comp layer")

    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        tm = self.token_maps(images, queries, self.clip_layers(config), config.comp_layer)
        return self.attributions(tm, config)

    def attribute_views(self, views: Sequence[View], queries: Sequence[str], config: MaskConfig) -> list[Attribution]:
        if not any(v.tiles for v in views):
            return self.attribute([v.image for v in views], queries, config)
        queries = check_queries(queries, len(views))
        # Every crop of every view goes through the model in one batch; each view's crops are
        # then stitched back together from their raw maps.
        crops: list[Image.Image] = []
        crop_queries: list[str] = []
        for v, q in zip(views, queries):
            vc = v.crops()
            crops.extend(vc)
            crop_queries.extend([q] * len(vc))
        tm = self.token_maps(crops, crop_queries, self.clip_layers(config), config.comp_layer)
        out: list[Attribution] = []
        start = 0
        for v in views:
            n = max(1, len(v.tiles))
            part = slice(start, start + n)
            start += n
            if not v.tiles:
                stitched = TokenMaps(tm.psi_cls[part], None if tm.psi_comp is None else tm.psi_comp[part],
                                     tm.layers, tm.comp_layer)
            else:
                cells = [t.cell for t in v.tiles]
                grid = v.grid or (0, 0)
                psi_comp = None if tm.psi_comp is None else mapmath.stitch(tm.psi_comp[part], cells, grid)[None]
                stitched = TokenMaps(mapmath.stitch(tm.psi_cls[part], cells, grid)[None], psi_comp, tm.layers,
                                     tm.comp_layer)
            out.extend(self.attributions(stitched, config))
        return out

    @staticmethod
    def merge(token_maps: TokenMaps, config: MaskConfig) -> torch.Tensor:
        """Token maps -> final ``[B, P, P]`` mask with the config's enhance and kernel."""
        return mapmath.merge_clip_maps(token_maps.psi_cls, token_maps.psi_comp,
                                       enhance_coe=config.enhance, kernel=config.kernel,
                                       kernel_grid=config.kernel_grid, strict_order=config.strict_order)

    def attributions(self, tm: TokenMaps, config: MaskConfig) -> list[Attribution]:
        masks = self.merge(tm, config).cpu()
        out = []
        for i in range(masks.shape[0]):
            maps = {"psi_cls": tm.psi_cls[i].cpu()}
            if tm.psi_comp is not None:
                maps["psi_comp"] = tm.psi_comp[i].cpu()
            out.append(Attribution(mask=masks[i], maps=maps))
        return out

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
    kind: str = "auto",
    backend: str = "auto",
    pretrained: str | None = None,
    model_config: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> Auxiliary:
    """Load an auxiliary model: a CLIP (``kind="clip"``) or a vision-language model (``"lvlm"``).

    ``kind="auto"`` reads the model's config: ``clip`` checkpoints load as CLIP, LLaVA,
    LLaVA-NeXT and Qwen2(.5)-VL checkpoints as LVLMs. ``backend="auto"`` picks open_clip when
    ``pretrained`` or ``model_config`` is given, for ``hf-hub:`` ids and for open_clip
    architecture names (``ViT-B-16``), and transformers otherwise (hub ids, local folders).
    """
    # Backends register on import; importing here keeps optional dependencies optional.
    from . import clip_hf, clip_openclip, lvlm  # noqa: F401

    if kind not in ("auto", "clip", "lvlm"):
        raise AttnPromptError(f"unknown auxiliary kind {kind!r}; choose auto, clip or lvlm")
    model = shipped_model(model) or model
    name = _guess_backend(model, pretrained, model_config) if backend == "auto" else backend
    if name not in ("hf", "open_clip"):
        raise AttnPromptError(f"unknown backend {backend!r}; choose one of auto, hf, open_clip")
    options = dict(device=resolve_device(device), dtype=resolve_dtype(dtype))
    if name == "open_clip":
        if kind == "lvlm":
            raise AttnPromptError("open_clip models are CLIPs; the LVLM kind needs a transformers model")
        return BACKENDS["open_clip"](model, pretrained=pretrained, model_config=model_config, **options)
    if pretrained or model_config:
        raise AttnPromptError("--pretrained and --model-config are open_clip options; use --backend open_clip")
    from transformers import AutoConfig

    config = load_from_hub_or_dir(AutoConfig.from_pretrained, model, "config")
    model_type = getattr(config, "model_type", "unknown")
    if model_type == "clip":
        if kind == "lvlm":
            raise AttnPromptError(f"{model!r} is a CLIP model, not a vision-language model; use the clip kind")
        return BACKENDS["hf"](model, **options)
    if model_type in lvlm.FAMILIES:
        if kind == "clip":
            raise AttnPromptError(f"{model!r} is a {model_type!r} vision-language model, not a CLIP; use the lvlm kind")
        return BACKENDS["lvlm"](model, config=config, **options)
    raise AttnPromptError(
        f"{model!r} is a {model_type!r} model, not a ViT CLIP (transformers CLIPModel) or a supported "
        f"vision-language model ({', '.join(sorted(lvlm.FAMILIES))})"
    )


def _guess_backend(model: str, pretrained: str | None, model_config: object) -> str:
    if pretrained or model_config or model.startswith(("hf-hub:", "local-dir:")):
        return "open_clip"
    if looks_like_path(model):
        return "hf"
    from .clip_openclip import is_open_clip_name

    return "open_clip" if is_open_clip_name(model) else "hf"
