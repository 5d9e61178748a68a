"""The gateway's Prometheus metrics: every name it exports, created on a registry passed in.

The four rows marked (orchestrator) are owned by `control_plane.orchestrator.metrics.OrchestratorMetrics`,
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
| heteroserve_gateway_inflight_requests | gauge | |
| heteroserve_gateway_workers | gauge | state (healthy, unhealthy) |
| heteroserve_gateway_registry_up | gauge | |

Label values are bounded: reasons come from the router's fixed set, statuses are HTTP codes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control_plane.orchestrator.metrics import OrchestratorMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


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
        self.registry_up = Gauge("heteroserve_gateway_registry_up",
                                 "1 when the worker registry (Redis) answered the last refresh",
                                 registry=registry)
