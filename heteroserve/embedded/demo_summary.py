"""The demo's closing summary: what the planner did with the load, in a few lines.

From the timeline the demo samples every second (`report.TimelinePoint`: the published plan and the
registered, non-draining workers per pool) and the gateway's `GET /admin/routing` sampled with it
(planned vs served share per class route since the gateway adopted the plan; the last sample of each
plan version is kept, so a plan's shares cover all the traffic it routed):

- plans adopted: the plans whose pool counts differ from the previous one's (a reweight with the same
  pools is not listed), with the time, the phase running then and the pools (their names carry the
  role: `cpu-local-prefill`);
- workers started / drained: every rise / fall of a pool's running count after the first sample
  (the first plan's workers are the initial fleet);
- shares: per adopted plan (its version and the reweights after it with the same pools), per route
  the requests the plans assigned to it (planned share × class requests, summed over classes and
  versions) and the requests the gateway sent there (requests in the last second of a version, after
  its last sample, are missed); then the largest |served − planned| share over every version and
  class route with at least `MIN_SHARE_REQUESTS` requests;
- P/D: whether any plan had prefill and decode pools, and the P/D handoffs the clients saw;
- requests per phase and class, and failures.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heteroserve.embedded.report import RequestResult, TimelinePoint
from heteroserve.embedded.workload import Phase

MIN_SHARE_REQUESTS = 10  # a route's served share over fewer requests says little


@dataclass(frozen=True)
class AdoptedPlan:
    version: int
    at: float  # seconds since the workload started
    phase: str
    reason: str
    pools: dict[str, int]  # pool → workers (count > 0)


@dataclass(frozen=True)
class ShareRow:
    version: int
    request_class: str
    route: str
    planned: float
    served: float
    requests: int


def phase_at(at: float, phases: Sequence[Phase]) -> str:
    """The phase running `at` seconds after the workload started ("after" past the last one)."""
    end = 0.0
    for phase in phases:
        end += phase.duration_seconds
        if at < end:
            return phase.name
    return "after"


def adopted_plans(timeline: Sequence[TimelinePoint], phases: Sequence[Phase]) -> list[AdoptedPlan]:
    out: list[AdoptedPlan] = []
    for p in timeline:
        pools = {k: v for k, v in sorted(p.desired.items()) if v}
        if p.plan_version and (not out or (p.plan_version != out[-1].version and pools != out[-1].pools)):
            out.append(AdoptedPlan(p.plan_version, p.at, phase_at(p.at, phases), p.plan_reason, pools))
    return out


def fleet_changes(timeline: Sequence[TimelinePoint]) -> tuple[int, int]:
    """(workers started, workers drained) after the first sample."""
    started = drained = 0
    for a, b in itertools.pairwise(timeline):
        for pool in set(a.running) | set(b.running):
            delta = b.running.get(pool, 0) - a.running.get(pool, 0)
            started, drained = started + max(delta, 0), drained + max(-delta, 0)
    return started, drained


def share_rows(routing: Mapping[int, Mapping[str, Any]]) -> list[ShareRow]:
    """Planned vs served per plan version and class route (routes with enough requests)."""
    rows = []
    for version, doc in sorted(routing.items()):
        for c in doc.get("classes", []):
            if int(c.get("requests", 0)) >= MIN_SHARE_REQUESTS:
                rows.append(ShareRow(version, str(c["request_class"]), str(c["route"]),
                                     float(c["planned_share"]), float(c["served_share"] or 0.0),
                                     int(c["requests"])))
    return rows


def route_requests(doc: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """route → (requests planned there, requests served there) over the classes of one routing answer."""
    out: dict[str, tuple[float, float]] = {}
    for c in doc.get("classes", []):
        n = int(c.get("requests", 0))
        planned, served = out.get(str(c["route"]), (0.0, 0.0))
        out[str(c["route"])] = (planned + float(c["planned_share"]) * n,
                                served + float(c["served_share"] or 0.0) * n)
    return out


def _shares(plans: Sequence[AdoptedPlan], routing: Mapping[int, Mapping[str, Any]]) -> list[str]:
    lines = ["gateway, requests per route under each adopted plan (planned share × requests / sent there):"]
    versions = sorted(routing)
    for i, plan in enumerate(plans):
        until = plans[i + 1].version if i + 1 < len(plans) else None
        span = [v for v in versions if v >= plan.version and (until is None or v < until)]
        routes: dict[str, tuple[float, float]] = {}
        for v in span:  # each version's answer counts from its own adoption: they add up
            for route, (p, s) in route_requests(routing[v]).items():
                routes[route] = (routes.get(route, (0.0, 0.0))[0] + p, routes.get(route, (0.0, 0.0))[1] + s)
        if routes:
            text = "; ".join(f"{r} {p:.0f}/{s:.0f}" for r, (p, s) in routes.items())
            lines.append(f"  {f'v{span[0]}-v{span[-1]}' if len(span) > 1 else f'v{span[0]}':<9} {text}")
    rows = share_rows(routing)
    if rows:
        worst = max(abs(r.served - r.planned) for r in rows)
        lines.append(f"  largest |served − planned| share over {len(routing)} plan versions and their class "
                     f"routes (≥ {MIN_SHARE_REQUESTS} requests): {worst:.3f}")
    return lines


def summary_lines(results: Sequence[RequestResult], timeline: Sequence[TimelinePoint],
                  routing: Mapping[int, Mapping[str, Any]], phases: Sequence[Phase]) -> list[str]:
    """The summary as printable lines (rich markup)."""
    plans = adopted_plans(timeline, phases)
    lines = ["[bold]summary[/bold]", "plans adopted (pool counts changed):"]
    for p in plans:
        pools = ", ".join(f"{k}×{v}" for k, v in p.pools.items())
        lines.append(f"  v{p.version:<3} t={p.at:5.1f}s  phase {p.phase:<5} {pools}  ({p.reason})")
    started, drained = fleet_changes(timeline)
    initial = sum(timeline[0].running.values()) if timeline else 0
    lines.append(f"workers: {initial} at the start, {started} started, {drained} drained by the actuator")
    lines += _shares(plans, routing) if routing else []
    pd_plans = [p.version for p in plans if any("prefill" in k for k in p.pools)]
    handoffs = sum(1 for r in results if r.route is not None and r.route.disaggregated)
    lines.append(f"P/D: planned in {', '.join(f'v{v}' for v in pd_plans)}, {handoffs} handoffs" if pd_plans
                 else "P/D: no plan had prefill/decode pools (on these profiles colocated workers serve the "
                 "long prompts within the SLO for less)")
    counts = Counter((r.phase, r.request_class) for r in results)
    per_phase = "; ".join(f"{ph.name}: " + (", ".join(f"{c} {n}" for (p, c), n in sorted(counts.items())
                                                       if p == ph.name) or "0") for ph in phases)
    failed = sum(not r.ok for r in results)
    lines.append(f"requests: {len(results)} ({per_phase}), failed: {failed}")
    return lines
