"""The gateway's Prometheus metrics: every name it exports, created on a registry passed in.

The five rows marked (orchestrator) are owned by `control_plane.orchestrator.metrics.OrchestratorMetrics`,
which `GatewayMetrics` builds on the same registry and exposes as `.orchestrator`.

| name | type | labels |
|---|---|---|
| heteroserve_gateway_requests_total | counter | transport (rest, grpc), status (HTTP code, 499: gone) |
| heteroserve_gateway_ttft_seconds | histogram | path (colocated, disaggregated) |
| heteroserve_gateway_tpot_seconds | histogram | path |
| heteroserve_gateway_request_duration_seconds | histogram | path |
| heteroserve_gateway_prompt_tokens_total | counter | |
| heteroserve_gateway_generated_tokens_total | counter | |
| heteroserve_gateway_prefix_hit_tokens_total | counter | |
| heteroserve_gateway_route_decisions_total (orchestrator) | counter | policy, reason, role |
| heteroserve_gateway_retries_total (orchestrator) | counter | |
| heteroserve_gateway_migrations_total (orchestrator) | counter | |
| heteroserve_gateway_pd_fallbacks_total (orchestrator) | counter | |
| heteroserve_gateway_route_deviations_total (orchestrator) | counter | reason (see router/split.py) |
| heteroserve_gateway_plan_version | gauge | (version of the plan in use; 0: none) |
| heteroserve_gateway_plan_rejected_total | counter | reason (schema, malformed) |
| heteroserve_gateway_planned_share | gauge | slo_class, pool, role |
| heteroserve_gateway_served_share | gauge | slo_class, pool, role |
| heteroserve_gateway_served_requests | gauge | slo_class (requests since the plan in use was adopted) |
| heteroserve_gateway_inflight_requests | gauge | |
| heteroserve_gateway_workers | gauge | state (healthy, unhealthy) |
| heteroserve_gateway_registry_up | gauge | |

Label values are bounded: reasons come from the router's fixed set, statuses are HTTP codes. The share
gauges are computed at scrape time from the orchestrator's `ShareLedger` (see its docstring for the
formulas): at most |SLO classes of the plan| × |pools of the plan| series each (a pool has one role),
e.g. 3 × 6 = 18.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from control_plane.gateway.plan import REJECT_REASONS
from control_plane.orchestrator.metrics import OrchestratorMetrics
from control_plane.orchestrator.shares import PoolShare

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ShareCollector(Collector):
    """Planned and served share per (SLO class, pool, role), read from `shares()` at scrape time.
    `shares` must not block (it reads in-memory counters)."""

    def __init__(self, shares: Callable[[], Sequence[PoolShare]] = tuple) -> None:
        self.shares = shares  # replaced once by `GatewayMetrics.watch_shares`

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["slo_class", "pool", "role"]
        planned = GaugeMetricFamily("heteroserve_gateway_planned_share",
                                    "The plan's share of the SLO class's requests for the pool",
                                    labels=labels)
        served = GaugeMetricFamily("heteroserve_gateway_served_share",
                                   "Share of the SLO class's requests this gateway sent to the pool",
                                   labels=labels)
        requests = GaugeMetricFamily("heteroserve_gateway_served_requests",
                                     "Requests of the SLO class since the plan in use was adopted",
                                     labels=["slo_class"])
        seen: set[str] = set()
        for row in self.shares():
            planned.add_metric([row.slo_class, row.pool, row.role], row.planned)
            if row.served is not None:
                served.add_metric([row.slo_class, row.pool, row.role], row.served)
            if row.slo_class not in seen:
                seen.add(row.slo_class)
                requests.add_metric([row.slo_class], row.requests)
        yield planned
        yield served
        yield requests


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("heteroserve_gateway_requests_total", "Requests finished, by status",
                                ["transport", "status"], registry=registry)
        self.ttft = Histogram("heteroserve_gateway_ttft_seconds", "Time to first token",
                              ["path"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.tpot = Histogram("heteroserve_gateway_tpot_seconds", "Mean time per output token",
                              ["path"], buckets=_TPOT_BUCKETS, registry=registry)
        self.duration = Histogram("heteroserve_gateway_request_duration_seconds", "End-to-end request time",
                                  ["path"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.prompt_tokens = Counter("heteroserve_gateway_prompt_tokens_total", "Prompt tokens received",
                                     registry=registry)
        self.generated_tokens = Counter("heteroserve_gateway_generated_tokens_total",
                                        "Tokens streamed to clients", registry=registry)
        self.prefix_hit_tokens = Counter("heteroserve_gateway_prefix_hit_tokens_total",
                                         "Prompt tokens served from a KV cache (any tier)", registry=registry)
        self.orchestrator = OrchestratorMetrics(registry)
        self.inflight = Gauge("heteroserve_gateway_inflight_requests", "Requests being served",
                              registry=registry)
        self.workers = Gauge("heteroserve_gateway_workers", "Known workers by health", ["state"],
                             registry=registry)
        self.plan_version = Gauge("heteroserve_gateway_plan_version",
                                  "Version of the plan this gateway routes by (0: none)", registry=registry)
        self.plan_rejected = Counter("heteroserve_gateway_plan_rejected_total",
                                     "Published plans refused (the last good plan stays in use)", ["reason"],
                                     registry=registry)
        for reason in REJECT_REASONS:
            self.plan_rejected.labels(reason)
        self._shares = ShareCollector()  # registered now, so the names exist before the first plan
        registry.register(self._shares)
        self.registry_up = Gauge("heteroserve_gateway_registry_up",
                                 "1 when the worker registry (Redis) answered the last refresh",
                                 registry=registry)

    def watch_shares(self, shares: Callable[[], Sequence[PoolShare]]) -> None:
        """Export the planned/served share gauges from `shares` (called once, by the runtime)."""
        self._shares.shares = shares
