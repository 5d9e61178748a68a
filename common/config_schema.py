"""JSON Schema of a configuration dataclass, exactly as `common.config.build(cls, data, strict=True)`
reads it: the document that APIs taking such a mapping in a request body publish.

Mapping, field by field: `int` → integer, `float` → number, `bool` → boolean, `str` → string,
`Literal[...]` → enum, `X | None` → anyOf with null, `tuple[X, ...]` / `list[X]` → array of X,
`dict[str, X]` → object of X, a nested dataclass → its own object schema (once, under `$defs`).
Every object is closed (`additionalProperties: false`, as `build` refuses unknown keys) and lists the
fields without a default as `required`. What a dataclass's `__post_init__` checks (ranges, one field
or another) is not expressible here; those answers stay 400 naming the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

_SCALARS: dict[Any, dict[str, Any]] = {int: {"type": "integer"}, float: {"type": "number"},
                                       bool: {"type": "boolean"}, str: {"type": "string"}, Any: {}}


def json_schema(cls: type, ref_prefix: str = "#/$defs/") -> dict[str, Any]:
    """The schema of dataclass `cls`, with nested dataclasses in `$defs` referenced as
    `ref_prefix + name` (pass `"#/components/schemas/"` and lift `$defs` for an OpenAPI document)."""
    defs: dict[str, dict[str, Any]] = {}
    root = _object(cls, defs, ref_prefix)
    return {**root, "$defs": defs} if defs else root


def _object(cls: type, defs: dict[str, dict[str, Any]], ref_prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {f.name: _schema(hints[f.name], defs, ref_prefix) for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": properties,
                              "additionalProperties": False}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):  # not the generated signature
        schema["description"] = " ".join(cls.__doc__.split())
    return {**schema, "required": required} if required else schema


def _schema(hint: Any, defs: dict[str, dict[str, Any]], ref_prefix: str) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [{"type": "null"} if a is type(None) else _schema(a, defs, ref_prefix)
                          for a in args]}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if hint.__name__ not in defs:
            defs[hint.__name__] = {}  # placeholder first: a dataclass may nest itself
            defs[hint.__name__] = _object(hint, defs, ref_prefix)
        return {"$ref": ref_prefix + hint.__name__}
    if origin in (tuple, list):
        return {"type": "array", "items": _schema(args[0], defs, ref_prefix) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1], defs, ref_prefix)}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    raise TypeError(f"no JSON Schema for {hint!r}: add it to common.config_schema")
