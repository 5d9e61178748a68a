"""The one place where errors become HTTP responses (the gateway's REST API and the worker's OpenAI
front), and the request body size limit.

Body: `{"error": {"message", "type", "param", "code"}}` like OpenAI, where `param` names the field.
- `HeteroserveError` → its `http_status`;
- Pydantic validation errors and malformed JSON → 400 (not FastAPI's 422), naming the field as
  `messages[0].role`;
- Starlette's own HTTP errors (unknown path 404, wrong method 405) → the same shape;
- anything else → 500 with a generic message (the traceback goes to the log, never to the client).
`BodyLimitMiddleware` answers 413 when `Content-Length` or the bytes actually received exceed
`max_body_bytes`, before the body is parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import HeteroserveError

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error"}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": str(status)}}


def error_response(exc: HeteroserveError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return JSONResponse(error_body(exc.http_status, str(exc), exc.field), status_code=exc.http_status,
                        headers=headers)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
# Pydantic reports a union's failure once per member; a member whose *type* did not match says less
# than one whose constraint did ("at least 1 character"), so those are preferred.
_MISMATCH_SUFFIX = "_type"


def _is_union_tag(part: object) -> bool:
    """A union member's tag in a pydantic location (`str`, `list[constrained-str]`), not a field."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "-" in part)


def _field_path(loc: Sequence[object]) -> str:
    """`("body", "messages", 0, "role")` → `messages[0].role`; union tags dropped; `body` alone."""
    path = ""
    for part in loc:
        if (part == "body" and not path) or _is_union_tag(part):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errors = [dict(e) for e in exc.errors()] or [{"loc": ("body",), "msg": "invalid", "type": "invalid"}]
    first = errors[0]
    if first.get("type") == "json_invalid":
        context = first.get("ctx") or {}
        return "body", f"body: malformed JSON ({context.get('error', 'cannot parse')})"
    telling = [e for e in errors if not str(e.get("type", "")).endswith(_MISMATCH_SUFFIX)]
    chosen = (telling or errors)[0]
    field = _field_path(chosen.get("loc", ()))
    if field == "body" and chosen.get("type") in ("model_type", "model_attributes_type", "dict_type"):
        return field, "body: must be a JSON object (Content-Type: application/json)"
    if chosen.get("type") == "missing":
        return field, f"{field}: required field is missing"
    return field, f"{field}: {_reason(chosen)}"


def _reason(error: dict[str, Any]) -> str:
    """Pydantic's error in the words the gateway's own checks use ("must be <= 2, got 3")."""
    ctx, got = error.get("ctx") or {}, error.get("input")
    match error.get("type"):
        case "greater_than_equal":
            return f"must be >= {ctx.get('ge')}, got {got!r}"
        case "less_than_equal":
            return f"must be <= {ctx.get('le')}, got {got!r}"
        case "greater_than":
            return f"must be > {ctx.get('gt')}, got {got!r}"
        case "less_than":
            return f"must be < {ctx.get('lt')}, got {got!r}"
        case "string_too_short":
            return "must not be empty"
        case "too_short":
            least = ctx.get("min_length", 1)
            return "must hold at least one item" if least == 1 else f"must hold at least {least} items"
        case "too_long":
            return f"must hold at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
        case "literal_error":
            return f"must be one of {ctx.get('expected')}, got {got!r}"
        case "int_type" | "int_parsing" | "int_from_float":
            return "must be an integer"
        case _:
            return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def install_error_handlers(app: FastAPI, server: str) -> None:
    """`server` names who answers in the 500 message ("gateway", "worker")."""
    @app.exception_handler(HeteroserveError)
    async def _domain(request: Request, exc: HeteroserveError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _validation_message(exc)
        return JSONResponse(error_body(400, message, field), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404), wrong methods (405, with Allow) and Starlette's own refusals get the
        # same error shape as everything else, not FastAPI's {"detail": ...}.
        param = "path" if exc.status_code in (404, 405) else None
        return JSONResponse(error_body(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                       param), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, f"internal error in the {server} (see its log)"), status_code=500)


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over `max_body_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject(send)
            return
        seen = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    rejected = True  # answer now; the app sees a disconnect and its reply is dropped
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(error_body(413, f"body: request body exceeds {self.max_body_bytes} bytes",
                                     "body")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
