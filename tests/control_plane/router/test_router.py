"""Router pipeline on synthetic worker states and a synthetic prefix match."""

from __future__ import annotations

import pytest

from common.errors import UnavailableError
from control_plane.router import (
    Candidates,
    InflightTracker,
    PrefixHoldings,
    Router,
    RouterConfig,
    RouteRequest,
    WorkerState,
)
from control_plane.router.scorers.load import LoadScorer
from control_plane.router.scorers.prefix import PrefixScorer


def workers(n: int = 4, **overrides: object) -> list[WorkerState]:
    return [WorkerState(worker_id=f"w{i}", address=f"127.0.0.1:{9000 + i}", model="tiny", **overrides)  # type: ignore[arg-type]
            for i in range(n)]


REQ = RouteRequest(model="tiny")


def test_prefix_scorer_credits_tiers() -> None:
    ws = workers(3)
    match = PrefixHoldings(num_blocks=4, worker_blocks={"w0": 4, "w1": 2},
                           shared_blocks={"redis": 2, "disk": 4})
    assert PrefixScorer().score(REQ, Candidates.of(ws), match).tolist() == [1.0, 0.5, 0.25]


def test_prefix_scorer_neutral_without_blocks() -> None:
    assert PrefixScorer().score(REQ, Candidates.of(workers(2)), PrefixHoldings()).tolist() == [0.0, 0.0]


def test_load_scorer_formula() -> None:
    ws = [WorkerState("a", "x", "tiny", num_running=1, num_waiting=1, num_unreported=1),
          WorkerState("b", "y", "tiny")]
    assert LoadScorer().score(REQ, Candidates.of(ws), PrefixHoldings()).tolist() == [0.25, 1.0]


def test_prefix_routing_prefers_holder() -> None:
    match = PrefixHoldings(num_blocks=8, worker_blocks={"w2": 8})
    decision = Router().route(REQ, workers(), match)
    assert decision.worker.worker_id == "w2"
    assert decision.reason == "prefix_hit"
    assert decision.cached_blocks == 8


def test_without_prefix_least_loaded_wins() -> None:
    ws = [WorkerState(f"w{i}", "x", "tiny", num_running=r) for i, r in enumerate([3, 1, 0, 2])]
    assert Router().route(REQ, ws).worker.worker_id == "w2"


def test_imbalance_guard_spreads_hot_prefix() -> None:
    match = PrefixHoldings(num_blocks=8, worker_blocks={"w0": 8})
    router = Router(RouterConfig(balance_abs_threshold=2, balance_rel_threshold=1.5))
    tracker = InflightTracker()
    chosen = []
    for i in range(12):
        ws = [WorkerState(f"w{j}", "x", "tiny", num_unreported=tracker.unreported(f"w{j}", None))
              for j in range(4)]
        d = router.route(REQ, ws, match)
        tracker.routed(d.worker.worker_id, f"r{i}")
        chosen.append((d.worker.worker_id, d.reason))
    on_holder = sum(1 for w, _ in chosen if w == "w0")
    assert chosen[0] == ("w0", "prefix_hit")
    assert any(reason == "imbalance_guard" for _, reason in chosen)
    assert 3 <= on_holder <= 7, chosen
    assert {w for w, _ in chosen} == {"w0", "w1", "w2", "w3"}


def test_hard_filters_name_the_filter() -> None:
    ws = workers(2, healthy=False)
    with pytest.raises(UnavailableError, match="'healthy' filter"):
        Router().route(REQ, ws)
    with pytest.raises(UnavailableError, match="'model' filter"):
        Router().route(RouteRequest(model="other"), workers(2))
    with pytest.raises(UnavailableError, match="'role' filter"):
        Router().route(RouteRequest(model="tiny", role="prefill"), workers(2))


def test_exclude_and_draining() -> None:
    ws = workers(3)
    ws[1] = WorkerState("w1", "x", "tiny", draining=True)
    req = RouteRequest(model="tiny", exclude=frozenset({"w0"}))
    assert Router().route(req, ws).worker.worker_id == "w2"


