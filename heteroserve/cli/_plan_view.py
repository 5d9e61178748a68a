"""Rich rendering of a placement Plan (and its simulation) for `heteroserve plan`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_plan(plan: Any, simulation: dict[str, Any] | None = None) -> None:
    console = Console()
    pools = Table(title=f"placement plan v{plan.version}: {plan.cost_per_hour:.2f} $/h")
    for col in ("pool", "node type", "role", "count", "$/h"):
        pools.add_column(col, justify="right" if col in ("count", "$/h") else "left")
    for p in plan.pools:
        pools.add_row(p.name, p.node_type, p.role, str(p.count), f"{p.count * p.price_per_hour:.2f}")
    console.print(pools)
    base = Table(title="baselines")
    for col in ("baseline", "$/h", "saving", "instances", "status"):
        base.add_column(col)
    for b in plan.baselines:
        cost = "-" if b.cost_per_hour is None else f"{b.cost_per_hour:.2f}"
        saving = "-" if not b.cost_per_hour else f"{100 * (1 - plan.cost_per_hour / b.cost_per_hour):.1f}%"
        base.add_row(
            b.name, cost, saving, ", ".join(f"{k}×{v}" for k, v in b.instances.items()), b.status[:60]
        )
    console.print(base)
    s = plan.solve
    gap = "-" if s.gap is None else f"{100 * s.gap:.2f}%"
    console.print(f"solver {s.solver}: {s.status}, optimal={s.optimal}, gap {gap}, {s.solve_seconds:.3f} s")
    if simulation:
        console.print(
            f"simulated {simulation['num_requests']} requests over {simulation['duration_seconds']:.0f} s: "
            f"SLO attainment {100 * simulation['slo_attainment']:.2f}%, "
            f"TTFT p50/p90/p99 {simulation['ttft_p50']:.3f}/{simulation['ttft_p90']:.3f}/"
            f"{simulation['ttft_p99']:.3f} s, TPOT p50/p90/p99 {simulation['tpot_p50']:.3f}/"
            f"{simulation['tpot_p90']:.3f}/{simulation['tpot_p99']:.3f} s, "
            f"cost {simulation['cost_usd']:.2f} $"
        )
