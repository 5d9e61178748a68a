"""REST transport: the gateway's OpenAI-compatible API over httpx, SSE for streams.

HTTP errors become the domain errors of `common.errors` by status code (400 → InvalidRequestError,
401 → AuthenticationError, 403 → PermissionDeniedError, 404 → NotFoundError, 429 → RateLimitedError,
503 → UnavailableError, 504 → DeadlineExceededError), keeping the message and the field (`param`).
Connection failures are `UnavailableError`; timeouts `DeadlineExceededError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from common.errors import (
    AuthenticationError,
    DeadlineExceededError,
    HeteroserveError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from heteroserve.client.types import Chunk, Model, Request, Route, Usage

_BY_STATUS: dict[int, type[HeteroserveError]] = {
    400: InvalidRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    413: InvalidRequestError, 422: InvalidRequestError, 429: RateLimitedError, 502: UnavailableError,
    503: UnavailableError, 504: DeadlineExceededError}


def http_error(status: int, body: bytes) -> HeteroserveError:
    message, field = f"HTTP {status}", None
    try:
        error = json.loads(body)["error"]
        message, field = str(error.get("message", message)), error.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    field = field if isinstance(field, str) else None
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2:]
    return _BY_STATUS.get(status, HeteroserveError)(message, field=field)


def _body(request: Request, stream: bool) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"model": request.model, "temperature": request.temperature,
                            "top_p": request.top_p, "stream": stream, **request.extra}
    for name in ("max_tokens", "seed"):
        if getattr(request, name) is not None:
            body[name] = getattr(request, name)
    for name in ("top_k", "ignore_eos", "slo_class", "session_id", "tenant"):
        if getattr(request, name):
            body[name] = getattr(request, name)
    if request.stop:
        body["stop"] = list(request.stop)
    if request.messages is not None:
        body["messages"] = [{"role": r, "content": c} for r, c in request.messages]
        return "/v1/chat/completions", body
    body["prompt"] = request.prompt
    return "/v1/completions", body


def _chunk(data: dict[str, Any]) -> Chunk:
    """One response body or SSE event as a `Chunk`; an error event or a malformed one raises a
    `HeteroserveError` (field "response" when the gateway's answer itself is malformed)."""
    try:
        return _parse_chunk(data)
    except HeteroserveError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise HeteroserveError(f"malformed answer from the gateway ({type(exc).__name__}: {exc})",
                               field="response") from None


def _parse_chunk(data: dict[str, Any]) -> Chunk:
    if "error" in data:
        error = data["error"]
        code = error.get("code") if isinstance(error, dict) else None
        raise http_error(code if isinstance(code, int) and code >= 400 else 500,
                         json.dumps({"error": error}).encode())
    choice = (data.get("choices") or [{}])[0]
    text = choice.get("text")
    if text is None:
        text = (choice.get("delta") or choice.get("message") or {}).get("content") or ""
    usage = data.get("usage")
    return Chunk(id=str(data.get("id", "")), text=text, finish_reason=choice.get("finish_reason"),
                 usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]) if usage else None,
                 route=Route.from_mapping(data["route"]) if "route" in data else None)


@contextmanager
def _transport_errors() -> Iterator[None]:
    """httpx timeouts as `DeadlineExceededError`, other transport failures as `UnavailableError`."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise DeadlineExceededError(f"gateway did not answer in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise UnavailableError(f"cannot reach the gateway: {exc}") from None


class RestTransport:
    def __init__(self, base_url: str, api_key: str | None, timeout_seconds: float) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0))
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def models(self) -> list[Model]:
        data = await self._json("GET", "/v1/models", None)
        return [Model(m["id"], int(m.get("max_context_tokens", 0))) for m in data["data"]]

    async def complete(self, request: Request) -> Chunk:
        """The whole answer as one final chunk (text joined)."""
        path, body = _body(request, stream=False)
        return _chunk(await self._json("POST", path, body))

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        path, body = _body(request, stream=True)
        with _transport_errors():
            async with self._http.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    raise http_error(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    payload = line[len("data: "):]
                    if payload == "[DONE]":
                        return
                    yield _chunk(json.loads(payload))

    async def _json(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        with _transport_errors():
            response = await self._http.request(method, path, json=body)
        if response.status_code != 200:
            raise http_error(response.status_code, response.content)
        return response.json()
