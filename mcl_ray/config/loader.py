"""YAML files plus dotted command-line overrides into a validated ExperimentConfig.

`load_config("exp.yaml", ["mcl.stages=3", "objective.temperature=0.2"])`. Override values are parsed as YAML
scalars/lists (`mcl.clusters=[10,20]`). Every problem becomes one ConfigError listing each bad field.
This checks the structure only; `mcl_ray.load_config` (mcl_ray.plan.from_config) also checks every name
against the registries, which is what the CLI, the studies and the README use.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from collections.abc import Hashable
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from mcl_ray.config.schema import ExperimentConfig
from mcl_ray.errors import ConfigError

ALIASES = {"stages": "mcl.stages", "clusters": "mcl.clusters", "temperature": "objective.temperature"}


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=[1,2]'] -> {'a': {'b': 1}, 'c': [1, 2]}; short aliases like `stages=3` are expanded."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. mcl.stages=3")
        key, raw = item.split("=", 1)
        key = ALIASES.get(key.strip(), key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part!r} is set to a value and also used as a section")
            node = child
        node[parts[-1]] = value
    return tree


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base constructor reports unhashable keys as YAML errors
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first {seen[key]}, again {key_node.start_mark}); "
                    "the first would be silently ignored", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _model_at(path: tuple, root: type[BaseModel] = ExperimentConfig) -> type[BaseModel] | None:
    model: Any = root
    for part in path:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_validation_error(exc: ValidationError, root: type[BaseModel] = ExperimentConfig) -> str:
    """One line per problem, dotted field first, with a suggestion for unknown keys."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, str))
        field = ".".join(str(p) for p in err["loc"] if p != "[key]") or "config"  # a bad mapping key: its own name
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1], root)
            known = list(parent.model_fields) if parent else []
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"; did you mean '{'.'.join(loc[:-1] + (close[0],))}'?" if close else ""
            where = ".".join(loc[:-1]) or "top level"
            lines.append(f"{field}: unknown key (allowed in {where}: {', '.join(known)}){hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            named = re.match(r"(\w+): (.*)", msg, re.S)  # a model-level check naming one of its fields
            model = _model_at(loc, root)
            if named and model is not None and named.group(1) in model.model_fields:
                field, msg = ".".join(loc + (named.group(1),)), named.group(2)
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
            lines.append(f"{field}: {msg}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def build_config(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a plain dict (structure, types, ranges, cross-field rules)."""
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    data = read_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(overrides))
    return build_config(data)


def set_path(data: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with `dotted` (e.g. 'objective.temperature', short aliases allowed) set to `value`."""
    key = ALIASES.get(dotted, dotted)
    parts = key.split(".")
    update: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        update = {part: update}
    return deep_merge(data, update)


def dump_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """The same config with every local path made absolute (and ~ expanded).

    Ray workers do not run in the driver's working directory (Ray Train moves them to its own), so a relative
    `output_dir` or `data.root` would silently point somewhere else there. URIs (s3://...) are left alone.
    """

    def absolute(path: str | None) -> str | None:
        if path is None or "://" in path:
            return path
        return str(Path(path).expanduser().resolve())

    data = cfg.data.model_copy(update={"root": absolute(cfg.data.root), "cache_dir": absolute(cfg.data.cache_dir),
                                       "labels": absolute(cfg.data.labels)})
    mcl = cfg.mcl.model_copy(update={"init_checkpoint": absolute(cfg.mcl.init_checkpoint)})
    ray_cfg = cfg.ray.model_copy(update={"storage": absolute(cfg.ray.storage)})
    return cfg.model_copy(update={"output_dir": absolute(cfg.output_dir), "data": data, "mcl": mcl, "ray": ray_cfg})
