"""The protocol-neutral core of the gateway: validate, tokenize, classify, hash, orchestrate, measure.

REST (`rest.py`) and gRPC (`grpc_servicer.py`) translate their messages into `GenerateInput`, call
`prepare()` then `generate()`, and translate the events back. Everything a user can get wrong is
checked here, so both transports answer bad input with the same error naming the same field.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from common.errors import HeteroserveError, InvalidRequestError, NotFoundError
from common.openai_request import CHAT_ROLES, MAX_STOP
from control_plane.gateway.auth import Principal
from control_plane.gateway.config import GatewayConfig
from control_plane.gateway.metrics import GatewayMetrics
from control_plane.gateway.models import ChatMessage, ServedModel
from control_plane.gateway.plan import PlanView
from control_plane.orchestrator.orchestrator import Orchestrator
from control_plane.orchestrator.routes import ClassRoute
from control_plane.orchestrator.types import Event, Finished, GenerateJob, Sampling, TokenDelta
from control_plane.traffic import TrafficRecorder, slo_met

SLO_PRIORITY = {"interactive": 0, "": 1, "default": 1, "standard": 1, "batch": 2}
MAX_CACHED_KEYS = 4096  # (model, tenant) hash keys kept; the tenants come from configured API keys


@dataclass(frozen=True)
class GenerateInput:
    """One request as a transport received it. Exactly one of `prompt`, `prompt_token_ids`,
    `messages` is set. `max_tokens` None = the gateway's default."""

    model: str
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    messages: tuple[ChatMessage, ...] | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    slo_class: str = ""
    session_id: str = ""
    tenant: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Prepared:
    job: GenerateJob
    route: ClassRoute
    block_hashes: tuple[BlockHash, ...]


