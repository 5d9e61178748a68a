"""`heteroserve status`: what the embedded cluster is doing, from Redis and every process's /metrics.

Collected (`collect`): the current plan (version, pools with desired counts, cost and baselines), the
live workers from the registry with their load (running / waiting requests, KV blocks used) and
their pool's actual count, gateway totals (requests by status, TTFT and TPOT means), the gateway's
planned vs served share per class route and per (SLO class, pool) (`GET /admin/routing`), and cache hit
rates per tier: `memory` = prompt tokens served from worker KV caches over all prompt tokens, and
`redis` / `disk` = block hits over lookups from the cache metrics of the workers. Rendered as rich
tables (`render`). Any process that does not answer is shown as such, never an exception.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

from common.registry import WorkerRecord, list_workers
from common.vocab import Tier
from control_plane.plan_store import PlanRecord, PlanStore
from heteroserve.embedded.state import ClusterState

# The tiers the status shows a hit rate for: the engines' own KV pool, then the shared and disk tiers.
_SHOWN_TIERS: tuple[Tier, ...] = ("device", "redis", "disk")

OK_STATUSES = ("200", "OK")  # REST and gRPC labels of a successful request
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, timeout: float = 2.0) -> Samples | None:
    """Every sample of a /metrics page as {(name, sorted labels): value}; None if unreachable."""
    try:
        text = httpx.get(url, timeout=timeout).text
    except httpx.HTTPError:
        return None
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(samples: Samples | None, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    if not samples:
        return 0.0
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, val) in ls for k, val in labels.items()))


@dataclass
class ClusterStatus:
    state: ClusterState
    plan: PlanRecord | None
    workers: list[WorkerRecord]
    worker_metrics: dict[str, Samples | None]
    gateway_metrics: Samples | None
    planner_metrics: Samples | None = None
    routing: dict[str, Any] | None = None  # the gateway's GET /admin/routing; None when unreachable
    collected_at: float = field(default_factory=time.time)

    def cache_hit_rates(self) -> dict[Tier, float | None]:
        """Hit rate per tier (None when nothing was looked up there yet): `device` is the share of
        prompt tokens the engines did not recompute, the others the store's lookups in that tier."""
        ms = list(self.worker_metrics.values())
        cached = sum(total(m, "heteroserve_worker_cached_prompt_tokens_total") for m in ms)
        computed = sum(total(m, "heteroserve_worker_prefill_tokens_total") for m in ms)
        seen = cached + computed
        rates: dict[Tier, float | None] = {"device": cached / seen if seen else None}
        for tier in _SHOWN_TIERS[1:]:
            hits = sum(total(m, "heteroserve_cache_hits_total", tier=tier) for m in ms)
            misses = sum(total(m, "heteroserve_cache_misses_total", tier=tier) for m in ms)
            rates[tier] = hits / (hits + misses) if hits + misses else None
        return rates

    def actual_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for w in self.workers:
            if not w.draining:
                counts[w.pool] += 1
        return dict(counts)


async def _read_redis(redis_url: str) -> tuple[PlanRecord | None, list[WorkerRecord]]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2.0)
    try:
        return await PlanStore(client).read(), await list_workers(client)
    finally:
        await client.aclose()


def read_routing(http_url: str, admin_token: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The gateway's planned vs served shares (GET /admin/routing); None if it does not answer 200."""
    try:
        reply = httpx.get(f"{http_url}/admin/routing", timeout=timeout,
                          headers={"authorization": f"Bearer {admin_token}"})
        body = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):  # ValueError: not JSON (not our gateway's admin API)
        return None
    return body if isinstance(body, dict) and "pools" in body else None


def collect(state: ClusterState) -> ClusterStatus:
    plan, workers = asyncio.run(_read_redis(state.redis_url))
    metrics = {w.worker_id: scrape(f"http://{w.address.rsplit(':', 1)[0]}:{w.metrics_port}/metrics")
               if w.metrics_port else None for w in workers}
    planner = state.process("planner")
    planner_metrics = scrape(planner.metrics_url) if planner and planner.metrics_url else None
    return ClusterStatus(state, plan, workers, metrics, scrape(f"{state.http_url}/metrics"), planner_metrics,
                         read_routing(state.http_url, state.admin_token))


def plan_baselines(doc: Mapping[str, Any]) -> dict[str, float | None]:
    """{baseline name: $/h (None: infeasible)} from a plan document: `Plan.to_dict()` lists them
    (`[{name, cost_per_hour}]`), the planner's older document mapped them."""
    raw = doc.get("baselines") or {}
    if isinstance(raw, dict):
        return {str(k): None if v is None else float(v) for k, v in raw.items()}
    costs = {str(b["name"]): b.get("cost_per_hour") for b in raw}
    return {k: None if v is None else float(v) for k, v in costs.items()}


def _fmt(value: float | None, pattern: str = "{:.0%}") -> str:
    return "-" if value is None else pattern.format(value)


