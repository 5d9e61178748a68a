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
- shares: per plan and class route with at least `MIN_SHARE_REQUESTS` requests, planned vs served,
  and the largest deviation;
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
                                     float(c["planned_share"]), float(c["served_share"]), int(c["requests"])))
    return rows


def summary_lines(results: Sequence[RequestResult], timeline: Sequence[TimelinePoint],
                  routing: Mapping[int, Mapping[str, Any]], phases: Sequence[Phase]) -> list[str]:
    """The summary as printable lines (rich markup)."""
    lines = ["[bold]summary[/bold]", "plans adopted (pool counts changed):"]
    for p in adopted_plans(timeline, phases):
        pools = ", ".join(f"{k}×{v}" for k, v in p.pools.items())
        lines.append(f"  v{p.version:<3} t={p.at:5.1f}s  phase {p.phase:<5} {pools}  ({p.reason})")
    started, drained = fleet_changes(timeline)
    initial = sum(timeline[0].running.values()) if timeline else 0
    lines.append(f"workers: {initial} at the start, {started} started, {drained} drained by the actuator")
    rows = share_rows(routing)
    if rows:
        lines.append(f"gateway, served vs planned share per plan and class route (≥ {MIN_SHARE_REQUESTS} "
                     "requests):")
        lines += [f"  v{r.version:<3} {r.request_class:<24} {r.route:<44} planned {r.planned:.2f}  served "
                  f"{r.served:.2f}  ({r.requests} requests)" for r in rows]
        lines.append(f"  largest deviation {max(abs(r.served - r.planned) for r in rows):.3f}")
    counts = Counter((r.phase, r.request_class) for r in results)
    per_phase = "; ".join(f"{ph.name}: " + (", ".join(f"{c} {n}" for (p, c), n in sorted(counts.items())
                                                       if p == ph.name) or "0") for ph in phases)
    failed = sum(not r.ok for r in results)
    lines.append(f"requests: {len(results)} ({per_phase}), failed: {failed}")
    return lines
