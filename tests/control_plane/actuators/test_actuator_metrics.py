"""ActuatorMetrics: its names, and that it shares the planner process's registry without clashes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from control_plane.actuators.metrics import ActuatorMetrics


def test_names_and_labels():
    registry = CollectorRegistry()
    metrics = ActuatorMetrics(registry)
    metrics.desired_replicas.labels(pool="l4-decode", node_type="l4", role="decode").set(3)
    metrics.drains.labels(pool="l4-decode", status="ok").inc()
    labels = {"pool": "l4-decode", "node_type": "l4", "role": "decode"}
    assert registry.get_sample_value("heteroserve_pool_desired_replicas", labels) == 3
    assert (
        registry.get_sample_value("heteroserve_actuator_drains_total", {"pool": "l4-decode", "status": "ok"})
        == 1
    )
    names = {family.name for family in registry.collect()}
    assert names == {
        "heteroserve_pool_desired_replicas",
        "heteroserve_pool_actual_replicas",
        "heteroserve_actuator_scale_operations",
        "heteroserve_actuator_drains",
        "heteroserve_actuator_api_errors",
    }


def test_shares_the_planner_registry():
    from control_plane.planner.metrics import PlannerMetrics

    registry = CollectorRegistry()
    PlannerMetrics(registry)
    ActuatorMetrics(registry)  # raises ValueError on a duplicated name
