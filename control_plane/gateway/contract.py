"""The OpenAPI document states what this gateway accepts, including the bounds only known at start-up.

The request models (`schemas.py`) carry every bound that does not depend on configuration. Three do,
and are written into the document when it is first served:
- `model`: an enum of the served model names (others get 404);
- `max_tokens` / `max_completion_tokens`: maximum `max_tokens_limit` (an API key may set a lower
  limit of its own: that request gets 400 naming `max_tokens`);
- token-id prompts: maximum the smallest served vocabulary size - 1.
What no schema can state: a prompt whose token count (after tokenization or the chat template) plus
`max_tokens` exceeds the model's context gets 400 naming `prompt`, `messages` or `max_tokens`, as
OpenAI does; and a `tenant` other than the key's own gets 403.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from control_plane.gateway.schemas import ChatCompletionChunk, CompletionChunk, ErrorResponse

REQUEST_SCHEMAS = ("CompletionRequest", "ChatCompletionRequest")
# What each streamed event's `data` holds: a chunk, or an error after the first token; then `[DONE]`.
STREAMS: dict[str, type[BaseModel]] = {"/v1/completions": CompletionChunk,
                                       "/v1/chat/completions": ChatCompletionChunk}
REF = "#/components/schemas/{model}"


def install_contract(app: FastAPI, model_names: Iterable[str], max_tokens_limit: int,
                     vocab_size: int) -> None:
    """Make `app.openapi()` return the document with the start-up bounds filled in (built once)."""
    names = sorted(model_names)
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            base = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
            cached.update(specialise(base, names, max_tokens_limit, vocab_size))
        return cached

    setattr(app, "openapi", openapi)  # FastAPI's documented way to customise the document  # noqa: B010


def specialise(document: dict[str, Any], model_names: list[str], max_tokens_limit: int,
               vocab_size: int) -> dict[str, Any]:
    """A copy of `document` with the served models, the max_tokens limit and the token-id bound."""
    out = copy.deepcopy(document)
    schemas = out.get("components", {}).get("schemas", {})
    for name in REQUEST_SCHEMAS:
        props = schemas.get(name, {}).get("properties", {})
        if "model" in props:
            props["model"]["enum"] = list(model_names)
        for key in ("max_tokens", "max_completion_tokens"):
            if key in props:
                _each_integer(props[key], lambda s: s.update(maximum=max_tokens_limit))
        if name == "CompletionRequest" and "prompt" in props:
            _token_ids(props["prompt"], lambda s: s.update(maximum=vocab_size - 1))
    for path, chunk in STREAMS.items():
        _stream_schema(out, path, chunk)
    return out


def _stream_schema(document: dict[str, Any], path: str, chunk: type[BaseModel]) -> None:
    """Document the `text/event-stream` answer of `path` event by event (OpenAPI 3.1 content keywords)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (chunk, ErrorResponse):
        schema = model.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        components.setdefault(model.__name__, schema)
    payload = {"anyOf": [{"$ref": REF.format(model=chunk.__name__)},
                         {"$ref": REF.format(model=ErrorResponse.__name__)}]}
    event = {"type": "object", "required": ["data"], "properties": {"data": {
        "type": "string", "if": {"const": "[DONE]"},
        "else": {"contentMediaType": "application/json", "contentSchema": payload}}}}
    content = document["paths"][path]["post"]["responses"]["200"]["content"]
    content["text/event-stream"] = {"schema": event}


def _each_integer(schema: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            change(option)


def _token_ids(schema: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    for option in schema.get("anyOf", []):
        items = option.get("items", {})
        if option.get("type") == "array" and items.get("type") == "integer":
            change(items)
