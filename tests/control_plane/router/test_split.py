"""The route step (control_plane/router/split.py) and the route chooser / share ledger built on it:
exact sequences, the deviation bound under a prefix-heavy workload, redistribution, P/D availability."""

from __future__ import annotations

from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.orchestrator.routes import ClassRoute, PlannedRoute, RouteChooser
from control_plane.orchestrator.shares import ShareLedger
from control_plane.router import PrefixHoldings, WorkerState
from control_plane.router.split import DEFAULT_EPSILON, DEFAULT_WINDOW, RouteSplitter, SplitChoice


def test_smooth_weighted_round_robin_exact_sequence() -> None:
    splitter = RouteSplitter()
    picks = [splitter.choose("c", (0.5, 0.3, 0.2), (True, True, True)) for _ in range(10)]
    assert [p.index for p in picks if p] == [0, 1, 2, 0, 0, 1, 0, 2, 1, 0]
    assert all(p is not None and p.deviations == () for p in picks)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=5))
def test_counts_stay_within_one_request_of_share_times_n(weights: list[int]) -> None:
    shares = tuple(w / sum(weights) for w in weights)
    splitter, counts = RouteSplitter(), [0] * len(shares)
    for n in range(1, 301):
        choice = splitter.choose("c", shares, (True,) * len(shares))
        assert choice is not None
        counts[choice.index] += 1
        assert all(abs(counts[i] - shares[i] * n) < len(shares) for i in range(len(shares)))


def test_unavailable_route_share_goes_to_the_others() -> None:
    splitter = RouteSplitter()
    picks = [splitter.choose("c", (0.5, 0.3, 0.2), (True, False, True)) for _ in range(70)]
    counts = Counter(p.index for p in picks if p)
    assert counts == {0: 50, 2: 20}  # 0.5 : 0.2 of the live routes, exactly over 70 requests
    assert {p.deviations for p in picks if p} == {("route_unavailable",)}
    assert splitter.choose("c", (0.5, 0.5), (False, False)) is None


def test_prefix_affinity_deviates_only_within_the_bound() -> None:
    """Prefix-heavy: every prompt is cached on route 1 only. Route 1 takes at most its share + ε of
    every window of the last `window` decisions, and the overall split stays within ±0.05."""
    splitter, n = RouteSplitter(), 2000
    shares = (0.7, 0.3)
    taken: deque[int] = deque(maxlen=DEFAULT_WINDOW)
    counts, deviations = [0, 0], 0
    for _ in range(n):
        choice = splitter.choose("c", shares, (True, True), affinity=(0.0, 1.0))
        assert choice is not None
        taken.append(choice.index)
        counts[choice.index] += 1
        deviations += choice.deviations == ("prefix_affinity",)
        assert sum(taken) <= (shares[1] + DEFAULT_EPSILON) * len(taken) + 1  # +1: the round-robin's own slack
    assert abs(counts[1] / n - shares[1]) <= 0.05
    assert counts[1] / n > shares[1] + 0.02  # affinity did pull traffic towards the holder
    assert deviations >= counts[1] - shares[1] * n - 1  # every request above the share is a counted deviation
    assert splitter.window_shares("c") is not None


def test_both_reasons_when_a_route_is_down_and_affinity_moves_the_request() -> None:
    splitter = RouteSplitter(epsilon=1.0)  # no bound: affinity always wins
    choice = splitter.choose("c", (0.5, 0.3, 0.2), (True, False, True), affinity=(0.0, 0.0, 1.0))
    assert choice == SplitChoice(2, ("route_unavailable", "prefix_affinity"))


def test_weak_or_equal_affinity_does_not_deviate() -> None:
    splitter = RouteSplitter()
    weak = [splitter.choose("c", (0.5, 0.5), (True, True), affinity=(0.0, 0.49)) for _ in range(50)]
    equal = [splitter.choose("d", (0.5, 0.5), (True, True), affinity=(1.0, 1.0)) for _ in range(50)]
    assert all(p is not None and p.deviations == () for p in weak + equal)


def test_new_shares_reset_the_class_state() -> None:
    splitter = RouteSplitter()
    for _ in range(3):
        splitter.choose("c", (0.5, 0.5), (True, True))
    assert splitter.window_shares("c") == (2 / 3, 1 / 3)
    splitter.choose("c", (0.2, 0.8), (True, True))
    assert splitter.window_shares("c") == (0.0, 1.0)
    splitter.clear()
    assert splitter.window_shares("c") is None


