"""Ties among equally good workers are taken in rotation (picker.break_tie), not by the lowest id: with
the exact in-flight count (load signal "dispatch") idle workers tie often, and a lowest-id rule sent
new prefixes and least-load choices to the same few workers."""

from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
import pytest

from control_plane.router import (
    InflightTracker,
    PrefixHoldings,
    Router,
    RouterConfig,
    RouteRequest,
    WorkerState,
)
from control_plane.router.picker import pick

REQ = RouteRequest(model="tiny", num_prompt_tokens=64)


def _workers(n: int) -> list[WorkerState]:
    return [WorkerState(f"w{i}", f"127.0.0.1:{9000 + i}", "tiny") for i in range(n)]


@pytest.mark.parametrize("policy", ["least_load", "prefix_aware"])
def test_idle_workers_share_requests_that_finish_before_the_next(
        policy: Literal["least_load", "prefix_aware"]) -> None:
    tracker = InflightTracker()
    router = Router(RouterConfig(policy=policy), inflight=tracker)
    counts: Counter[str] = Counter()
    for i in range(40):  # each request finishes before the next arrives: every worker idle at each decision
        d = router.route(REQ, _workers(4), PrefixHoldings())
        tracker.routed(d.worker.worker_id, f"r{i}")
        tracker.finished(d.worker.worker_id, f"r{i}")
        counts[d.worker.worker_id] += 1
    assert counts == {"w0": 10, "w1": 10, "w2": 10, "w3": 10}  # the lowest-id rule put all 40 on w0


def test_ties_only_among_the_least_loaded() -> None:
    tracker = InflightTracker()
    router = Router(RouterConfig(policy="least_load"), inflight=tracker)
    tracker.routed("w0", "busy")
    tracker.routed("w2", "busy")
    chosen = {router.route(REQ, _workers(4)).worker.worker_id for _ in range(12)}
    assert chosen == {"w1", "w3"}


def test_a_unique_best_wins_whatever_the_turn() -> None:
    load = np.array([0, 0, 1, 0])
    totals = np.array([0.2, 0.9, 0.9, 0.2])  # w1 and w2 tie on the total; w1 is less loaded
    assert {pick(load, totals, balance_abs_threshold=8, balance_rel_threshold=1.5, turn=t).index
            for t in range(8)} == {1}
    assert {pick(np.zeros(4), np.full(4, 0.5), balance_abs_threshold=8, balance_rel_threshold=1.5,
                 turn=t).index for t in range(8)} == {0, 1, 2, 3}


def test_a_prefix_holder_still_wins_over_idle_equals() -> None:
    router = Router(RouterConfig(policy="prefix_aware"), inflight=InflightTracker())
    match = PrefixHoldings(num_blocks=4, worker_blocks={"w2": 4})
    assert {router.route(REQ, _workers(4), match).worker.worker_id for _ in range(8)} == {"w2"}
