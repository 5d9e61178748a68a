"""Prometheus names of the planner (one module owns them; registries are passed in).

    heteroserve_planner_plan_cost_dollars_per_hour{plan}     current plan and each baseline
    heteroserve_planner_desired_instances{pool,node_type,role}
    heteroserve_planner_actual_instances{pool,node_type,role}
    heteroserve_planner_solve_seconds                        histogram of solver wall time
    heteroserve_planner_solves_total{status}                 optimal | feasible | infeasible | error
    heteroserve_planner_plans_published_total
    heteroserve_planner_plan_version
    heteroserve_planner_slo_attainment_ratio                 observed, over the traffic window
    heteroserve_planner_observed_rate_requests_per_second    smoothed, all classes
    heteroserve_planner_is_leader                            1 on the leading replica, else 0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

POOL_LABELS = ("pool", "node_type", "role")


class PlannerMetrics:
    """All planner metrics, created on the registry passed in (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.plan_cost = Gauge("heteroserve_planner_plan_cost_dollars_per_hour",
                               "Cost per hour of the current plan (plan=current) and of each baseline",
                               ("plan",), registry=registry)
        self.desired_instances = Gauge("heteroserve_planner_desired_instances",
                                       "Instances per pool in the current plan", POOL_LABELS,
                                       registry=registry)
        self.actual_instances = Gauge("heteroserve_planner_actual_instances",
                                      "Ready instances per pool as reported by the actuator", POOL_LABELS,
                                      registry=registry)
        self.solve_seconds = Histogram("heteroserve_planner_solve_seconds", "Wall time of one ILP solve",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                       registry=registry)
        self.solves = Counter("heteroserve_planner_solves_total", "Solver runs by outcome", ("status",),
                              registry=registry)
        self.plans_published = Counter("heteroserve_planner_plans_published_total",
                                       "Plans published to Redis", registry=registry)
        self.plan_version = Gauge("heteroserve_planner_plan_version", "Version of the current plan",
                                  registry=registry)
        self.slo_attainment = Gauge("heteroserve_planner_slo_attainment_ratio",
                                    "Share of requests that met their SLO over the traffic window",
                                    registry=registry)
        self.observed_rate = Gauge("heteroserve_planner_observed_rate_requests_per_second",
                                   "Smoothed arrival rate over all classes", registry=registry)
        self.is_leader = Gauge("heteroserve_planner_is_leader", "1 if this replica leads, else 0",
                               registry=registry)
