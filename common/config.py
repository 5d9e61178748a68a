"""Configuration loading at the process edge: YAML / JSON / environment into frozen dataclasses.

Components define one frozen dataclass of configuration each, validated in `__post_init__` (raising
`ValueError` that names the field). This module turns files and environment variables into those
dataclasses and turns every problem into a one-line `ConfigError` naming the file, the field and the
reason. Nothing here is called from inside a component: parse at the edge, pass typed objects in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.errors import ConfigError

T = TypeVar("T")


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file whose top level is a mapping."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read file ({exc.strerror})", source=source) from None
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"not valid {'JSON' if source.endswith('.json') else 'YAML'}: {first_line}",
                          source=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}", source=source)
    return data


def build(cls: type[T], data: Mapping[str, Any], *, source: str | None = None, prefix: str = "",
          strict: bool = False) -> T:
    """Build the frozen dataclass `cls` from `data`, recursively, naming any bad field.

    Unknown keys, missing required keys, wrong types and the dataclass's own `ValueError`s all become a
    `ConfigError` whose field is the dotted path (e.g. `pools[2].role`). By default scalars may come as
    strings (`"8"` for an int, `"yes"` for a bool), as YAML files and environment variables write them;
    `strict=True` takes JSON's types only (an integral float is an int, as JSON Schema says), which is
    what `common.config_schema.json_schema(cls)` documents.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"must be a mapping, got {type(data).__name__}", field=prefix or None,
                          source=source)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields), key=repr)  # keys may be non-strings in YAML (`1: x`)
    if unknown:
        raise ConfigError(f"unknown field (expected one of: {', '.join(sorted(fields))})",
                          field=_join(prefix, str(unknown[0])), source=source)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, _Edge(source, strict), _join(prefix, name))
    missing = [name for name, f in fields.items() if name not in kwargs and _is_required(f)]
    if missing:
        raise ConfigError("required field is missing", field=_join(prefix, missing[0]), source=source)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc), field=prefix or None, source=source) from None


def env_overrides(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{PREFIX_FOO_BAR: v}` → `{"foo_bar": v}` for every variable starting with `PREFIX_`."""
    environ = os.environ if environ is None else environ
    head = prefix.upper().rstrip("_") + "_"
    return {k[len(head):].lower(): v for k, v in environ.items() if k.startswith(head)}


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclasses.dataclass(frozen=True)
class _Edge:
    """Where the data came from (for errors) and how strictly its scalars are read."""

    source: str | None
    strict: bool


def _coerce(hint: Any, value: Any, edge: _Edge, field: str) -> Any:
    source = edge.source
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, edge, field)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, source=source, prefix=field, strict=edge.strict)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"must be a list, got {type(value).__name__}", field=field, source=source)
        item = args[0] if args else Any
        items = [_coerce(item, v, edge, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"must be a mapping, got {type(value).__name__}", field=field, source=source)
        return {k: _coerce(args[1], v, edge, f"{field}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        # strict: 1 is not True, though they compare equal
        same_type = not edge.strict or any(a == value and type(a) is type(value) for a in args)
        if value not in args or not same_type:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"must be one of {choices}, got {value!r}", field=field, source=source)
        return value
    return _coerce_scalar(hint, value, edge, field)


def _coerce_scalar(hint: Any, value: Any, edge: _Edge, field: str) -> Any:
    source = edge.source
    if hint is Any:
        return value
    if edge.strict:
        return _strict_scalar(hint, value, edge, field)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"must be {name}, got {value!r}", field=field, source=source)


def _strict_scalar(hint: Any, value: Any, edge: _Edge, field: str) -> Any:
    """JSON's types only: no strings for numbers or booleans; 2.0 is the integer 2."""
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    ok = {bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, int | float) and not isinstance(v, bool)}.get(hint)
    if ok is not None and ok(value):
        return float(value) if hint is float else value
    if ok is None and isinstance(hint, type) and isinstance(value, hint):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"must be {name}, got {value!r}", field=field, source=edge.source)