class GatewayService:
    """Owns nothing with a lifetime: the server builds the parts, this composes them."""

    def __init__(self, config: GatewayConfig, models: dict[str, ServedModel], orchestrator: Orchestrator,
                 plan: PlanView, metrics: GatewayMetrics, traffic: TrafficRecorder | None = None) -> None:
        self.config = config
        self.traffic = traffic  # per-class statistics for the planner (control_plane.traffic)
        self.models = models
        self.plan = plan
        self.metrics = metrics
        self._orchestrator = orchestrator
        self._keys: dict[tuple[str, str], HashKeys] = {}

    def model(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            available = ", ".join(sorted(self.models))
            raise NotFoundError(f"model {name!r} is not served here; available: {available}", field="model")
        return served

    def prepare(self, principal: Principal, request: GenerateInput, tenant: str) -> Prepared:
        """Validate and tokenize; raises `InvalidRequestError` / `NotFoundError` naming the field."""
        served = self.model(request.model)
        sampling = self._sampling(principal, request)
        tokens, field = self._tokens(served, request)
        served.check_fits(len(tokens), sampling.max_tokens, field)
        if request.slo_class not in SLO_PRIORITY:
            raise InvalidRequestError(f"unknown SLO class {request.slo_class!r}; one of "
                                      f"{', '.join(k for k in SLO_PRIORITY if k)}", field="slo_class")
        route = self.plan.route_for(len(tokens), sampling.max_tokens, request.slo_class, served.name)
        job = GenerateJob(request_id=request.request_id or f"req-{uuid.uuid4().hex[:16]}",
                          model=served.name, prompt_token_ids=tuple(tokens), sampling=sampling,
                          tenant=tenant, slo_class=request.slo_class, session_id=request.session_id,
                          priority=SLO_PRIORITY[request.slo_class])
        keys = self._hash_keys(served, tenant)
        hashes = hash_prompt_blocks(tokens, keys, self.config.orchestrator.block_size)
        return Prepared(job=job, route=route, block_hashes=tuple(hashes))

    def _hash_keys(self, served: ServedModel, tenant: str) -> HashKeys:
        """The block-hash keys of (model, tenant), built once: they are the same for every request."""
        keys = self._keys.get((served.name, tenant))
        if keys is None:
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            layout = served.kv_layout(self.config.kv_dtype, self.config.orchestrator.block_size)
            keys = HashKeys(model_id=served.kv_model_id, tenant_salt=tenant, layout=layout)
            self._keys[(served.name, tenant)] = keys
        return keys

    def _tokens(self, served: ServedModel, request: GenerateInput) -> tuple[list[int], str]:
        if request.messages is not None:
            if not request.messages:
                raise InvalidRequestError("must contain at least one message", field="messages")
            for i, m in enumerate(request.messages):
                if m.role not in CHAT_ROLES:
                    raise InvalidRequestError(f"must be one of {', '.join(CHAT_ROLES)}, got {m.role!r}",
                                              field=f"messages[{i}].role")
            return served.encode(served.render_chat(request.messages)), "messages"
        if request.prompt_token_ids is not None:
            vocab = served.vocab_size
            if not request.prompt_token_ids:
                raise InvalidRequestError("must not be empty", field="prompt")
            if any(t < 0 or t >= vocab for t in request.prompt_token_ids):
                raise InvalidRequestError(f"token ids must be in [0, {vocab})", field="prompt")
            return list(request.prompt_token_ids), "prompt"
        if not request.prompt:
            raise InvalidRequestError("must not be empty", field="prompt")
        return served.encode(request.prompt), "prompt"

    def _sampling(self, principal: Principal, r: GenerateInput) -> Sampling:
        limit = self.config.max_tokens_limit
        if principal.max_tokens_per_request:
            limit = min(limit, principal.max_tokens_per_request)
        max_tokens = self.config.default_max_tokens if r.max_tokens is None else r.max_tokens
        if not 1 <= max_tokens <= limit:
            raise InvalidRequestError(f"must be in [1, {limit}], got {max_tokens}", field="max_tokens")
        if not 0.0 <= r.temperature <= 2.0:
            raise InvalidRequestError(f"must be in [0, 2], got {r.temperature}", field="temperature")
        if not 0.0 < r.top_p <= 1.0:
            raise InvalidRequestError(f"must be in (0, 1], got {r.top_p}", field="top_p")
        if r.top_k < 0:
            raise InvalidRequestError(f"must be >= 0, got {r.top_k}", field="top_k")
        if len(r.stop) > MAX_STOP or any(not s for s in r.stop):
            raise InvalidRequestError(f"at most {MAX_STOP} non-empty strings", field="stop")
        return Sampling(max_tokens=max_tokens, temperature=r.temperature, top_k=r.top_k, top_p=r.top_p,
                        seed=r.seed, stop=r.stop, ignore_eos=r.ignore_eos, logprobs=r.logprobs)

    async def generate(self, prepared: Prepared, transport: str) -> AsyncIterator[Event]:
        """The request's events; records metrics (TTFT, TPOT, duration, tokens, status)."""
        m = self.metrics
        start = time.monotonic()
        first: float | None = None
        status = "500"
        m.inflight.inc()
        m.prompt_tokens.inc(len(prepared.job.prompt_token_ids))
        try:
            async for event in self._orchestrator.generate(prepared.job, prepared.block_hashes,
                                                           prepared.route):
                if isinstance(event, TokenDelta):
                    first = first or time.monotonic()
                    m.generated_tokens.inc(len(event.token_ids))
                elif isinstance(event, Finished):
                    self._record_finish(event, start, first)
                    status = "200"
                yield event
        except HeteroserveError as exc:
            status = str(exc.http_status)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = status if status == "200" else "499"  # the client went away
            raise
        finally:
            m.inflight.dec()
            m.requests.labels(transport, status).inc()

    def _record_finish(self, event: Finished, start: float, first: float | None) -> None:
        path = "disaggregated" if event.route.disaggregated else "colocated"
        now = time.monotonic()
        self.metrics.duration.labels(path).observe(now - start)
        self.metrics.prefix_hit_tokens.inc(event.route.cached_prompt_tokens)
        ttft = first - start if first is not None else None
        tpot = (now - first) / (event.completion_tokens - 1) \
            if first is not None and event.completion_tokens > 1 else None
        if ttft is not None:
            self.metrics.ttft.labels(path).observe(ttft)
        if tpot is not None:
            self.metrics.tpot.labels(path).observe(tpot)
        if self.traffic is not None:
            cls = event.route.request_class
            self.traffic.record(cls, event.prompt_tokens, event.completion_tokens, ttft, tpot,
                                slo_met(self.plan.document, cls, ttft, tpot))
