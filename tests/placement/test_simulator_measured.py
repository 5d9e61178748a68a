"""The simulator calibrated from measurements: step times and KV transfer per (node type, role)."""

from __future__ import annotations

from dataclasses import replace

from placement.models import ModelSpec
from placement.profile_file import TransferPoint
from placement.simulator import SimOptions, SimRequest, simulate
from placement.workload import SLOClass
from tests.placement.simulated import FixedSteps


def test_measured_steps_and_transfer_replace_the_roofline(  # type: ignore[no-untyped-def]
        setup, models: dict[str, ModelSpec], slos: dict[str, SLOClass]) -> None:
    plan, _, fleet = setup
    pools = [p for p in plan.pools if p.count > 0]
    steps = {(p.node_type, p.role): FixedSteps(0.25, 0.01) for p in pools}
    transfer = {p.node_type: TransferPoint("peer", 1, 0.5, 1e18, latency_seconds=0.5) for p in pools}
    lone = [SimRequest(0.0, 300, 11, "llama2-70b", "interactive")]
    result = simulate(plan, lone, fleet, models, slos, SimOptions(steps=steps, transfer=transfer))
    # one prefill step, plus the measured transfer's latency when the route was P/D
    expected_ttft = 0.25 + (0.5 if result.disaggregated_fraction else 0.0)
    assert abs(result.ttft_p50 - expected_ttft) < 1e-6
    assert abs(result.tpot_p50 - 0.01) < 1e-6
    roofline = simulate(plan, lone, fleet, models, slos, replace(SimOptions()))
    assert roofline.ttft_p50 != result.ttft_p50
