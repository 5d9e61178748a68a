"""The output formats of `heteroserve status -o table|wide|json`.

- `table`: the rich tables of `status.render`, fitted to the terminal's width. Only on a terminal:
  when stdout is not a TTY (a pipe, a file, CI) there is no width to fit and `table` prints as `wide`.
- `wide`: the same tables at their natural width, never truncated or wrapped, whatever the output.
- `json`: one JSON document, `status_document()`: stable, versioned (`schema_version`), documented in
  docs/operations.md ("Status output"). A field is only ever added under the same version; renaming,
  removing or changing the meaning of one bumps `schema_version`. Times are unix seconds, durations
  seconds, rates per second, money US dollars per hour; a value that cannot be known (an unreachable
  process, nothing measured yet) is `null`, never 0.
"""

from __future__ import annotations

import io
import json
from typing import IO, Any, Literal

from rich.console import Console, RenderableType

from heteroserve.embedded.status import OK_STATUSES, ClusterStatus, Samples, plan_baselines, total

Output = Literal["table", "wide", "json"]
OUTPUTS: tuple[Output, ...] = ("table", "wide", "json")
SCHEMA = "heteroserve.status"
SCHEMA_VERSION = 1
_WORKER_GAUGES = {
    "running_requests": "heteroserve_worker_running_requests",
    "waiting_requests": "heteroserve_worker_waiting_requests",
    "kv_blocks_used": "heteroserve_worker_kv_blocks_used",
    "decode_tokens_total": "heteroserve_worker_decode_tokens_total",
}


def parse_output(value: str) -> Output:
    """The output format named by `value`; ValueError naming the field otherwise."""
    for output in OUTPUTS:
        if value == output:
            return output
    raise ValueError(f"output: {value!r} is not one of {', '.join(OUTPUTS)}")


def _mean(samples: Samples | None, name: str) -> float | None:
    count = total(samples, f"{name}_count")
    return total(samples, f"{name}_sum") / count if count else None


def _planner(m: Samples | None) -> dict[str, Any] | None:
    if m is None:
        return None
    solves = {dict(ls)["status"]: int(v) for (n, ls), v in m.items()
              if n == "heteroserve_planner_solves_total" and "status" in dict(ls)}
    return {"leader": bool(total(m, "heteroserve_planner_is_leader")), "solves": solves,
            "mean_solve_seconds": _mean(m, "heteroserve_planner_solve_seconds"),
            "observed_rate_per_s": total(m, "heteroserve_planner_observed_rate_requests_per_second")}


def _gateway(g: Samples | None) -> dict[str, Any] | None:
    if g is None:
        return None
    ok = sum(total(g, "heteroserve_gateway_requests_total", status=code) for code in OK_STATUSES)
    failed = total(g, "heteroserve_gateway_requests_total") - ok
    return {"requests_ok": int(ok), "requests_failed": int(failed),
            "mean_ttft_seconds": _mean(g, "heteroserve_gateway_ttft_seconds"),
            "mean_tpot_seconds": _mean(g, "heteroserve_gateway_tpot_seconds")}


def status_document(status: ClusterStatus) -> dict[str, Any]:
    """The `json` output (schema version 1; every key always present, see docs/operations.md)."""
    s, plan = status.state, status.plan
    doc = dict(plan.plan) if plan else {}
    actual = status.actual_counts()
    workers = []
    for w in status.workers:
        m = status.worker_metrics.get(w.worker_id)
        workers.append({"worker_id": w.worker_id, "pool": w.pool, "node_type": w.node_type, "role": w.role,
                        "device": w.device, "address": w.address, "draining": w.draining,
                        "metrics_reachable": m is not None,
                        **{key: (total(m, name) if m is not None else None)
                           for key, name in _WORKER_GAUGES.items()}})
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "collected_at": status.collected_at,
        "cluster": {"run_dir": s.run_dir, "http_url": s.http_url, "grpc_address": s.grpc_address,
                    "model": s.model, "started_at": s.started_at},
        "plan": None if plan is None else {
            "version": plan.version, "reason": plan.reason, "leader": plan.leader,
            "published_at": plan.published_at, "cost_per_hour": float(doc.get("cost_per_hour", 0.0)),
            "baselines": plan_baselines(doc)},
        "planner": _planner(status.planner_metrics),
        "pools": [{"name": p["name"], "node_type": p["node_type"], "role": p["role"],
                   "device": p.get("device"),
                   "desired": int(p["count"]), "running": actual.get(p["name"], 0),
                   "price_per_hour": float(p.get("price_per_hour", 0.0))} for p in doc.get("pools", [])],
        "workers": workers,
        "gateway": _gateway(status.gateway_metrics),
        "cache_hit_rate": status.cache_hit_rates(),
        "routing": _routing(status.routing),
    }


def _routing(routing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gateway's planned vs served shares, in the documented shape (added in version 1)."""
    if routing is None:
        return None
    route_keys = ("request_class", "slo_class", "route", "pool", "prefill_pool", "decode_pool",
                  "planned_share", "served_share", "requests")
    pool_keys = ("slo_class", "pool", "role", "planned_share", "served_share", "requests")
    return {"plan_version": routing.get("plan_version"), "plan_error": routing.get("plan_error"),
            "epsilon": routing.get("epsilon"), "window": routing.get("window"),
            "deviations": dict(routing.get("deviations", {})),
            "classes": [{k: r.get(k) for k in route_keys} for r in routing.get("classes", [])],
            "pools": [{k: p.get(k) for k in pool_keys} for p in routing.get("pools", [])]}


def natural_width(renderable: RenderableType) -> int:
    """Columns `renderable` needs to print without truncating or wrapping anything."""
    probe = Console(file=io.StringIO(), width=1_000_000, color_system=None)
    return max(1, probe.measure(renderable).maximum)


def write_status(status: ClusterStatus, output: Output, out: IO[str], *, is_terminal: bool) -> None:
    """Print `status` to `out` in `output` format. `is_terminal`: `out` is a TTY (table fits it)."""
    from heteroserve.embedded.status import render

    if output == "json":
        out.write(json.dumps(status_document(status), sort_keys=True) + "\n")
        return
    renderable = render(status)
    if output == "table" and is_terminal:
        Console(file=out).print(renderable)
        return
    # wide, or table without a terminal: natural width, never truncated.
    Console(file=out, width=natural_width(renderable), force_terminal=is_terminal, soft_wrap=False,
            color_system="auto" if is_terminal else None).print(renderable)
