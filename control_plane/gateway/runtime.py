"""`GatewayRuntime`: builds and owns every long-lived part of one gateway process.

Parts: the Redis client (registry, plan, KV events), the `ClusterView` (workers, stats, health), the
`PlanWatcher` → `PlanView`, the prefix index follower, the router and orchestrator, auth and metrics.
`start()` starts the background tasks; `stop()` stops every one of them and closes every client. Both
transports (REST and gRPC) share one runtime, so they route with the same state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import CollectorRegistry

from cache.index_sync import PrefixIndexFollower
from common.errors import NotFoundError
from common.tls import ClientTLS, log_mode
from control_plane.gateway.auth import Authenticator, Principal
from control_plane.gateway.config import GatewayConfig
from control_plane.gateway.metrics import GatewayMetrics
from control_plane.gateway.models import ServedModel
from control_plane.gateway.plan import PlanView
from control_plane.gateway.service import GatewayService, GenerateInput, Prepared
from control_plane.orchestrator.cluster import ClusterView
from control_plane.orchestrator.metrics import ALL_DEVIATION_REASONS
from control_plane.orchestrator.orchestrator import Orchestrator
from control_plane.orchestrator.prefix import IndexPrefixSource, NoPrefixIndex, PrefixSource
from control_plane.plan_store import PlanRecord, PlanStore, PlanWatcher
from control_plane.router import InflightTracker, Router
from control_plane.traffic import TrafficConfig, TrafficRecorder

log = logging.getLogger(__name__)


class GatewayRuntime:
    def __init__(self, config: GatewayConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.auth = Authenticator(config.api_keys, config.admin_token_sha256, config.allow_anonymous)
        self.models = {m.name: ServedModel(m.name, m.path) for m in config.models}
        self.inflight = InflightTracker()
        self.router = Router(config.router)
        self.plan = PlanView()
        self.redis: Any = None
        if config.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(config.redis_url, socket_timeout=5.0,
                                                 socket_connect_timeout=2.0)
        log_mode("gateway", config.tls)
        self.cluster = ClusterView(self.redis, config.cluster_token, self.inflight,
                                   refresh_seconds=config.refresh_seconds,
                                   unary_timeout_seconds=config.orchestrator.unary_timeout_seconds,
                                   tls=ClientTLS(config.tls) if config.tls is not None else None)
        self.follower = PrefixIndexFollower(self.redis) if self.redis is not None else None
        prefix: PrefixSource = NoPrefixIndex()
        if self.follower is not None:
            follower = self.follower
            prefix = IndexPrefixSource(lambda: follower.index)
        self.plan_store = PlanStore(self.redis) if self.redis is not None else None
        self._watcher = PlanWatcher(self.plan_store, self._on_plan, poll_seconds=1.0) \
            if self.plan_store is not None else None
        self.orchestrator = Orchestrator(self.cluster, self.router, self.inflight, prefix,
                                         config.orchestrator, self.metrics.orchestrator)
        self.cluster.on_leave = self.orchestrator.routed.remove_worker
        self.metrics.watch_shares(self.orchestrator.shares.pool_shares)
        # Per-class load statistics for the planner (buffered; flushed by its own thread every second).
        self.traffic = TrafficRecorder(TrafficConfig(redis_url=config.redis_url)) \
            if config.redis_url else None
        self.service = GatewayService(config, self.models, self.orchestrator, self.plan, self.metrics,
                                      traffic=self.traffic)
        self.started = False

    def admit(self, principal: Principal, request: GenerateInput) -> Prepared:
        """What both transports do before generating: tenant check, validation and tokenization, then
        the key's rate limits (prompt + max tokens). Raises the `HeteroserveError` of the first check
        that fails."""
        tenant = self.auth.check_tenant(principal, request.tenant)
        prepared = self.service.prepare(principal, request, tenant)
        self.auth.admit(principal, len(prepared.job.prompt_token_ids) + prepared.job.sampling.max_tokens)
        return prepared

    async def _on_plan(self, record: PlanRecord) -> None:
        """Install a newly published plan, or keep the last good one when it is refused."""
        rejected = self.plan.update(record.version, record.plan)
        if rejected is not None:
            self.metrics.plan_rejected.labels(rejected).inc()
            log.error("refusing %s; still routing by plan version %d", self.plan.last_error,
                      self.plan.version)
            return
        self.orchestrator.routes.splitter.clear()
        self.orchestrator.shares.reset(record.version, self.plan.classes())
        self.metrics.plan_version.set(record.version)
        log.info("using plan version %d", record.version)

    def routing(self) -> dict[str, Any]:
        """Planned vs served share per class route and per (SLO class, pool, role), since the plan in
        use was adopted (GET /admin/routing; `heteroserve status`)."""
        splitter = self.orchestrator.routes.splitter
        return {
            "plan_version": self.plan.version,
            "plan_error": self.plan.last_error,
            "epsilon": splitter.epsilon,
            "window": splitter.window,
            "deviations": {reason: self.orchestrator.deviations.get(reason, 0)
                           for reason in ALL_DEVIATION_REASONS},
            "classes": [{"request_class": r.request_class, "slo_class": r.slo_class, "route": r.route.name,
                         "pool": r.route.pool or None, "prefill_pool": r.route.prefill_pool or None,
                         "decode_pool": r.route.decode_pool or None, "planned_share": r.planned,
                         "served_share": r.served, "requests": r.requests}
                        for r in self.orchestrator.shares.class_shares()],
            "pools": [{"slo_class": p.slo_class, "pool": p.pool, "role": p.role, "planned_share": p.planned,
                       "served_share": p.served, "requests": p.requests}
                      for p in self.orchestrator.shares.pool_shares()],
        }

    async def start(self) -> None:
        await self.cluster.start()
        if self.follower is not None:
            self.follower.start()
        if self._watcher is not None:
            try:
                await self._watcher.poll_once()
            except Exception as exc:
                log.warning("cannot read the plan yet (%s); routing without one", exc)
            self._watcher.start()
        self.started = True
        self.refresh_gauges()

    async def stop(self) -> None:
        self.started = False
        if self._watcher is not None:
            await self._watcher.stop()
        if self.follower is not None:
            await self.follower.stop()
        await self.cluster.stop()
        if self.traffic is not None:
            await asyncio.to_thread(self.traffic.close)
        if self.redis is not None:
            await self.redis.aclose()

    def refresh_gauges(self) -> None:
        workers = self.cluster.snapshot()
        healthy = sum(1 for w in workers if w.healthy)
        self.metrics.workers.labels("healthy").set(healthy)
        self.metrics.workers.labels("unhealthy").set(len(workers) - healthy)
        self.metrics.registry_up.set(1 if self.cluster.registry_ok else 0)

    def ready(self) -> bool:
        """Started, and every served model has at least one healthy, non-draining worker."""
        if not self.started:
            return False
        live = {w.model for w in self.cluster.snapshot() if w.healthy and not w.draining}
        return all(name in live for name in self.models)

    def workers(self) -> list[dict[str, Any]]:
        return [{"worker_id": w.worker_id, "address": w.address, "role": w.role, "device": w.device,
                 "node_type": w.node_type, "pool": w.pool, "model": w.model, "healthy": w.healthy,
                 "draining": w.draining, "num_running": w.num_running, "num_waiting": w.num_waiting,
                 "num_unreported": w.num_unreported} for w in self.cluster.snapshot()]

    async def drain(self, worker_id: str, timeout_seconds: float) -> dict[str, Any]:
        client = self.cluster.client(worker_id)
        reply = await client.drain(timeout_seconds)
        self.cluster.mark_failed(worker_id)
        return {"worker_id": worker_id, "drained": reply.drained, "remaining": reply.remaining}

    async def plan_record(self) -> PlanRecord:
        if self.plan_store is None:
            raise NotFoundError("no plan: this gateway runs without Redis", field="plan")
        record = await self.plan_store.read()
        if record is None:
            raise NotFoundError("no plan has been published yet", field="plan")
        return record

