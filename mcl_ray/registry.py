"""One registry type for every pluggable kind: data sources, backbone providers, heads, methods, regularisers.

Like timm's model registry: an entry is registered by decorator in its own file, `names()` lists what can be
used, and lookup fails with a "did you mean" that names the config field. A registry may own a package in
which every module is one entry named after its file (`objectives/methods/simclr.py` is `simclr`): names
are then known without importing any of those modules (so `mcl-ray validate` never imports torch), and a
module is imported the first time its entry is needed. Adding a plug-in is adding a file.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from mcl_ray.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, field: str, package: str | None = None):
        self.kind = kind  # "objective", "data set", ...
        self.field = field  # the config field that names an entry, for error messages
        self.package = package
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make `obj` available as `name` (lower case)."""

        def decorator(obj: T) -> T:
            key = name.lower()
            if key in self._entries and self._entries[key] is not obj:
                raise ConfigError(f"{self.kind} {key!r} is registered twice ({self._entries[key]!r} and {obj!r})")
            self._entries[key] = obj
            return obj

        return decorator

    def _package_names(self) -> list[str]:
        if self.package is None:
            return []
        pkg = importlib.import_module(self.package)
        return [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._package_names()))

    def check(self, name: str) -> str:
        """The canonical (lower-case) name, or ConfigError naming the field, the closest names and all names."""
        key = name.strip().lower() if isinstance(name, str) else name
        known = self.names()
        if key in known:
            return key
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{self.field}: unknown {self.kind} '{name}'{hint}; known: {', '.join(known)}")

    def get(self, name: str) -> T:
        key = self.check(name)
        if key not in self._entries and self.package is not None:
            importlib.import_module(f"{self.package}.{key}")
            if key not in self._entries:
                raise ConfigError(f"{self.package}.{key} does not register a {self.kind} named {key!r}")
        return self._entries[key]

    def __contains__(self, name: Any) -> bool:
        return isinstance(name, str) and name.strip().lower() in self.names()
