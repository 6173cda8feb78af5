"""Open registries: names resolved lazily from a table, run-time registrations and entry points.

A registry maps a name to an object in three layers, looked up in this order:

1. what was registered at run time (``register(name, obj)``: ``register_backend``,
   ``register_family``);
2. the built-in table, ``name -> "module:attribute"``, imported on first use (so no module is
   imported before it is needed, and no result depends on the order modules were imported in);
3. the entry points of an installed distribution in the registry's group (``attnprompt.auxiliaries``
   for backends, ``attnprompt.lvlm_families`` for LVLM families), loaded on first use.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Callable, Generic, Iterator, Mapping, TypeVar, cast

from ..errors import AttnPromptError, first_line

__all__ = ["Registry", "import_object"]

T = TypeVar("T")


def import_object(target: str) -> object:
    """The object a ``"package.module:attribute"`` string names."""
    module, _, attribute = target.partition(":")
    value: object = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        value = getattr(value, part)
    return value


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping of names to objects, resolved lazily (see the module doc).

    ``make`` turns what a table entry or an entry point names into the stored object (for
    instance, a class into an instance).
    """

    def __init__(self, what: str, group: str, table: Mapping[str, str],
                 make: Callable[[object], T] | None = None) -> None:
        self.what = what
        self.group = group
        self.table = dict(table)
        self._make = make
        self._registered: dict[str, T] = {}
        self._loaded: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add or replace ``name`` for this process (takes precedence over tables and entry points)."""
        self._registered[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Forget a run-time registration (built-in and installed names stay)."""
        self._registered.pop(name, None)

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def _resolve(self, name: str) -> T | None:
        if name in self._registered:
            return self._registered[name]
        if name in self._loaded:
            return self._loaded[name]
        try:
            if name in self.table:
                value = import_object(self.table[name])
            else:
                ep = self._entry_points().get(name)
                if ep is None:
                    return None
                value = ep.load()
        except (ImportError, AttributeError) as exc:
            raise AttnPromptError(f"{self.what} {name!r} cannot be loaded: {first_line(exc)}") from exc
        obj = self._make(value) if self._make is not None else cast(T, value)
        self._loaded[name] = obj
        return obj

    def __getitem__(self, name: str) -> T:
        obj = self._resolve(name)
        if obj is None:
            raise KeyError(name)
        return obj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._registered or name in self.table
                                          or name in self._entry_points())

    def names(self) -> list[str]:
        """Every known name: registered, built in, installed (without importing any of them)."""
        return list(dict.fromkeys([*self._registered, *self.table, *self._entry_points()]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
