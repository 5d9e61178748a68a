"""gRPC transport: the gateway's `Gateway` service over grpc.aio.

Statuses become domain errors through `common.errors.error_from_rpc_error`. Every call has a
deadline of `timeout_seconds` (streams: for the whole stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from grpc import aio

from common.errors import HeteroserveError, error_from_rpc_error
from heteroserve.client.types import Chunk, Model, Request, Route, Usage
from heteroserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc


def _error(exc: grpc.RpcError) -> HeteroserveError:
    """The domain error, with `field` split off a "field: reason" message (the gateway's convention)."""
    error = error_from_rpc_error(exc)
    field, sep, rest = error.message.partition(": ")
    if sep and field.replace(".", "").replace("_", "").replace("[", "").replace("]", "").isalnum():
        error.field, error.message = field, rest
    return error


def to_proto(request: Request) -> gateway_pb2.GatewayGenerateRequest:
    sampling = common_pb2.SamplingParams(
        max_tokens=request.max_tokens or 0, temperature=request.temperature, top_k=request.top_k,
        top_p=request.top_p, stop=list(request.stop), ignore_eos=request.ignore_eos)
    if request.seed is not None:
        sampling.seed = request.seed
    hints = gateway_pb2.Hints(slo_class=request.slo_class, session_id=request.session_id,
                              tenant=request.tenant)
    proto = gateway_pb2.GatewayGenerateRequest(model=request.model, sampling=sampling, hints=hints)
    if request.messages is not None:
        proto.messages.CopyFrom(gateway_pb2.ChatMessages(
            messages=[gateway_pb2.ChatMessage(role=r, content=c) for r, c in request.messages]))
    else:
        proto.prompt = request.prompt or ""
    return proto


class GrpcTransport:
    def __init__(self, target: str, api_key: str | None, timeout_seconds: float) -> None:
        self._channel = aio.insecure_channel(target)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._timeout = timeout_seconds

    async def close(self) -> None:
        await self._channel.close()

    async def models(self) -> list[Model]:
        try:
            reply = await self._stub.ListModels(gateway_pb2.ListModelsRequest(), metadata=self._metadata,
                                                timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        return [Model(m.id, m.max_context_tokens) for m in reply.models]

    async def complete(self, request: Request) -> Chunk:
        chunks = [c async for c in self.stream(request)]
        last = chunks[-1]
        return Chunk(id=last.id, text="".join(c.text for c in chunks),
                     token_ids=tuple(t for c in chunks for t in c.token_ids),
                     finish_reason=last.finish_reason, usage=last.usage, route=last.route)

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        call = self._stub.Generate(to_proto(request), metadata=self._metadata, timeout=self._timeout)
        try:
            async for m in call:
                final = bool(m.finish_reason)
                yield Chunk(id=m.request_id, text=m.text, token_ids=tuple(m.token_ids),
                            finish_reason=m.finish_reason or None,
                            usage=Usage(m.prompt_tokens, m.completion_tokens) if final else None,
                            route=_route(m.route) if final else None)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()


def _route(r: gateway_pb2.Route) -> Route:
    return Route(r.request_class, r.pool, r.worker_id, r.prefill_worker_id, r.disaggregated,
                 r.cached_prompt_tokens, r.retries, r.migrations, r.policy, r.reason)
