"""Objectives by name, so configs and sweeps pick a method with a string.

The objective config carries the options of every method (MoCo's momentum and queue size sit next to the
shared temperature), so build_objective passes each method only the options its constructor declares and
rejects options that no registered method knows (a typo in a sweep should fail at once, not be ignored).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, TypeVar

import torch.nn as nn

from mcl_ray.errors import ConfigError
from mcl_ray.objectives.base import ContrastiveMethod

OBJECTIVES: dict[str, type[ContrastiveMethod]] = {}

_T = TypeVar("_T", bound=type[ContrastiveMethod])


def register_objective(name: str) -> Callable[[_T], _T]:
    """Class decorator: make a ContrastiveMethod subclass buildable as `name`."""

    def decorator(cls: _T) -> _T:
        if name in OBJECTIVES and OBJECTIVES[name] is not cls:
            raise ConfigError(f"objective '{name}' is already registered by {OBJECTIVES[name].__qualname__}")
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return decorator


def _keyword_options(cls: type, required_only: bool = False) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not (required_only and p.default is not inspect.Parameter.empty)
    }


def check_objective_name(name: str) -> str:
    """Return the registry key for `name` (case-insensitive), or raise ConfigError listing the known ones."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in OBJECTIVES:
        known = sorted(OBJECTIVES)
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"objective.name: unknown objective '{name}'{hint}; known objectives: {', '.join(known)}")
    return key


def build_objective(name: str, encoder: nn.Module, **options: Any) -> ContrastiveMethod:
    """Instantiate the objective registered as `name` around `encoder`.

    Options another registered objective declares are dropped; options none declares raise ConfigError.
    """
    key = check_objective_name(name)
    cls = OBJECTIVES[key]
    own = _keyword_options(cls)
    anyone = set().union(*(_keyword_options(c) for c in OBJECTIVES.values()))
    unknown = sorted(set(options) - anyone)
    if unknown:
        raise ConfigError(
            f"objective.{unknown[0]}: unknown option for objective '{key}'; known options: {', '.join(sorted(anyone))}"
        )
    missing = sorted(_keyword_options(cls, required_only=True) - set(options))
    if missing:
        raise ConfigError(f"objective.{missing[0]}: required by objective '{key}' but not given")
    return cls(encoder, **{k: v for k, v in options.items() if k in own})
