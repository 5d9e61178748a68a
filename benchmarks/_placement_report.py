"""The readable tables of `bench placement`: Mélange reproduction per rate, scale, P/D value."""

from __future__ import annotations

from typing import Any


def report(mel: dict[str, Any], scale: dict[str, Any], pd: dict[str, Any], pd_all: dict[str, Any],
           cap: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)  # the per-rate table is wider than a pipe's default 80 columns
    t = Table(title=f"Mélange reproduction (slice factor 4; HiGHS proves both; CBC capped at {cap:g} s)")
    for col in ("rate", "Mélange $/h", "Mélange s", "ours sliced $/h", "sliced s", "reproduced", "CBC s",
                "CBC status", "ours joint $/h", "joint s", "relaxation saving"):
        t.add_column(col, justify="right")
    for r in mel["rows"]:
        t.add_row(str(r["rate"]), f"{r['melange_cost']:.2f}", f"{r['melange_seconds']:.2f}",
                  f"{r['sliced_cost']:.2f}", f"{r['sliced_seconds']:.3f}", str(r["reproduced"]),
                  f"{r['cbc_seconds']:.2f}", r["cbc_status"], f"{r['ours_cost']:.2f}",
                  f"{r['ours_seconds']:.3f}", f"{100 * r['relaxation_saving']:.1f}%")
    console.print(t)
    console.print(
        f"Mélange reproduced on {mel['melange_reproduced_rates']}/{mel['melange_rates']} rates (sliced solve "
        f"max {mel['sliced_seconds_max']:.3f} s, ≤ 1 s; CBC proved {mel['cbc_proven_rates']} rates, "
        f"disagreed on {mel['cbc_disagrees_rates']}); joint solve "
        f"max {mel['solve_seconds_max']:.3f} s / median {mel['solve_seconds_median']:.3f} s (≤ 1 s); "
        f"relaxation saving median {100 * mel['relaxation_saving_median']:.1f}%, "
        f"max {100 * mel['relaxation_saving_max']:.1f}% (continuous shares vs binary slices)"
    )
    console.print(
        f"scale (shared inventory, one joint ILP): {scale['scale_classes']} classes of "
        f"{scale['scale_models']} models, {scale['scale_pools']} pools, {scale['scale_routes']} P/D routes: "
        f"{scale['scale_status']} in {scale['scale_solve_seconds']:.2f} s (≤ 10), "
        f"gap {100 * (scale['scale_gap'] or 0):.2f}% (≤ 1%), "
        f"compile {scale['scale_compile_seconds']:.2f} s; types at their inventory: "
        f"{', '.join(scale['scale_types_at_inventory']) or 'none'}"
    )
    for title, x in (("calibrated types", pd), ("with uncalibrated types", pd_all)):
        console.print(f"P/D value, {title} ({', '.join(x['fleet'])}):")
        for name in ("conv", "code"):
            y = x[name]
            console.print(
                f"  {name} @ {y['rate']:.1f} req/s: joint {y['joint_cost']:.2f} $/h vs colocated "
                f"{y['colocated_cost']:.2f} $/h (saving {100 * y['saving']:.1f}%), simulated SLO attainment "
                f"{100 * y['slo_attainment']:.2f}%, TTFT p99 {y['ttft_p99']:.2f} s, TPOT p99 "
                f"{y['tpot_p99']:.3f} s (raw trace arrivals: {100 * y['slo_attainment_raw_arrivals']:.1f}%)"
            )
        console.print(f"  saving {100 * x['pd_saving_vs_colocated']:.1f}%, "
                      f"SLO attainment {x['pd_plan_slo_attainment']:.4f} (≥ 0.99)")
