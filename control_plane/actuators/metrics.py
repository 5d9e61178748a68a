"""Prometheus names of the actuators (desired vs actual workers per pool, drains, scale operations,
pools created and deleted, half-applied plans).

`heteroserve_pool_desired_replicas` is the planner's wish per pool. Users who prefer their own
autoscaler (HPA with an external metric, KEDA's Prometheus scaler) scale on it and run the planner with
the actuator in export-only mode.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

POOL_LABELS = ("pool", "node_type", "role")


class ActuatorMetrics:
    """All actuator metrics, created on the registry passed in (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.desired_replicas = Gauge(
            "heteroserve_pool_desired_replicas",
            "Workers the current plan wants in the pool",
            POOL_LABELS,
            registry=registry,
        )
        self.actual_replicas = Gauge(
            "heteroserve_pool_actual_replicas",
            "Ready workers in the pool, as last observed by the actuator",
            POOL_LABELS,
            registry=registry,
        )
        self.scale_operations = Counter(
            "heteroserve_actuator_scale_operations_total",
            "Replica count changes by direction (up, down)",
            ("pool", "direction"),
            registry=registry,
        )
        self.drains = Counter(
            "heteroserve_actuator_drains_total",
            "Workers drained before a scale-down, by status (ok, failed)",
            ("pool", "status"),
            registry=registry,
        )
        self.pool_lifecycle = Counter(
            "heteroserve_actuator_pool_lifecycle_total",
            "Pools the actuator created from a template or deleted when the plan dropped them, by event",
            ("event",),
            registry=registry,
        )
        self.pools_not_applied = Gauge(
            "heteroserve_actuator_pools_not_applied",
            "Pools whose change the last apply could not make (0: the plan is fully applied)",
            registry=registry,
        )
        self.incomplete_applies = Counter(
            "heteroserve_actuator_incomplete_applies_total",
            "Applies that left part of the plan undone (the API server stayed unreachable through retries)",
            registry=registry,
        )
        self.api_errors = Counter(
            "heteroserve_actuator_api_errors_total",
            "Failed calls to the orchestrator API (Kubernetes), by operation",
            ("operation",),
            registry=registry,
        )
