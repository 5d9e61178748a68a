"""The Grafana dashboard and the alert rules query only metric names the code exports.

Each component's `*Metrics` class is built on a fresh `CollectorRegistry`; the sample names it can
export (with the `_total`, `_bucket`, `_count`, `_sum` forms) are compared with every `heteroserve_*`
name in the dashboard's queries and the rules' expressions.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "heteroserve.json"
RULES = ROOT / "deploy" / "prometheus" / "heteroserve-rules.yaml"
CHART = ROOT / "helm" / "heteroserve"

# name prefix -> (module, class) that owns the names
OWNERS = {
    "heteroserve_gateway_": ("control_plane.gateway.metrics", "GatewayMetrics"),
    "heteroserve_worker_": ("workers.metrics", "WorkerMetrics"),
    "heteroserve_cache_": ("cache.metrics", "CacheMetrics"),
    "heteroserve_planner_": ("control_plane.planner.metrics", "PlannerMetrics"),
    "heteroserve_pool_": ("control_plane.actuators.metrics", "ActuatorMetrics"),
    "heteroserve_actuator_": ("control_plane.actuators.metrics", "ActuatorMetrics"),
}
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum", ""),
    "info": ("_info",),
}
_NAME = re.compile(r"\bheteroserve_[a-z0-9_]+\b")


def exportable_names(module: str, cls: str) -> set[str]:
    """Sample names the class can export (every owning module exists: a missing one fails the test)."""
    registry = CollectorRegistry()
    getattr(importlib.import_module(module), cls)(registry)
    names: set[str] = set()
    for family in registry.collect():  # families list labelled metrics even before any sample
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for panel in dashboard["panels"]:
        queries += [t["expr"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries += [variable["definition"], variable["query"]["query"]]
    return queries


def rule_expressions(rules: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_dashboard_parses_and_has_the_design_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Cost per hour: plan vs baselines",
        "SLO attainment",
        "TTFT percentiles",
        "TPOT percentiles",
        "Desired vs actual workers per pool",
        "Hit rate per tier",
        "KV bytes received per second",
        "Gateway errors by status",
    ):
        assert wanted in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} overflows the 24-column grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]!r} and {panel['title']!r} overlap"
                cells[(x, y)] = panel["title"]
        ref_ids = [t["refId"] for t in panel.get("targets", [])]
        assert len(ref_ids) == len(set(ref_ids)), f"panel {panel['title']!r} repeats a refId"
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", "use the datasource variable"


def test_chart_packages_identical_copies():
    assert (CHART / "dashboards" / "heteroserve.json").read_bytes() == DASHBOARD.read_bytes(), (
        "copy deploy/grafana/heteroserve.json to helm/heteroserve/dashboards/"
    )
    assert (CHART / "rules" / "heteroserve-rules.yaml").read_bytes() == RULES.read_bytes(), (
        "copy deploy/prometheus/heteroserve-rules.yaml to helm/heteroserve/rules/"
    )


def test_alert_rules_cover_slo_burn_worker_loss_and_redis_down():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    for name in ("HeteroserveErrorBudgetFastBurn", "HeteroserveWorkerLost", "HeteroserveRedisDown"):
        assert name in alerts
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_queried_metric_is_exported_by_the_code(source: str):
    if source == "dashboard":
        expressions = dashboard_queries(json.loads(DASHBOARD.read_text()))
    else:
        expressions = rule_expressions(yaml.safe_load(RULES.read_text()))
    queried = {name for expr in expressions for name in _NAME.findall(expr)}
    assert len(queried) >= (25 if source == "dashboard" else 5), f"too few names found: {sorted(queried)}"

    exported = set().union(*(exportable_names(module, cls) for module, cls in set(OWNERS.values())))
    unowned = sorted(n for n in queried if not any(n.startswith(p) for p in OWNERS))
    assert unowned == [], f"names with no owning metrics module: {unowned}"
    unknown = sorted(queried - exported)
    assert unknown == [], f"{source} queries names no metrics module exports: {unknown}"
