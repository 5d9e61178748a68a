"""The gRPC face: the `Gateway` service, each RPC a few lines over the same `GatewayService`.

Auth rides in `authorization: Bearer <key>` metadata (API key; `GetPlan`/`ListWorkers` need the admin
token). `ErrorMapping` is the one place where errors become gRPC statuses: a `HeteroserveError` ends
the call with its `grpc_status` and message (naming the field); anything else is logged and ends with
INTERNAL and a generic message.

`Generate` streams one `GatewayChunk` per worker chunk: when a worker chunk carries both the last
tokens and the finish reason (`TokenDelta.final`), they go out as one message, not two (one write and
one read fewer per request on the hot path).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from common.errors import HeteroserveError
from control_plane.gateway.models import ChatMessage
from control_plane.gateway.runtime import GatewayRuntime
from control_plane.gateway.service import GenerateInput
from control_plane.orchestrator.types import Finished, TokenDelta
from heteroserve.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)


def _authorization(context: aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


async def _abort(context: aio.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, HeteroserveError):
        await context.abort(getattr(grpc.StatusCode, exc.grpc_status), str(exc))
    log.exception("unexpected error in a gateway RPC", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error in the gateway (see its log)")


def to_input(request: gateway_pb2.GatewayGenerateRequest) -> GenerateInput:
    s = request.sampling
    messages = None
    if request.WhichOneof("input") == "messages":
        messages = tuple(ChatMessage(m.role, m.content) for m in request.messages.messages)
    return GenerateInput(
        model=request.model, prompt=request.prompt if messages is None else None, messages=messages,
        max_tokens=s.max_tokens if s.max_tokens else None, temperature=s.temperature,
        top_p=s.top_p if s.top_p else 1.0, top_k=s.top_k, seed=s.seed if s.HasField("seed") else None,
        stop=tuple(s.stop), ignore_eos=s.ignore_eos, logprobs=s.logprobs,
        slo_class=request.hints.slo_class, session_id=request.hints.session_id, tenant=request.hints.tenant,
        request_id=request.request_id)


def route_proto(event: Finished) -> gateway_pb2.Route:
    r = event.route
    return gateway_pb2.Route(request_class=r.request_class, pool=r.pool, worker_id=r.worker_id,
                             prefill_worker_id=r.prefill_worker_id, disaggregated=r.disaggregated,
                             cached_prompt_tokens=r.cached_prompt_tokens, retries=r.retries,
                             migrations=r.migrations, policy=r.policy, reason=r.reason)


def final_chunk(request_id: str, event: Finished, delta: TokenDelta | None) -> gateway_pb2.GatewayChunk:
    """The last message of a stream: usage and route, with the last tokens when `delta` is given."""
    return gateway_pb2.GatewayChunk(
        request_id=request_id, text=delta.text if delta else "", token_ids=delta.token_ids if delta else (),
        finish_reason=event.finish_reason, prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens, route=route_proto(event))


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, runtime: GatewayRuntime) -> None:
        self._rt = runtime

    async def Generate(self, request: gateway_pb2.GatewayGenerateRequest,
                       context: aio.ServicerContext) -> AsyncIterator[gateway_pb2.GatewayChunk]:
        rt = self._rt
        try:
            principal = rt.auth.authenticate(_authorization(context))
            prepared = rt.admit(principal, to_input(request))
            rid = prepared.job.request_id
            held: TokenDelta | None = None  # a delta whose Finished follows at once: one message for both
            async for event in rt.service.generate(prepared, "grpc"):
                if isinstance(event, TokenDelta):
                    if event.final:
                        held = event
                        continue
                    yield gateway_pb2.GatewayChunk(request_id=rid, text=event.text,
                                                   token_ids=event.token_ids)
                else:
                    yield final_chunk(rid, event, held)
        except Exception as exc:
            await _abort(context, exc)

    async def ListModels(self, request: gateway_pb2.ListModelsRequest,
                         context: aio.ServicerContext) -> gateway_pb2.ListModelsResponse:
        try:
            self._rt.auth.authenticate(_authorization(context))
        except Exception as exc:
            await _abort(context, exc)
        return gateway_pb2.ListModelsResponse(models=[
            gateway_pb2.ModelInfo(id=m.name, max_context_tokens=m.max_context_tokens)
            for m in self._rt.models.values()])

    async def GetPlan(self, request: gateway_pb2.GetPlanRequest,
                      context: aio.ServicerContext) -> gateway_pb2.PlanDocument:
        try:
            self._rt.auth.check_admin(_authorization(context))
            record = await self._rt.plan_record()
        except Exception as exc:
            await _abort(context, exc)
            raise
        return gateway_pb2.PlanDocument(version=record.version, json=json.dumps(record.plan))

    async def ListWorkers(self, request: gateway_pb2.ListWorkersRequest,
                          context: aio.ServicerContext) -> gateway_pb2.ListWorkersResponse:
        try:
            self._rt.auth.check_admin(_authorization(context))
        except Exception as exc:
            await _abort(context, exc)
        return gateway_pb2.ListWorkersResponse(workers=[
            gateway_pb2.WorkerInfo(worker_id=w.worker_id, address=w.address, role=w.role, device=w.device,
                                   node_type=w.node_type, pool=w.pool, model=w.model, healthy=w.healthy,
                                   draining=w.draining) for w in self._rt.cluster.snapshot()])


async def start_grpc_server(runtime: GatewayRuntime, host: str, port: int) -> tuple[aio.Server, int]:
    """A started gRPC server with the Gateway service and standard health; returns it and its port."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = aio.server()
    gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayServicer(runtime), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("heteroserve.v1.Gateway", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound
