"""common.config_schema states exactly what build(..., strict=True) accepts; strict build refuses what
YAML's lax build takes (strings for numbers, 1 for True)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import build
from common.config_schema import json_schema
from common.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    """A nested part."""

    weight: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    name: str
    count: int
    mode: Literal["a", "b"] = "a"
    on: bool = False
    inner: Inner | None = None
    limits: dict[str, int] = field(default_factory=dict)
    parts: tuple[Inner, ...] = ()


def test_schema_of_a_dataclass() -> None:
    schema = json_schema(Outer)
    assert schema["required"] == ["name", "count"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["mode"] == {"enum": ["a", "b"]}
    assert schema["properties"]["inner"] == {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]}
    assert schema["properties"]["limits"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert schema["$defs"]["Inner"]["description"] == "A nested part."
    assert schema["$defs"]["Inner"]["required"] == ["weight"]


@pytest.mark.parametrize("doc, field_name", [
    ({"name": "x", "count": "3"}, "count"),
    ({"name": "x", "count": 3, "on": 1}, "on"),
    ({"name": "x", "count": 3, "on": "yes"}, "on"),
    ({"name": "x", "count": 3, "inner": {"weight": "0.5"}}, "inner.weight"),
    ({"name": "x", "count": 2.5}, "count"),
])
def test_strict_build_refuses_what_lax_build_takes(doc: dict[str, object], field_name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build(Outer, doc, strict=True)
    assert refused.value.field == field_name
    assert not jsonschema.Draft202012Validator(json_schema(Outer)).is_valid(doc)


def test_strict_build_takes_an_integral_float_as_an_integer() -> None:
    assert build(Outer, {"name": "x", "count": 3.0}, strict=True).count == 3


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                       max_size=3),
                           max_leaves=8)
outer_docs = st.fixed_dictionaries(
    {"name": st.one_of(st.text(), json_values), "count": st.one_of(st.integers(), json_values)},
    optional={"mode": st.one_of(st.sampled_from(["a", "b"]), json_values), "on": json_values,
              "inner": st.one_of(st.fixed_dictionaries({"weight": json_values}), json_values),
              "limits": st.dictionaries(st.text(max_size=3), json_values, max_size=2)})


@given(outer_docs)
def test_schema_and_strict_build_agree(doc: dict[str, object]) -> None:
    valid = jsonschema.Draft202012Validator(json_schema(Outer)).is_valid(doc)
    try:
        build(Outer, doc, strict=True)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == valid, doc
