"""The cost model (scorers/cost.py) through the real Router and InflightTracker: cache savings weighed
against the work queued on the holder, in tokens."""

from __future__ import annotations

import pytest

from control_plane.router import (
    InflightTracker,
    PrefixHoldings,
    Router,
    RouterConfig,
    RouteRequest,
    WorkerState,
)


def states(tracker: InflightTracker, loads: dict[str, int] | None = None) -> list[WorkerState]:
    """Four workers whose load is what `tracker` has in flight on them (plus `loads`)."""
    loads = loads or {}
    return [WorkerState(f"w{j}", "x", "tiny", num_running=loads.get(f"w{j}", 0),
                        num_unreported=tracker.unreported(f"w{j}", None)) for j in range(4)]


def test_hot_prefix_spreads_once_the_holders_queue_costs_more_than_recomputing() -> None:
    # 8 cached blocks (128 tokens) of a 160-token prompt on w0; nobody finishes a prefill meanwhile
    tracker = InflightTracker()
    router = Router(RouterConfig(scoring="cost"), inflight=tracker)
    request = RouteRequest(model="tiny", num_prompt_tokens=160)
    match = PrefixHoldings(num_blocks=8, worker_blocks={"w0": 8})
    chosen = []
    for i in range(6):
        d = router.route(request, states(tracker), match)
        tracker.routed(d.worker.worker_id, f"r{i}", prefill_tokens=d.prefill_tokens)
        chosen.append((d.worker.worker_id, d.reason, d.prefill_tokens))
    # r0: w0 costs 32 (uncached) vs 160 elsewhere. r1: w0 = 32 + 32 pending + 32 for r0 = 96 < 160.
    # r2: w0 = 32 + 64 + 64 = 160 = an idle worker's 160; the tie goes to the less loaded: w1.
    assert chosen[:3] == [("w0", "prefix_hit", 32), ("w0", "prefix_hit", 32), ("w1", "load", 160)]
    assert {w for w, _, _ in chosen} == {"w0", "w1", "w2", "w3"}
    assert tracker.pending_prefill() == {w: sum(t for c, _, t in chosen if c == w) for w, _, _ in chosen}
    # the holder's first tokens arrive: its pending prefill is gone, so it is cheapest again
    for i, (w, _, _) in enumerate(chosen):
        tracker.first_token(w, f"r{i}")
    assert tracker.pending_prefill() == {}
    for i, (w, _, _) in enumerate(chosen):
        tracker.finished(w, f"r{i}")
    assert router.route(request, states(tracker), match).worker.worker_id == "w0"


def test_long_cached_prompt_goes_to_its_holder_when_queues_are_even() -> None:
    tracker = InflightTracker()
    # the stats reports' extra request ({"w1": 1} below) counts only in the reported load signal
    router = Router(RouterConfig(scoring="cost", load_signal="reported"), inflight=tracker)
    for j in range(4):  # every worker has the same queue: two requests, 300 tokens still to prefill
        for k in range(2):
            tracker.routed(f"w{j}", f"q{j}{k}", prefill_tokens=150)
    match = PrefixHoldings(num_blocks=32, worker_blocks={"w3": 30}, shared_blocks={"redis": 10})
    d = router.route(RouteRequest(model="tiny", num_prompt_tokens=520), states(tracker, {"w1": 1}), match)
    assert (d.worker.worker_id, d.reason) == ("w3", "prefix_hit")
    assert d.prefill_tokens == 520 - 16 * 30
    # the same prompt without the holder's copy: the shared tier serves all alike, the least loaded wins
    shared = PrefixHoldings(num_blocks=32, shared_blocks={"redis": 10})
    d = router.route(RouteRequest(model="tiny", num_prompt_tokens=520), states(tracker, {"w0": 1}), shared)
    assert (d.worker.worker_id, d.prefill_tokens) == ("w1", 520 - 80)


def test_a_deep_holder_queue_loses_to_recomputing_a_short_prefix() -> None:
    tracker = InflightTracker()
    router = Router(RouterConfig(scoring="cost"), inflight=tracker)
    tracker.routed("w0", "big", prefill_tokens=400)  # a long prompt still prefilling on the holder
    match = PrefixHoldings(num_blocks=4, worker_blocks={"w0": 4})
    d = router.route(RouteRequest(model="tiny", num_prompt_tokens=80), states(tracker), match)
    assert d.worker.worker_id == "w1" and d.prefill_tokens == 80  # 80 tokens here < 16 + 400 + 32 there


def test_weighted_scoring_keeps_the_hot_prefix_on_its_holder_until_the_guard() -> None:
    tracker = InflightTracker()
    router = Router(RouterConfig(scoring="weighted"), inflight=tracker)
    tracker.routed("w0", "big", prefill_tokens=400)
    match = PrefixHoldings(num_blocks=4, worker_blocks={"w0": 4})
    assert router.route(RouteRequest(model="tiny", num_prompt_tokens=80), states(tracker), match
                        ).worker.worker_id == "w0"


def test_tracker_pending_prefill_sums_per_worker_and_replaces_a_reroute() -> None:
    t = InflightTracker()
    t.routed("a", "r1", prefill_tokens=100)
    t.routed("a", "r2", prefill_tokens=50)
    t.routed("b", "r3")  # unknown prefill: counted in flight, not pending
    assert dict(t.pending_prefill()) == {"a": 150}
    t.routed("a", "r1", prefill_tokens=10)  # the same id routed again replaces its 100
    assert dict(t.pending_prefill()) == {"a": 60}
    t.first_token("a", "r2")
    t.first_token("a", "r2")  # idempotent
    assert dict(t.pending_prefill()) == {"a": 10}
    t.finished("a", "r1")
    assert dict(t.pending_prefill()) == {} and t.in_flight("a") == 1 and t.in_flight("b") == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"scoring": "fastest"}, "scoring"), ({"block_size": 0}, "block_size"),
    ({"queue_weight": -0.5}, "queue_weight"), ({"request_cost_tokens": float("nan")}, "request_cost_tokens"),
])
def test_cost_config_validation_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RouterConfig(**kwargs)  # type: ignore[arg-type]
