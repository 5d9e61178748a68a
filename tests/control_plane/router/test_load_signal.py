"""`RouterConfig.load_signal`: the load the router reads is the gateway's own in-flight count at dispatch
(`dispatch`, default) or the workers' last stats report plus what was routed since (`reported`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UnavailableError
from control_plane.router import (
    InflightTracker,
    PrefixHoldings,
    Router,
    RouterConfig,
    RouteRequest,
    WorkerState,
)
from tests.control_plane.router.test_router_reference import HOLDINGS, REQUEST, WORKER, reference

REQ = RouteRequest(model="tiny")


def four(reported: dict[str, int] | None = None) -> list[WorkerState]:
    """Four workers whose last stats report said `reported` running (default none)."""
    reported = reported or {}
    return [WorkerState(f"w{j}", "x", "tiny", num_running=reported.get(f"w{j}", 0)) for j in range(4)]


def test_dispatch_does_not_see_requests_a_stale_report_still_counts() -> None:
    # w0's report (taken while 5 requests ran) is stale: they finished; w2 has 2 in flight right now
    tracker = InflightTracker()
    tracker.routed("w2", "a")
    tracker.routed("w2", "b")
    ws = four({"w0": 5, "w1": 1, "w3": 1})
    dispatch = Router(RouterConfig(policy="least_load"), inflight=tracker)
    reported = Router(RouterConfig(policy="least_load", load_signal="reported"), inflight=tracker)
    assert dispatch.route(REQ, ws).worker.worker_id == "w0"  # nothing in flight there now
    assert reported.route(REQ, ws).worker.worker_id == "w2"  # by the report, w2 is idle


def test_guard_reads_the_load_at_dispatch() -> None:
    # ten requests sent to the holder since its last report, which said idle: with the dispatch signal
    # the guard sees them (10 - 0 > 8 and 10 > 1.5 * 0) and sends the request to the idlest worker
    tracker = InflightTracker()
    for i in range(10):
        tracker.routed("w0", f"r{i}")
    match = PrefixHoldings(num_blocks=8, worker_blocks={"w0": 8})
    d = Router(RouterConfig(), inflight=tracker).route(REQ, four(), match)
    assert (d.worker.worker_id, d.reason) == ("w1", "imbalance_guard")
    d = Router(RouterConfig(load_signal="reported"), inflight=tracker).route(REQ, four(), match)
    assert (d.worker.worker_id, d.reason) == ("w0", "prefix_hit")  # the report says nothing is there
    for i in range(10):
        tracker.finished("w0", f"r{i}")
    d = Router(RouterConfig(), inflight=tracker).route(REQ, four({"w0": 10}), match)
    assert (d.worker.worker_id, d.reason) == ("w0", "prefix_hit")  # all done: back to the holder


def test_without_a_tracker_dispatch_reads_the_report() -> None:
    ws = four({"w0": 3, "w1": 1, "w3": 2})
    assert Router(RouterConfig(policy="least_load")).route(REQ, ws).worker.worker_id == "w2"


def test_tracker_busy_counts_in_flight_per_worker() -> None:
    t = InflightTracker()
    t.routed("a", "r1")
    t.routed("a", "r2", prefill_tokens=30)
    t.routed("a", "r1")  # routed again under the same id: still one request
    t.routed("b", "r3")
    assert dict(t.busy()) == {"a": 2, "b": 1}
    t.finished("a", "r1")
    t.finished("a", "r1")  # twice: ignored
    t.finished("c", "nope")  # unknown: ignored
    assert dict(t.busy()) == {"a": 1, "b": 1}
    t.finished("a", "r2")
    t.finished("b", "r3")
    assert dict(t.busy()) == {} and t.in_flight("a") == 0


def test_config_rejects_an_unknown_load_signal() -> None:
    with pytest.raises(ValueError, match="load_signal must be one of dispatch, reported, got 'fresh'"):
        RouterConfig(load_signal="fresh")  # type: ignore[arg-type]


@settings(deadline=None, max_examples=200)
@given(st.lists(WORKER, max_size=12, unique_by=lambda w: w.worker_id), REQUEST, HOLDINGS)
def test_dispatch_equals_the_reference_on_loads_counted_in_flight(workers: list[WorkerState],
                                                                   request: RouteRequest,
                                                                   prefix: PrefixHoldings) -> None:
    """Each worker's load, put in the tracker as requests in flight and taken out of its report, gives
    the decision the reference gives on the report (the capacity filter reads the report: kept there)."""
    tracker = InflightTracker()
    for w in workers:
        for k in range(w.load):
            tracker.routed(w.worker_id, f"{w.worker_id}-{k}")
    blank = [replace(w, num_running=0, num_waiting=0, num_unreported=0, max_concurrency=0) for w in workers]
    router = Router(RouterConfig(), inflight=tracker)
    expected_workers = [replace(w, max_concurrency=0) for w in workers]
    try:
        expected = reference(request, expected_workers, prefix)
    except UnavailableError:
        with pytest.raises(UnavailableError):
            router.route(request, blank, prefix)
        return
    d = router.route(request, blank, prefix)
    assert (d.worker.worker_id, d.reason) == expected[:2]
    assert d.score == pytest.approx(expected[2])
