"""The two server interceptors of the worker: cluster-token auth, and domain-error -> status mapping.

`AuthInterceptor` requires `authorization: Bearer <cluster token>` on every RPC, compared in constant
time (`hmac.compare_digest`); anything else ends the call with UNAUTHENTICATED before the servicer
runs. Methods under `open_prefixes` (the standard health service, for load-balancer and kubelet
probes) stay open.

`ErrorInterceptor` is the one place where errors become gRPC statuses: a `HeteroserveError` ends the
call with its `grpc_status` and its message (which names the field); any other exception is logged with
its traceback and ends the call with INTERNAL and a generic message, and the worker keeps serving.
It also reports each finished RPC's method and outcome (`ok`, or the status name in lower case) to
`on_finish`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from common.errors import HeteroserveError

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
UnaryBehavior = Callable[[Any, aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, aio.ServicerContext], AsyncIterator[Any]]

HEALTH_PREFIX = "/grpc.health.v1.Health/"
INTERNAL_MESSAGE = "internal error in the worker (see its log)"


def _rebuild(handler: grpc.RpcMethodHandler, unary: Callable[[UnaryBehavior], UnaryBehavior],
             stream: Callable[[StreamBehavior], StreamBehavior]) -> grpc.RpcMethodHandler:
    """`handler` with its behavior wrapped: `unary` for methods that answer one message, `stream` for
    methods that answer a stream, whether the request is one message or a stream (`Session`)."""
    kinds = ((handler.unary_unary, unary, grpc.unary_unary_rpc_method_handler),
             (handler.unary_stream, stream, grpc.unary_stream_rpc_method_handler),
             (handler.stream_unary, unary, grpc.stream_unary_rpc_method_handler),
             (handler.stream_stream, stream, grpc.stream_stream_rpc_method_handler))
    for behavior, wrap, build in kinds:
        if behavior is not None:
            return build(wrap(behavior), request_deserializer=handler.request_deserializer,
                          response_serializer=handler.response_serializer)
    return handler


def refused(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
            on_call: Callable[[], None] = lambda: None) -> grpc.RpcMethodHandler:
    """`handler` replaced by one that ends the call with `code` and `message` before any servicer code,
    calling `on_call` first. (Interceptors run innermost first: a refusal is only real once the call
    runs, since an outer interceptor may still replace the handler, e.g. for a missing token.)"""

    def deny_unary(_: UnaryBehavior) -> UnaryBehavior:
        async def deny(request: Any, context: aio.ServicerContext) -> Any:
            on_call()
            await context.abort(code, message)
        return deny

    def deny_stream(_: StreamBehavior) -> StreamBehavior:
        async def deny(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            on_call()
            await context.abort(code, message)
            yield  # pragma: no cover - makes this an async generator
        return deny

    return _rebuild(handler, deny_unary, deny_stream)


class AuthInterceptor(aio.ServerInterceptor):
    """Rejects every call without the cluster token (UNAUTHENTICATED)."""

    def __init__(self, cluster_token: str, open_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        if not cluster_token:
            raise ValueError("cluster_token must not be empty")
        self._expected = f"Bearer {cluster_token}".encode()
        self._open_prefixes = open_prefixes

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(self._open_prefixes):
            return handler
        if self._authorized(handler_call_details):
            return handler
        log.warning("rejected unauthenticated call to %s", method)
        return refused(handler, grpc.StatusCode.UNAUTHENTICATED, "missing or invalid cluster token")


class ErrorInterceptor(aio.ServerInterceptor):
    """Maps exceptions to statuses (see module docstring); reports outcomes to `on_finish`."""

    def __init__(self, on_finish: Callable[[str, str], None] | None = None,
                 skip_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        self._report = on_finish or (lambda method, status: None)
        self._skip_prefixes = skip_prefixes

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(self._skip_prefixes):
            return handler
        return _rebuild(handler, lambda behavior: self._wrap_unary(method, behavior),
                        lambda behavior: self._wrap_stream(method, behavior))

    def _wrap_unary(self, method: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except BaseException as exc:  # re-raised or turned into a status below
                await self._fail(method, exc, context)
                raise
            self._report(_short(method), "ok")
            return response
        return wrapped

    def _wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:  # re-raised or turned into a status below
                await self._fail(method, exc, context)
                raise
            self._report(_short(method), "ok")
        return wrapped

    async def _fail(self, method: str, exc: BaseException, context: aio.ServicerContext) -> None:
        """Ends the call with the status for `exc` (raises AbortError), or returns to let `exc`
        propagate (cancellation, an abort already made)."""
        name = _short(method)
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._report(name, "cancelled")
            return
        if isinstance(exc, aio.AbortError):
            code = context.code()
            self._report(name, code.name.lower() if isinstance(code, grpc.StatusCode) else "aborted")
            return
        if isinstance(exc, HeteroserveError):
            code = getattr(grpc.StatusCode, exc.grpc_status, grpc.StatusCode.INTERNAL)
            self._report(name, code.name.lower())
            log.info("%s failed: %s %s", method, code.name, exc)
            await context.abort(code, str(exc))
        if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: let them through
            return
        self._report(name, "internal")
        log.error("%s failed with an unexpected error", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _short(method: str) -> str:
    """`/heteroserve.v1.Worker/Generate` → `Generate`: the metric label."""
    return method.rsplit("/", 1)[-1]
