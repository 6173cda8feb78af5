"""Shapes world: a synthetic benchmark of coloured shapes where the truth is known.

    make_scene(seed, size=(64, 64), ...)   one Scene: image, objects, exact visible masks
    make_dataset(n, seed, aspect=...)      scenes lazily; square, 2:1, 1:2 or mixed
    Scene.caption(), Scene.queries()       captions and unambiguous queries with answers and targets
    SHAPES, COLORS                         the vocabulary, as data

Names are loaded lazily so that ``python -m attnprompt.shapes.world`` does not find its own module
already imported by the package (runpy warns about that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .render import COLORS, SHAPES
    from .world import Query, Scene, ShapeObject, aspect_size, make_dataset, make_scene, scene_seed

_EXPORTS = {
    "SHAPES": "render",
    "COLORS": "render",
    "ShapeObject": "world",
    "Scene": "world",
    "Query": "world",
    "make_scene": "world",
    "make_dataset": "world",
    "aspect_size": "world",
    "scene_seed": "world",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
