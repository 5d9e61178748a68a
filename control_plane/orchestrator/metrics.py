"""The orchestrator's Prometheus metrics: the names it owns, created on a registry passed in.

| name | type | labels |
|---|---|---|
| heteroserve_gateway_route_decisions_total | counter | policy, reason, role |
| heteroserve_gateway_retries_total | counter | |
| heteroserve_gateway_migrations_total | counter | |
| heteroserve_gateway_pd_fallbacks_total | counter | |
| heteroserve_gateway_route_deviations_total | counter | reason (`ALL_DEVIATION_REASONS`) |

The names keep the `heteroserve_gateway_` prefix: the orchestrator runs inside the gateway process and
dashboards query them as the gateway's. `GatewayMetrics` builds one of these on its own registry, so a
gateway exports every `heteroserve_gateway_*` name. Label values are bounded: policies and reasons come
from the router's fixed set, roles from `common.vocab.ROLES`, deviation reasons from `DEVIATION_REASONS`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from control_plane.router.split import DEVIATION_REASONS

# Beyond the splitter's reasons: the route's pools had no worker left to retry on, so the request
# finished on another pool of the model.
ROUTE_EXHAUSTED = "route_exhausted"
ALL_DEVIATION_REASONS: tuple[str, ...] = (*DEVIATION_REASONS, ROUTE_EXHAUSTED)


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.route_decisions = Counter("heteroserve_gateway_route_decisions_total", "Routing decisions",
                                       ["policy", "reason", "role"], registry=registry)
        self.retries = Counter("heteroserve_gateway_retries_total",
                               "Requests re-sent before their first token", registry=registry)
        self.migrations = Counter("heteroserve_gateway_migrations_total",
                                  "Streams resumed on another worker after theirs failed", registry=registry)
        self.pd_fallbacks = Counter(
            "heteroserve_gateway_pd_fallbacks_total",
            "P/D requests decoded on the decode pool alone (no prefill worker could prefill)",
            registry=registry)
        self.route_deviations = Counter(
            "heteroserve_gateway_route_deviations_total",
            "Requests not sent on the planned round-robin route, by reason", ["reason"], registry=registry)
        for reason in ALL_DEVIATION_REASONS:  # export zeros, so dashboards see every reason
            self.route_deviations.labels(reason)