def test_splitter_config_is_validated() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        RouteSplitter(epsilon=1.5)
    with pytest.raises(ValueError, match="window"):
        RouteSplitter(window=0)


CO = PlannedRoute(0.5, pool="co")
PD = PlannedRoute(0.5, prefill_pool="pf", decode_pool="dc")
ROUTE = ClassRoute("m/interactive/i1o0", "interactive", (CO, PD), rate_per_s=2.0)


def _w(worker_id: str, pool: str, role: str, healthy: bool = True) -> WorkerState:
    return WorkerState(worker_id, f"{worker_id}:1", "m", role=role, pool=pool, healthy=healthy)  # type: ignore[arg-type]


def test_pd_route_needs_a_live_worker_in_both_pools() -> None:
    chooser = RouteChooser()
    no_decode = [_w("c", "co", "colocated"), _w("p", "pf", "prefill"), _w("d", "dc", "decode", healthy=False)]
    picks = [chooser.choose(ROUTE, "m", no_decode, PrefixHoldings()) for _ in range(4)]
    assert [p for p in picks] == [(CO, ("route_unavailable",))] * 4
    # a decode worker of another pool does not make the pair available: the pairing is the plan's
    wrong_pool = [_w("p", "pf", "prefill"), _w("d2", "other", "decode")]
    assert chooser.choose(ROUTE, "m", wrong_pool, PrefixHoldings()) is None


def test_route_affinity_comes_from_the_route_pools_workers() -> None:
    chooser = RouteChooser()
    live = [_w("c", "co", "colocated"), _w("p", "pf", "prefill"), _w("d", "dc", "decode")]
    held = PrefixHoldings(num_blocks=4, worker_blocks={"d": 4})  # cached on the P/D route's decode worker
    first = chooser.choose(ROUTE, "m", live, held)
    assert first == (CO, ())  # the window is too short to deviate yet (1 of 1 > 0.5 + ε)
    second = chooser.choose(ROUTE, "m", live, held)
    assert second == (PD, ())  # the round robin's own pick
    picks = [chooser.choose(ROUTE, "m", live, held) for _ in range(200)]
    assert sum(p == (PD, ("prefix_affinity",)) for p in picks if p) > 0


def test_share_ledger_planned_vs_served() -> None:
    batch = ClassRoute("m/batch/i0o0", "batch", (PlannedRoute(1.0, pool="co"),), rate_per_s=1.0)
    ledger = ShareLedger()
    ledger.reset(3, [ROUTE, batch])
    before = {(p.slo_class, p.pool, p.role): (p.planned, p.served) for p in ledger.pool_shares()}
    assert before[("interactive", "co", "colocated")] == (0.5, None)
    assert before[("interactive", "pf", "prefill")] == (0.5, None)
    for taken in (CO, PD, PD, PD, None):
        ledger.record(ROUTE, taken)
    rows = {(p.slo_class, p.pool, p.role): p for p in ledger.pool_shares()}
    assert rows[("interactive", "co", "colocated")].served == pytest.approx(0.2)
    assert rows[("interactive", "pf", "prefill")].served == pytest.approx(0.6)
    assert rows[("interactive", "dc", "decode")].served == pytest.approx(0.6)
    assert rows[("interactive", "dc", "decode")].requests == 5
    assert rows[("batch", "co", "colocated")].served is None
    by_route = {(r.request_class, r.route.name): r for r in ledger.class_shares()}
    assert by_route[("m/interactive/i1o0", "pf>dc")].served == pytest.approx(0.6)
    assert by_route[("m/interactive/i1o0", "pf>dc")].planned == 0.5
    ledger.reset(4, [batch])
    assert [(r.request_class, r.served) for r in ledger.class_shares()] == [("m/batch/i0o0", None)]


def test_router_config_carries_the_bound() -> None:
    from control_plane.router import RouterConfig

    assert (RouterConfig().route_share_epsilon, RouterConfig().route_share_window) == (0.04, 200)
    with pytest.raises(ValueError, match="route_share_epsilon"):
        RouterConfig(route_share_epsilon=-0.1)
    with pytest.raises(ValueError, match="route_share_window"):
        RouterConfig(route_share_window=0)
