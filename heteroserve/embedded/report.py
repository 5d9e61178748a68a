"""The demo's report: latency percentiles, plan vs baselines, planner reactions, cache hit rates.

Definitions: TTFT = send → first streamed token (client side); TPOT = (end − first token) /
(output tokens − 1); percentiles are `common.stats.percentile` (linear interpolation). A "P/D handoff"
is a request whose route was disaggregated (prefill on one worker, decode on another). Planner
reactions are read from the timeline sampled every second: `scale_up_after_step_s` = first time the
plan wants more workers than at the step's start, minus the step's start; `scale_down_after_drop_s`
likewise for fewer workers after the drop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common.stats import percentile
from common.vocab import Tier
from heteroserve.client import Route
from heteroserve.embedded.status import ClusterStatus
from heteroserve.embedded.status_output import plan_baselines
from heteroserve.embedded.workload import Phase, WorkloadConfig


@dataclass(frozen=True)
class RequestResult:
    index: int
    phase: str
    request_class: str
    sent_at: float
    input_tokens: int
    output_tokens: int
    ttft_seconds: float | None
    e2e_seconds: float
    ok: bool
    error: str = ""
    route: Route | None = None

    @property
    def tpot_seconds(self) -> float | None:
        if self.ttft_seconds is None or self.output_tokens < 2:
            return None
        return (self.e2e_seconds - self.ttft_seconds) / (self.output_tokens - 1)


@dataclass(frozen=True)
class TimelinePoint:
    at: float
    plan_version: int
    desired: dict[str, int]
    running: dict[str, int]
    plan_reason: str = ""


def _latency(results: list[RequestResult]) -> dict[str, Any]:
    ttft = [r.ttft_seconds for r in results if r.ok and r.ttft_seconds is not None]
    tpot = [t for r in results if r.ok and (t := r.tpot_seconds) is not None]
    e2e = [r.e2e_seconds for r in results if r.ok]
    return {"requests": len(results), **{f"{name}_p{int(q * 100)}_s": percentile(vals, q)
                                         for name, vals in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e))
                                         for q in (0.5, 0.9, 0.99)}}


@dataclass
class DemoReport:
    duration_seconds: float
    num_requests: int
    num_failed: int
    errors: list[str]
    workload: dict[str, Any]
    latency: dict[str, dict[str, Any]]
    pd_handoffs: int
    cached_prompt_tokens: int
    prompt_tokens: int
    cache_hit_rates: dict[Tier, float | None]
    plan: dict[str, Any]
    plan_history: list[dict[str, Any]]
    reactions: dict[str, float | None]
    gateway_path: str = "REST via heteroserve.AsyncClient (streaming) -> gateway -> workers"
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, default=str))


def _reactions(timeline: list[TimelinePoint], phases: tuple[Phase, ...]) -> dict[str, float | None]:
    starts, t = {}, 0.0
    for p in phases:
        starts[p.name] = t
        t += p.duration_seconds

    def first_change(after: float, bigger: bool) -> float | None:
        before = [p for p in timeline if p.at <= after]
        if not before:
            return None
        base = sum(before[-1].desired.values())
        for p in timeline:
            total = sum(p.desired.values())
            if p.at > after and (total > base if bigger else total < base):
                return round(p.at - after, 1)
        return None

    return {"scale_up_after_step_s": first_change(starts.get("step", 0.0), True),
            "scale_down_after_drop_s": first_change(starts.get("drop", 0.0), False)}


def build_report(results: list[RequestResult], timeline: list[TimelinePoint], status: ClusterStatus,
                 workload: WorkloadConfig, duration_seconds: float) -> DemoReport:
    plan = dict(status.plan.plan) if status.plan else {}
    history, seen = [], set()
    for p in timeline:
        if p.plan_version and p.plan_version not in seen:
            seen.add(p.plan_version)
            history.append({"version": p.plan_version, "at_s": round(p.at, 1), "reason": p.plan_reason,
                            "pools": {k: v for k, v in p.desired.items() if v}})
    classes = sorted({r.request_class for r in results})
    return DemoReport(
        duration_seconds=round(duration_seconds, 1), num_requests=len(results),
        num_failed=sum(not r.ok for r in results),
        errors=[r.error for r in results if not r.ok][:10],
        workload={"trace": workload.trace.name, "input_scale": workload.input_scale,
                  "output_scale": workload.output_scale, "phases": [asdict(p) for p in workload.phases]},
        latency={"all": _latency(results), **{c: _latency([r for r in results if r.request_class == c])
                                              for c in classes}},
        pd_handoffs=sum(1 for r in results if r.route is not None and r.route.disaggregated),
        cached_prompt_tokens=sum(r.route.cached_prompt_tokens for r in results if r.route is not None),
        prompt_tokens=sum(r.input_tokens for r in results),
        cache_hit_rates=status.cache_hit_rates(),
        plan={k: plan.get(k) for k in ("cost_per_hour", "baselines", "pools", "classes", "solve", "demand")},
        plan_history=history, reactions=_reactions(timeline, tuple(workload.phases)))


def _s(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def print_report(report: DemoReport, console: Console) -> None:
    plan = report.plan
    costs = Table(title="plan vs baselines ($ per hour)")
    costs.add_column("plan")
    costs.add_column("cost")
    costs.add_row("heteroserve plan (ILP)", f"{plan.get('cost_per_hour') or 0:.2f}")
    for name, cost in plan_baselines(plan).items():  # Plan.to_dict() lists them
        costs.add_row(name, "infeasible" if cost is None else f"{cost:.2f}")
    pools = ", ".join(f"{p['name']}×{p['count']}" for p in plan.get("pools") or [] if p["count"])
    lat = Table(title="latency (client side)")
    for col in ("class", "requests", "TTFT p50", "TTFT p90", "TTFT p99", "TPOT p50", "TPOT p90", "TPOT p99"):
        lat.add_column(col)
    for name, row in report.latency.items():
        lat.add_row(name, str(row["requests"]), *(_s(row[f"{m}_p{q}_s"]) for m in ("ttft", "tpot")
                                                   for q in (50, 90, 99)))
    hist = Table(title="plans published")
    for col in ("version", "at", "reason", "pools"):
        hist.add_column(col)
    for h in report.plan_history:
        hist.add_row(str(h["version"]), f"{h['at_s']:.0f}s", h["reason"],
                     ", ".join(f"{k}×{v}" for k, v in h["pools"].items()))
    console.print(costs, f"final plan: {pools}", hist, lat)
    hits = ", ".join(f"{k} {'n/a' if v is None else f'{v:.0%}'}" for k, v in report.cache_hit_rates.items())
    if any(v is None for v in report.cache_hit_rates.values()):
        hits += " (n/a: no lookups reported in the workers' /metrics for that tier)"
    r = report.reactions
    console.print(
        f"cache hit rates per tier: {hits}; prompt tokens served from cache (routes): "
        f"{report.cached_prompt_tokens} of {report.prompt_tokens}\n"
        f"P/D handoffs: {report.pd_handoffs}\n"
        f"planner: scale-up {r['scale_up_after_step_s']} s after the step, scale-down "
        f"{r['scale_down_after_drop_s']} s after the drop\n"
        f"requests: {report.num_requests}, failed: {report.num_failed}"
        + (f"  first errors: {report.errors[:3]}" if report.errors else ""))


def save_chart(results: list[RequestResult], timeline: list[TimelinePoint], phases: tuple[Phase, ...],
               path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_pool, ax_lat) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    end = max([r.sent_at + r.e2e_seconds for r in results] + [p.at for p in timeline] + [1.0])
    bins = max(1, int(end // 5))
    for cls in sorted({r.request_class for r in results}):
        sent = [r.sent_at for r in results if r.request_class == cls]
        ax_rate.hist(sent, bins=bins, range=(0, end), histtype="step", label=cls, weights=[1 / 5] * len(sent))
    ax_rate.set_ylabel("sent req/s (5 s bins)")
    pools = sorted({k for p in timeline for k in p.desired})
    for k, pool in enumerate(pools):  # offset by a few hundredths so equal counts stay visible
        ax_pool.step([p.at for p in timeline], [p.running.get(pool, 0) + 0.04 * k for p in timeline],
                     where="post", label=f"{pool} running")
    ax_pool.step([p.at for p in timeline], [sum(p.desired.values()) for p in timeline], where="post",
                 color="black", linestyle="--", label="plan total")
    ax_pool.set_ylabel("workers")
    for cls in sorted({r.request_class for r in results}):
        ok = [r for r in results if r.request_class == cls and r.ttft_seconds is not None]
        ax_lat.scatter([r.sent_at for r in ok], [r.ttft_seconds for r in ok], s=4, label=f"{cls} TTFT")
    ax_lat.set_ylabel("TTFT (s)")
    ax_lat.set_xlabel("seconds since the workload started")
    t = 0.0
    for phase in phases:
        for ax in (ax_rate, ax_pool, ax_lat):
            ax.axvline(t, color="grey", linewidth=0.5)
        ax_rate.text(t + 1, 0, phase.name, fontsize=8)
        t += phase.duration_seconds
    for ax in (ax_rate, ax_pool, ax_lat):
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("heteroserve demo: load step and the planner's reaction")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
