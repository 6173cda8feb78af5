"""Model names: shipped models, local folders and hub ids, read from the local cache first.

Hub ids are tried from the local cache before the network, so a cached model works offline
without waiting for time-outs; ``HF_HUB_OFFLINE=1`` skips the network altogether.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..errors import AttnPromptError, first_line

__all__ = ["SHIPPED_MODELS_DIR", "shipped_model", "looks_like_path", "hub_offline", "load_from_hub_or_dir"]


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
        try:
            return load(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise AttnPromptError(f"cannot load {what} from {name!r}: {first_line(exc)}") from None
    try:
        return load(name, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if hub_offline():
        raise AttnPromptError(_not_cached(name, "HF_HUB_OFFLINE is set"))
    try:
        return load(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise AttnPromptError(_not_cached(name, first_line(exc))) from None


def _not_cached(name: str, why: str) -> str:
    return (
        f"cannot load model {name!r}: it is not in the local cache and the hub could not provide it ({why}). "
        f"Download it where the hub is reachable (huggingface-cli download {name} --local-dir DIR) "
        f"and pass the folder instead: --model DIR"
    )