def _planner_text(m: Samples | None) -> str:
    if m is None:
        return "no metrics"
    solves = {ls[0][1]: v for (n, ls), v in m.items() if n == "heteroserve_planner_solves_total" and ls}
    n = total(m, "heteroserve_planner_solve_seconds_count")
    mean = total(m, "heteroserve_planner_solve_seconds_sum") / n if n else 0.0
    rate = total(m, "heteroserve_planner_observed_rate_requests_per_second")
    return (f"{'leader' if total(m, 'heteroserve_planner_is_leader') else 'follower'}, "
            f"solves {', '.join(f'{k} {v:.0f}' for k, v in sorted(solves.items())) or 'none'} "
            f"(mean {mean * 1000:.0f} ms), observed {rate:.2f} req/s")


def render(status: ClusterStatus) -> Group:
    s = status.state
    header = Table.grid(padding=(0, 2))
    header.add_row("cluster", s.run_dir, "gateway", s.http_url, "gRPC", s.grpc_address)
    plan = status.plan
    doc = plan.plan if plan else {}
    header.add_row("plan", f"v{plan.version} ({plan.reason})" if plan else "none yet",
                   "cost", f"${doc.get('cost_per_hour', 0):.2f}/h" if plan else "-",
                   "baselines",
                   ", ".join(f"{k} {_fmt(v, '${:.2f}/h')}" for k, v in plan_baselines(doc).items()) or "-")
    header.add_row("planner", _planner_text(status.planner_metrics), "", "", "", "")
    pools = Table(title="pools (plan vs running)")
    for col in ("pool", "node type", "role", "device", "desired", "running", "$/h each"):
        pools.add_column(col)
    actual = status.actual_counts()
    for p in doc.get("pools", []):
        pools.add_row(p["name"], p["node_type"], p["role"], p.get("device") or "-", str(p["count"]),
                      str(actual.get(p["name"], 0)), f"{p.get('price_per_hour', 0):.2f}")
    workers = Table(title="workers")
    for col in ("worker", "pool", "role", "device", "address", "running", "waiting", "KV used", "tokens out"):
        workers.add_column(col)
    for w in status.workers:
        m = status.worker_metrics.get(w.worker_id)
        name = w.worker_id + (" (draining)" if w.draining else "")
        workers.add_row(name, w.pool, w.role, w.device, w.address,
                        *(_fmt(total(m, n), "{:.0f}") if m else "?" for n in (
                            "heteroserve_worker_running_requests", "heteroserve_worker_waiting_requests",
                            "heteroserve_worker_kv_blocks_used", "heteroserve_worker_decode_tokens_total")))
    g = status.gateway_metrics
    traffic = Table(title="gateway and cache")
    for col in ("requests ok", "errors", "mean TTFT", "mean TPOT",
                *(f"hit rate {t}" for t in _SHOWN_TIERS)):
        traffic.add_column(col)
    n_ttft = total(g, "heteroserve_gateway_ttft_seconds_count")
    n_tpot = total(g, "heteroserve_gateway_tpot_seconds_count")
    ok = sum(total(g, "heteroserve_gateway_requests_total", status=code) for code in OK_STATUSES)
    errors = total(g, "heteroserve_gateway_requests_total") - ok
    hits = status.cache_hit_rates()
    traffic.add_row(f"{ok:.0f}" if g else "?", f"{errors:.0f}" if g else "?",
                    _fmt(total(g, "heteroserve_gateway_ttft_seconds_sum") / n_ttft if n_ttft else None,
                         "{:.3f}s"),
                    _fmt(total(g, "heteroserve_gateway_tpot_seconds_sum") / n_tpot if n_tpot else None,
                         "{:.4f}s"),
                    *(_fmt(hits[t]) for t in _SHOWN_TIERS))
    return Group(header, pools, workers, traffic, *routing_tables(status.routing))


def routing_tables(routing: dict[str, Any] | None) -> list[Table]:
    """Planned vs served share per class route and per (SLO class, pool, role); none without a
    gateway answer."""
    if routing is None:
        return []
    title = f"routing by plan v{routing.get('plan_version', 0)}: planned vs served share"
    if routing.get("plan_error"):
        title += f" (refused: {routing['plan_error']})"
    routes = Table(title=title)
    for col in ("class", "route", "planned", "served", "requests"):
        routes.add_column(col)
    for r in routing.get("classes", []):
        routes.add_row(r["request_class"], r["route"], _fmt(r["planned_share"], "{:.3f}"),
                       _fmt(r["served_share"], "{:.3f}"), str(r["requests"]))
    pools = Table(title="share per SLO class and pool (deviations: " + ", ".join(
        f"{k} {v}" for k, v in sorted(routing.get("deviations", {}).items())) + ")")
    for col in ("SLO class", "pool", "role", "planned", "served", "requests"):
        pools.add_column(col)
    for p in routing.get("pools", []):
        pools.add_row(p["slo_class"], p["pool"], p["role"], _fmt(p["planned_share"], "{:.3f}"),
                      _fmt(p["served_share"], "{:.3f}"), str(p["requests"]))
    return [routes, pools]
