"""The house's layering, checked: the math layers never import Ray, the config imports nothing below it and
loads without torch, and checking a config's names imports no torch either."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mcl_ray"
MATH_LAYERS = ("data", "models", "objectives", "mcl", "eval", "train", "plan", "store")
LOWER_LAYERS = ("data", "models", "objectives", "mcl", "eval", "train", "plan", "store", "engine", "study", "tracking")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", MATH_LAYERS)
def test_math_layers_never_import_ray(layer):
    offenders = {
        str(f.relative_to(PACKAGE)): sorted(m for m in imported_modules(f) if m == "ray" or m.startswith("ray."))
        for f in files(layer)
    }
    assert not {f: m for f, m in offenders.items() if m}


def test_config_imports_nothing_below_it():
    below = tuple(f"mcl_ray.{layer}" for layer in LOWER_LAYERS)
    offenders = {
        str(f.relative_to(PACKAGE)): sorted(m for m in imported_modules(f) if m.startswith(below) or m in ("torch", "timm"))
        for f in files("config")
    }
    assert not {f: m for f, m in offenders.items() if m}


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(','.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    return set(out.split(","))


@pytest.mark.slow
def test_the_config_and_the_name_checks_load_without_torch(tmp_path, monkeypatch):
    from mcl_ray.models.timm_names import timm_names

    monkeypatch.setenv("MCL_RAY_CACHE", str(tmp_path))
    timm_names.cache_clear()  # the first lookup lists timm's names once (importing timm) and caches them per version
    assert "resnet18" in timm_names()["models"] and list(tmp_path.glob("timm-*-names.json"))
    warm = "from mcl_ray.plan.from_config import load_config\nload_config(overrides=['model.backbone=resnet18'])"
    config_only = loaded_after("import mcl_ray.config\nmcl_ray.config.load_config(overrides=['mcl.stages=2'])")
    checked = loaded_after(f"{warm}\nfrom mcl_ray.plan.from_config import stage_specs\nstage_specs(load_config())")
    for modules in (config_only, checked):
        heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "timm", "kornia", "faiss", "ray"))
        assert not heavy, heavy[:5]
