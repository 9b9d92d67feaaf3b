"""A small name → factory registry that fails loudly.

Used for analyzers, model architectures and rule-set plugins. Unknown names raise with close-match
suggestions, duplicate registrations raise, and entry points are loaded at the first lookup, never at
import time (so `exposure --help` stays instant and a broken plugin only hurts the command that needs it).
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(LookupError):
    """Raised for unknown or duplicate names."""


class Registry(Generic[T]):
    """Maps names to objects (usually factories).

    Args:
        kind: What is registered, used in error messages ("analyzer", "rule set").
        entry_point_group: Optional entry-point group whose members are loaded on first lookup.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._entry_points_loaded = entry_point_group is None
        self._entry_point_error: Exception | None = None

    def register(self, name: str, obj: T | None = None, *, origin: str = "built-in"):
        """Register `obj` under `name`; usable as a decorator when `obj` is omitted."""

        def _add(item: T) -> T:
            key = name.strip()
            if not key:
                raise RegistryError(f"{self.kind} name must not be empty")
            if key in self._items:
                raise RegistryError(
                    f"duplicate {self.kind} {key!r}: already registered by {self._origins[key]}, "
                    f"again by {origin}"
                )
            self._items[key] = item
            self._origins[key] = origin
            return item

        if obj is None:
            return _add
        return _add(obj)

    def _load_entry_points(self) -> None:
        if self._entry_point_error is not None:
            # A broken plugin fails every lookup, not just the first one.
            raise self._entry_point_error
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                self.register(ep.name, ep.load(), origin=f"plugin {ep.value}")
            except Exception as exc:
                error = exc if isinstance(exc, RegistryError) else RegistryError(
                    f"cannot load {self.kind} plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}")
                self._entry_point_error = error
                raise error from (None if error is exc else exc)

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def suggest(name: str, candidates: list[str] | tuple[str, ...]) -> str:
    """Return a ' (did you mean …?)' suffix for `name`, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


__all__ = ["Registry", "RegistryError", "suggest"]
