"""Serve one generation: choose the planned route, route to workers, call them, retry, migrate.

Route step first (`RouteChooser`, control_plane/router/split.py): the request's class has the plan's
routes (colocated pools and (prefill pool, decode pool) pairs); a smooth weighted round robin with
bounded prefix deviation picks one, skipping routes with no healthy worker. Then the router picks the
worker inside the route's pool (prefix and load aware). Without a plan, or when no route of the class
has workers (`no_route`), any colocated worker of the model serves it.

Colocated route: the worker prefills and decodes, over the gateway's long-lived `Session` stream to it
(`WorkerClient.session_generate`).

P/D route (P, D): when at least `pd_min_uncached_tokens` prompt tokens are not cached anywhere,
Prefill on a worker of P (first token, KV kept there and published to the shared tier), then Decode
on a worker of D — the pairing the plan chose — with `kv_source` = the prefill worker's address and
the shared tier. If the KV transfer fails, the decode worker prefills locally (worker side). A short
or mostly cached prompt, or one no worker of P could prefill (`pd_fallbacks`), runs on D alone.

Faults:
- before the first token, a retryable error (worker down, timeout, full) sends the request to another
  worker of the route's pool, at most `max_retries` times; when the pool has none left, to any worker
  of the model (counted as deviation `route_exhausted`);
- after tokens were sent, the stream migrates: `Decode` on another worker with prompt + tokens already
  sent and no KV source (it re-prefills), at most `max_migrations` times. The client sees every token
  exactly once, because only tokens after `generated_token_ids` come back;
- a worker whose call failed with UNAVAILABLE or a timeout leaves the candidate set until its next
  successful stats poll (`ClusterView.mark_failed`).
Non-retryable errors (bad request, auth) go straight to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from cache.hashing import BlockHash
from common.errors import DeadlineExceededError, HeteroserveError, UnavailableError
from common.vocab import Role
from control_plane.orchestrator.cluster import ClusterView
from control_plane.orchestrator.config import OrchestratorConfig
from control_plane.orchestrator.metrics import ROUTE_EXHAUSTED, OrchestratorMetrics
from control_plane.orchestrator.prefix import PrefixSource
from control_plane.orchestrator.relay import Run, accept_chunk, relay
from control_plane.orchestrator.routed_prefixes import RoutedPrefixes, merge
from control_plane.orchestrator.routes import ClassRoute, PlannedRoute, RouteChooser
from control_plane.orchestrator.shares import ShareLedger
from control_plane.orchestrator.types import Event, Finished, GenerateJob
from control_plane.router import InflightTracker, PrefixHoldings, RouteDecision, Router, RouteRequest
from control_plane.router.split import RouteSplitter
from heteroserve.v1 import common_pb2, worker_pb2

log = logging.getLogger(__name__)

# Where a request may run: (role, pools); empty pools = any pool of the model. A list of options is
# tried in order; the first is the planned one, later ones are fallbacks (counted as deviations).
Option = tuple[Role, frozenset[str]]
ANY_POOL: frozenset[str] = frozenset()


class Orchestrator:
    def __init__(self, cluster: ClusterView, router: Router, inflight: InflightTracker,
                 prefix: PrefixSource, config: OrchestratorConfig, metrics: OrchestratorMetrics | None = None,
                 ) -> None:
        self._cluster = cluster
        self._router = router
        self._inflight = inflight
        router.inflight = router.inflight or inflight  # the cost model's pending-prefill term
        self._prefix = prefix
        self._config = config
        self._metrics = metrics
        self.routes = RouteChooser(RouteSplitter(router.config.route_share_epsilon,
                                                 router.config.route_share_window))
        self.shares = ShareLedger()
        self.deviations: dict[str, int] = {}  # reason → requests since start (as the metric counts)
        self.routed = RoutedPrefixes()

    async def generate(self, job: GenerateJob, block_hashes: Sequence[BlockHash],
                       route: ClassRoute) -> AsyncIterator[Event]:
        """The events of `job`: `TokenDelta`s then one `Finished`. Raises `HeteroserveError`."""
        run = Run(job=job, request_class=route.request_class, block_hashes=tuple(block_hashes))
        match = merge(self._prefix.match(block_hashes), self.routed.match(block_hashes))
        taken = self._choose_route(route, job.model, match)
        if taken is None:
            events = self._stream(run, [("colocated", ANY_POOL)], match, None)
        elif not taken.disaggregated:
            events = self._stream(run, [("colocated", frozenset({taken.pool})), ("colocated", ANY_POOL)],
                                  match, None)
        elif self._uncached_tokens(job, match) >= self._config.pd_min_uncached_tokens:
            events = self._disaggregated(run, taken, match)
        else:
            events = self._stream(run, _decode_alone(taken), match, None)
        # Every worker the request is sent to (prefill, decode, a retry, a migration) was recorded
        # against the prompt by `_route` at dispatch.
        async for event in events:
            yield event

    def _choose_route(self, route: ClassRoute, model: str, match: PrefixHoldings) -> PlannedRoute | None:
        """The planned route of this request (None: no plan, or off-plan); counts deviations and
        records the choice in the share ledger."""
        chosen = self.routes.choose(route, model, self._cluster.table(), match)
        taken, deviations = chosen if chosen is not None else (None, ("no_route",) if route.routes else ())
        for reason in deviations:
            self._deviation(reason)
        self.shares.record(route, taken)
        return taken

    def _deviation(self, reason: str) -> None:
        self.deviations[reason] = self.deviations.get(reason, 0) + 1
        if self._metrics is not None:
            self._metrics.route_deviations.labels(reason).inc()

    def _uncached_tokens(self, job: GenerateJob, match: PrefixHoldings) -> int:
        best = max([*match.worker_blocks.values(), *match.shared_blocks.values(),
                    *match.local_blocks.values(), 0])
        return len(job.prompt_token_ids) - best * self._config.block_size

    def _route(self, run: Run, options: Sequence[Option], match: PrefixHoldings) -> RouteDecision:
        """The first option with a candidate wins; a later one counts as deviation `route_exhausted`.
        Raises `UnavailableError` if none has a candidate."""
        error: UnavailableError | None = None
        for i, (role, pools) in enumerate(options):
            request = RouteRequest(model=run.job.model, role=role, request_class=run.request_class,
                                   num_prompt_tokens=len(run.job.prompt_token_ids), pools=pools,
                                   session_id=run.job.session_id, exclude=frozenset(run.tried))
            try:
                decision = self._router.route(request, self._cluster.table(), match)
            except UnavailableError as exc:
                error = error or exc
                continue
            if i > 0:
                self._deviation(ROUTE_EXHAUSTED)
            if self._metrics is not None:
                self._metrics.route_decisions.labels(decision.policy, decision.reason, role).inc()
            run.policy, run.reason = decision.policy, decision.reason
            # Remember the prompt on its worker at dispatch, as SGLang's and vllm-router's trees do: a request
            # sharing the prefix that arrives before this one's first token then follows it (and reuses
            # the blocks once they are prefilled) instead of being routed by load alone.
            self.routed.record(decision.worker.worker_id, run.block_hashes)
            return decision
        assert error is not None, "no options given to _route: the caller passes at least one"
        raise error

    async def _stream(self, run: Run, options: Sequence[Option], match: PrefixHoldings,
                      kv_source: worker_pb2.KVSource | None) -> AsyncIterator[Event]:
        """Generate (or Decode after tokens exist) on routed workers until finished, with retries and
        migrations (see module docstring)."""
        while True:
            decision = self._route(run, options, match)
            worker = decision.worker
            run.worker_id, run.pool = worker.worker_id, worker.pool
            self._inflight.routed(worker.worker_id, run.job.request_id,
                                  prefill_tokens=decision.prefill_tokens)
            try:
                chunks = self._call(run, worker.worker_id, kv_source)
                async for event in relay(run, chunks, worker_id=worker.worker_id,
                                         first_timeout=self._config.first_token_timeout_seconds,
                                         token_timeout=self._config.token_timeout_seconds):
                    self._inflight.first_token(worker.worker_id, run.job.request_id)  # O(1); prefill done
                    yield event
                return
            except HeteroserveError as exc:
                self._after_failure(run, worker.worker_id, exc)
                kv_source = None  # a resumed stream re-prefills what it needs
            finally:
                self._inflight.finished(worker.worker_id, run.job.request_id)

    def _call(self, run: Run, worker_id: str,
              kv_source: worker_pb2.KVSource | None) -> AsyncIterator[common_pb2.TokenChunk]:
        client = self._cluster.client(worker_id)
        job = run.job
        keys = common_pb2.CacheKeys(tenant_salt=job.tenant)
        if not run.generated and kv_source is None:
            return client.session_generate(worker_pb2.GenerateRequest(
                request_id=job.request_id, prompt_token_ids=job.prompt_token_ids,
                sampling=job.sampling.to_proto(), cache_keys=keys, priority=job.priority))
        return client.decode(worker_pb2.DecodeRequest(
            request_id=job.request_id, prompt_token_ids=job.prompt_token_ids,
            generated_token_ids=run.generated, sampling=job.sampling.to_proto(), cache_keys=keys,
            kv_source=kv_source, priority=job.priority))

    def _after_failure(self, run: Run, worker_id: str, exc: HeteroserveError) -> None:
        """Account for a failed attempt, or re-raise when it may not be retried."""
        if not exc.retryable:
            raise exc
        if isinstance(exc, UnavailableError | DeadlineExceededError):
            self._cluster.mark_failed(worker_id)
        run.tried.add(worker_id)
        if run.generated:
            run.migrations += 1
            budget, kind = self._config.max_migrations, "migrations"
            if self._metrics is not None:
                self._metrics.migrations.inc()
        else:
            run.retries += 1
            budget, kind = self._config.max_retries, "retries"
            if self._metrics is not None:
                self._metrics.retries.inc()
        log.warning("request %s failed on worker %s after %d tokens (%s); %s %d/%d", run.job.request_id,
                    worker_id, len(run.generated), exc, kind, getattr(run, kind), budget)
        if getattr(run, kind) > budget:
            raise exc

    async def _disaggregated(self, run: Run, taken: PlannedRoute,
                             match: PrefixHoldings) -> AsyncIterator[Event]:
        response = await self._prefill(run, taken, match)
        if response is None:
            if self._metrics is not None:
                self._metrics.pd_fallbacks.inc()
            async for event in self._stream(run, _decode_alone(taken), match, None):
                yield event
            return
        run.disaggregated = True
        run.prefill_worker_id = response.worker_id or run.worker_id
        events = accept_chunk(run, response.first)
        for event in events:
            yield event
        if any(isinstance(e, Finished) for e in events):
            return  # finished at the first token
        source = worker_pb2.KVSource(worker_address=self._cluster.record(run.worker_id).address,
                                     shared_tier=True, block_hashes=list(response.block_hashes))
        async for event in self._stream(run, _decode_alone(taken), match, source):
            yield event

    async def _prefill(self, run: Run, taken: PlannedRoute,
                       match: PrefixHoldings) -> worker_pb2.PrefillResponse | None:
        """Prefill on a worker of the route's prefill pool, retrying others of it; None when none
        could do it."""
        job = run.job
        while True:
            try:
                decision = self._route(run, [("prefill", frozenset({taken.prefill_pool}))], match)
            except UnavailableError:
                return None
            worker_id = decision.worker.worker_id
            run.worker_id, run.pool = worker_id, decision.worker.pool
            request = worker_pb2.PrefillRequest(
                request_id=job.request_id, prompt_token_ids=job.prompt_token_ids,
                sampling=job.sampling.to_proto(), cache_keys=common_pb2.CacheKeys(tenant_salt=job.tenant),
                publish_to_shared_tier=True)
            self._inflight.routed(worker_id, job.request_id, prefill_tokens=decision.prefill_tokens)
            try:
                return await asyncio.wait_for(self._cluster.client(worker_id).prefill(request),
                                              self._config.first_token_timeout_seconds)
            except TimeoutError:
                timeout = DeadlineExceededError(f"prefill on {worker_id} timed out")
                self._after_failure(run, worker_id, timeout)
            except HeteroserveError as exc:
                self._after_failure(run, worker_id, exc)
            finally:
                self._inflight.finished(worker_id, job.request_id)


def _decode_alone(taken: PlannedRoute) -> list[Option]:
    """Where the decode of a P/D route runs: its decode pool (the plan's pairing); if that has no
    worker left, any colocated worker of the model."""
    return [("decode", frozenset({taken.decode_pool})), ("colocated", ANY_POOL)]
