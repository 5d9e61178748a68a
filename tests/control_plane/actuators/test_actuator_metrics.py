"""ActuatorMetrics: its names, and that it shares the planner process's registry without clashes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from control_plane.actuators.metrics import ActuatorMetrics


def test_names_and_labels() -> None:
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
        "heteroserve_actuator_pool_lifecycle",
        "heteroserve_actuator_pools_not_applied",
        "heteroserve_actuator_incomplete_applies",
    }


def test_shares_the_planner_registry() -> None:
    from control_plane.planner.metrics import PlannerMetrics

    planner_names = _names_of(PlannerMetrics)
    registry = CollectorRegistry()
    PlannerMetrics(registry)
    ActuatorMetrics(registry)  # raises ValueError on a duplicated name
    actuator_names = _names_of(ActuatorMetrics)
    assert planner_names and actuator_names and not planner_names & actuator_names
    assert {family.name for family in registry.collect()} == planner_names | actuator_names


def _names_of(metrics_class: type) -> set[str]:
    """The metric family names `metrics_class` creates on a fresh registry."""
    registry = CollectorRegistry()
    metrics_class(registry)
    return {family.name for family in registry.collect()}
