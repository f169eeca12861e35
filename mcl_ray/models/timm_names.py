"""timm's model and optimizer names, cached per timm version so checking a config does not import timm.

Importing timm (and torch under it) takes seconds; the names only change with timm's version, so the first
lookup writes them to `$MCL_RAY_CACHE` (default ~/.cache/mcl-ray) and later ones read that file. A cache
that does not parse as lists of names is ignored and rewritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("MCL_RAY_CACHE", "~/.cache/mcl-ray")).expanduser()


@lru_cache(maxsize=1)
def timm_names() -> dict[str, frozenset[str]]:
    """{'models': architecture names, 'optimizers': optimizer names} of the installed timm."""
    version = metadata.version("timm")
    path = cache_dir() / f"timm-{version}-names.json"
    try:
        data = json.loads(path.read_text())
        if data.get("timm") == version and all(
            isinstance(data.get(k), list) and data[k] and all(isinstance(n, str) for n in data[k])
            for k in ("models", "optimizers")
        ):
            return {k: frozenset(data[k]) for k in ("models", "optimizers")}
    except (OSError, ValueError, AttributeError):
        pass
    import timm
    from timm.optim import list_optimizers

    data = {"timm": version, "models": sorted(timm.list_models()), "optimizers": sorted(list_optimizers())}
    try:  # best effort: a read-only home only costs the next lookup its speed
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data, f)
        os.replace(f.name, path)
    except OSError:
        pass
    return {k: frozenset(data[k]) for k in ("models", "optimizers")}


def is_timm_model(name: str) -> bool:
    """Like timm.is_model (a pretrained tag such as 'resnet18.a1_in1k' is allowed), from the cache when it knows."""
    if name.split(".", 1)[0] in timm_names()["models"]:
        return True
    import timm  # hub names and anything the listing does not cover: ask timm itself

    return timm.is_model(name)
