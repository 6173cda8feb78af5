"""Model names: shipped models, local folders and hub ids, read from the local cache first.

Hub ids are tried from the local cache before the network, so a cached model works offline
without waiting for time-outs; ``HF_HUB_OFFLINE=1`` skips the network altogether, and so does an
unreachable hub (asked once, quickly: otherwise an uncached id costs minutes of the hub client's
retries before its error). Light on purpose (no torch): the command line asks before it imports a
model library.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import AttnPromptError, first_line
from .folder_check import check_model_folder

__all__ = ["MODEL_MAP_ENV", "model_map", "substitute_model", "SHIPPED_MODELS_DIR", "shipped_model", "looks_like_path",
           "hub_offline", "load_from_hub_or_dir", "hub_reachable", "offline_unless_hub_reachable", "not_cached_message",
           "open_clip_message", "fail_fast_if_unavailable"]


#: Environment variable holding the model map: a JSON object, or the path of a JSON file.
MODEL_MAP_ENV = "ATTNPROMPT_MODEL_MAP"


def model_map() -> dict[str, dict[str, str | None]]:
    """The model substitutions of ``$ATTNPROMPT_MODEL_MAP`` (empty when unset).

    The map sends a model name (a hub id, an open_clip architecture) to another model, for
    machines without the hub: ``{"openai/clip-vit-large-patch14-336": "shapes-clip"}``; a value
    may also be an object with ``model``, ``pretrained`` and ``model_config`` (``""`` or ``null``:
    none), for open_clip models. :func:`attnprompt.tiny.offline_model_map` builds one whose
    targets are tiny local models; the README's snippets are tested through it.
    """
    raw = os.environ.get(MODEL_MAP_ENV, "").strip()
    if not raw:
        return {}
    try:
        text = raw if raw.startswith("{") else Path(raw).expanduser().read_text(encoding="utf-8")
        table = json.loads(text)
    except (OSError, ValueError) as exc:
        raise AttnPromptError(f"{MODEL_MAP_ENV}: not a JSON object or a readable JSON file ({first_line(exc)})") from None
    if not isinstance(table, dict):
        raise AttnPromptError(f"{MODEL_MAP_ENV}: expected a JSON object of model name -> model")
    out: dict[str, dict[str, str | None]] = {}
    for name, value in table.items():
        entry = {"model": value} if isinstance(value, str) else value
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise AttnPromptError(f"{MODEL_MAP_ENV}: the entry for {name!r} needs a model name")
        out[str(name)] = {k: (str(v) if v else None) for k, v in entry.items() if k in ("model", "pretrained", "model_config")}
    return out


def substitute_model(model: str, pretrained: str | None, model_config: str | None) -> tuple[str, str | None, str | None]:
    """``(model, pretrained, model_config)`` after the model map (unchanged for unmapped names)."""
    entry = model_map().get(model)
    if entry is None:
        return model, pretrained, model_config
    return (entry["model"] or model, entry.get("pretrained", pretrained) if "pretrained" in entry else pretrained,
            entry.get("model_config") if "model_config" in entry else model_config)


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
        check_model_folder(path)
        try:
            return load(str(path), **kwargs)
        except AttnPromptError:
            raise
        except Exception as exc:  # noqa: BLE001 - a local folder is user input: any loader failure is one line
            files = ", ".join(sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth")))
            pickled = "weights_only" in str(exc).lower() or "unpickl" in type(exc).__name__.lower()
            hint = f" (pickle checkpoint {files}: only weights_only-safe files are loaded)" if files and pickled else ""
            raise AttnPromptError(
                f"cannot load {what} from {name!r}{hint}: {type(exc).__name__}: {first_line(exc)}") from None
    try:
        return load(name, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if hub_offline():
        raise AttnPromptError(not_cached_message(name, "HF_HUB_OFFLINE is set"))
    if not hub_reachable():
        raise AttnPromptError(not_cached_message(name, "the hub is unreachable"))
    try:
        return load(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise AttnPromptError(not_cached_message(name, first_line(exc))) from None


_REACHABLE: dict[str, bool] = {}



def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection within ``timeout`` seconds (asked once per
    process and endpoint)."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if endpoint not in _REACHABLE:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        result: list[bool] = []

        def probe() -> None:  # a thread: name resolution has no time-out of its own
            try:
                socket.create_connection((url.hostname or "", port), timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)

        worker = threading.Thread(target=probe, daemon=True)
        worker.start()
        worker.join(timeout)
        _REACHABLE[endpoint] = bool(result and result[0])
    return _REACHABLE[endpoint]


class offline_unless_hub_reachable:
    """Within this block the hub client works from its cache alone when the hub is unreachable
    (a cached model still loads; an uncached one fails at once instead of after retries).
    ``as`` gives whether it cut the hub off."""

    def __enter__(self) -> bool:
        self._saved: bool | None = None
        if hub_offline() or hub_reachable():
            return False
        from huggingface_hub import constants

        self._saved = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        return True

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = self._saved


def not_cached_message(name: str, why: str) -> str:
    return (
        f"cannot load model {name!r}: it is not in the local cache and the hub could not provide it ({why}). "
        f"Download it where the hub is reachable (hf download {name} --local-dir DIR) and pass the folder: "
        f"--model DIR; or work offline with a model shipped in the package: --model shapes-clip (CLIP) "
        f"or --model shapes-llava (LVLM), for shapes-world scenes"
    )


def open_clip_message(name: str, pretrained: str | None, why: str) -> str:
    return (
        f"cannot load open_clip model {name!r} (pretrained={pretrained!r}): its weights are not in the local "
        f"cache and the hub is {why}. Where the hub is reachable, run the same command once (or download the "
        "weights file: --pretrained FILE.safetensors); or work offline with a model shipped in the package: "
        "--model shapes-clip (shapes-world scenes)"
    )


def open_clip_weights_cached() -> bool:
    """Whether any open_clip weights sit in the local caches (the hub's, and open_clip's own)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return True  # cannot tell: let the loader try
    names = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
    for repo in Path(HF_HUB_CACHE).glob("models--*"):
        if any(any((repo / "snapshots").glob(f"*/{n}")) for n in names):
            return True
    own = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
    return own.is_dir() and any(own.iterdir())


def fail_fast_if_unavailable(name: str, pretrained: str | None = None) -> None:
    """Fail now, with the messages above, when the hub is off or unreachable and ``name`` (a hub id,
    ``org/name``) is not in the local cache, or ``pretrained`` is an open_clip tag while no open_clip
    weights are cached at all. Anything else (folders, shipped names, files, cached ids, a reachable
    hub) is left to the loaders."""
    if pretrained and not (os.sep in pretrained or "/" in pretrained or pretrained.endswith(
            (".safetensors", ".pt", ".bin", ".pth"))):
        if (hub_offline() or not hub_reachable()) and not open_clip_weights_cached():
            raise AttnPromptError(open_clip_message(name, pretrained, "off (HF_HUB_OFFLINE)" if hub_offline()
                                                    else "unreachable"))
        return
    if "/" not in name or name.startswith(("hf-hub:", "local-dir:", ".", "/", "~")) or Path(name).exists():
        return
    if name.rsplit("/", 1)[1][:1].isdigit():  # open_clip's ViT-B/16 spelling
        return
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if hub_offline():
        raise AttnPromptError(not_cached_message(name, "HF_HUB_OFFLINE is set"))
    if not hub_reachable():
        raise AttnPromptError(not_cached_message(name, "the hub is unreachable"))