def test_capacity_filter_is_soft() -> None:
    ws = [WorkerState("a", "x", "tiny", num_running=4, max_concurrency=4),
          WorkerState("b", "y", "tiny", num_running=9, max_concurrency=4)]
    router = Router(RouterConfig(policy="round_robin"))
    assert [router.route(REQ, ws).worker.worker_id for _ in range(2)] == ["a", "b"]
    ws[0] = WorkerState("a", "x", "tiny", num_running=1, max_concurrency=4)
    assert {router.route(REQ, ws).worker.worker_id for _ in range(3)} == {"a"}


def test_baselines() -> None:
    ws = [WorkerState(f"w{i}", "x", "tiny", num_running=r) for i, r in enumerate([3, 1, 0, 2])]
    rr = Router(RouterConfig(policy="round_robin"))
    assert [rr.route(REQ, ws).worker.worker_id for _ in range(5)] == ["w0", "w1", "w2", "w3", "w0"]
    assert Router(RouterConfig(policy="least_load")).route(REQ, ws).worker.worker_id == "w2"
    picks_a = [Router(RouterConfig(policy="random", seed=3)).route(REQ, ws).worker.worker_id]
    r1, r2 = Router(RouterConfig(policy="random", seed=3)), Router(RouterConfig(policy="random", seed=3))
    seeded = [r1.route(REQ, ws).worker.worker_id for _ in range(10)]
    assert seeded == [r2.route(REQ, ws).worker.worker_id for _ in range(10)]
    assert len(set(seeded)) > 1, seeded  # random, not stuck on one worker
    assert picks_a[0] in {"w0", "w1", "w2", "w3"}


def test_session_affinity() -> None:
    router = Router(RouterConfig(scoring="weighted"))  # the affinity score is the weighted sum's
    ws = workers(4)
    first = router.route(RouteRequest(model="tiny", session_id="s1"), ws)
    # make the first worker slightly busier: affinity (0.2) still beats a small load difference
    ws = [WorkerState(w.worker_id, w.address, "tiny", num_running=2 if w.worker_id == first.worker.worker_id
                      else 1) for w in ws]
    again = router.route(RouteRequest(model="tiny", session_id="s1"), ws)
    assert again.worker.worker_id == first.worker.worker_id
    assert again.reason == "session_affinity"


def test_inflight_tracker_counts_only_after_report() -> None:
    t = InflightTracker()
    t.routed("w", "a", now=1.0)
    t.routed("w", "b", now=3.0)
    assert t.unreported("w", reported_at=2.0) == 1
    assert t.unreported("w", reported_at=None) == 2
    t.finished("w", "b")
    assert t.unreported("w", reported_at=2.0) == 0
    assert t.in_flight("w") == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"policy": "fastest"}, "policy"), ({"load_weight": -1}, "load_weight"),
    ({"tier_credits": {"tape": 0.1}}, "tier_credits"),
    ({"balance_rel_threshold": 0.5}, "balance_rel_threshold"),
])
def test_config_validation_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RouterConfig(**kwargs)  # type: ignore[arg-type]


def test_route_pools_filter_uses_one_mask_per_pool_set() -> None:
    ws = tuple(WorkerState(f"w{i}", "x", "tiny", pool=("pa", "pb", "pc")[i % 3], num_running=3 - i)
               for i in range(6))
    router = Router()
    table = router.table(ws)
    cases = ((frozenset({"pb"}), {"w1", "w4"}), (frozenset({"pa", "pc"}), {"w0", "w2", "w3", "w5"}))
    for pools, expected in cases:
        request = RouteRequest(model="tiny", pools=pools)
        assert {w.worker_id for w in router.candidates(request, ws)} == expected
        mask = table.in_pools(pools)
        assert table.in_pools(pools) is mask  # memoized: the membership is fixed at build
        assert router.route(request, ws).worker.worker_id in expected
    with pytest.raises(UnavailableError, match="'route_pools' filter"):
        router.route(RouteRequest(model="tiny", pools=frozenset({"nowhere"})), ws)
