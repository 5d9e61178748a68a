"""The array-based router against a plain per-worker reference (the pipeline's formulas written as
Python loops over WorkerStates): the same worker, reason and score on random clusters, holdings,
pools, exclusions and sessions (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import UnavailableError
from control_plane.router import PrefixHoldings, Router, RouterConfig, RouteRequest, WorkerState

CREDITS = {"device": 1.0, "redis": 0.5, "disk": 0.25}
WEIGHTS = {"prefix": 1.0, "load": 0.5, "affinity": 0.2}
POOLS = ["p0", "p1", "p2"]


def reference(request: RouteRequest, workers: list[WorkerState], prefix: PrefixHoldings,
              scoring: str = "weighted") -> tuple[str, str, float]:
    ws = sorted(workers, key=lambda w: w.worker_id)
    for keep in (lambda w: w.healthy and not w.draining, lambda w: w.model == request.model,
                 lambda w: w.role == request.role, lambda w: not request.pools or w.pool in request.pools,
                 lambda w: w.worker_id not in request.exclude):
        ws = [w for w in ws if keep(w)]
        if not ws:
            raise UnavailableError("none")
    ws = [w for w in ws if w.max_concurrency <= 0 or w.load < w.max_concurrency] or ws
    if len(ws) == 1:
        return ws[0].worker_id, "only_candidate", 0.0
    nb, peak = prefix.num_blocks, max(w.load for w in ws)
    totals = []
    for w in ws:
        p = 0.0 if nb <= 0 else max(CREDITS[t] * min(prefix.blocks_for(w.worker_id, t), nb) / nb  # type: ignore[arg-type]
                                    for t in CREDITS)
        aff = 1.0 if request.affinity_worker and w.worker_id == request.affinity_worker else 0.0
        total = 0.0
        for name, value in (("prefix", p), ("load", 1.0 - w.load / (peak + 1)), ("affinity", aff)):
            total += WEIGHTS[name] * value
        if scoring == "cost":  # scorers/cost.py with the defaults: block 16, queue weight 1, 32 per request
            uncached = max(request.num_prompt_tokens, 16 * nb) - (16 * nb) * p
            total = -(uncached + 1.0 * (32.0 * w.load))
        totals.append(total)
    best = min(range(len(ws)), key=lambda i: (-totals[i], ws[i].load, ws[i].worker_id))
    idlest = min(range(len(ws)), key=lambda i: (ws[i].load, ws[i].worker_id))
    top, low = ws[best].load, ws[idlest].load
    if top - low > 8 and top > 1.5 * low:
        return ws[idlest].worker_id, "imbalance_guard", totals[idlest]
    w = ws[best]
    reason = ("prefix_hit" if prefix.worker_blocks.get(w.worker_id, 0) > 0 else
              "session_affinity" if request.affinity_worker == w.worker_id else "load")
    return w.worker_id, reason, totals[best]


WORKER = st.builds(WorkerState, worker_id=st.sampled_from([f"w{i}" for i in range(12)]), address=st.just("x"),
                   model=st.sampled_from(["m", "m", "other"]), role=st.sampled_from(["colocated", "prefill"]),
                   pool=st.sampled_from(POOLS), healthy=st.sampled_from([True, True, True, False]),
                   draining=st.sampled_from([False, False, False, True]), num_running=st.integers(0, 20),
                   num_waiting=st.integers(0, 3), num_unreported=st.integers(0, 2),
                   max_concurrency=st.sampled_from([0, 8, 16]))
IDS = st.sampled_from([f"w{i}" for i in range(14)])
HOLDINGS = st.builds(PrefixHoldings, num_blocks=st.integers(0, 8),
                     worker_blocks=st.dictionaries(IDS, st.integers(0, 9), max_size=6),
                     shared_blocks=st.dictionaries(st.sampled_from(["redis", "disk"]), st.integers(0, 8)),
                     local_blocks=st.dictionaries(st.tuples(IDS, st.just("disk")), st.integers(0, 8),
                                                  max_size=3))
REQUEST = st.builds(RouteRequest, model=st.just("m"), num_prompt_tokens=st.sampled_from([0, 40, 200]),
                    role=st.sampled_from(["colocated", "colocated", "prefill"]),
                    pools=st.frozensets(st.sampled_from(POOLS), max_size=2),
                    affinity_worker=st.one_of(st.just(""), IDS), exclude=st.frozensets(IDS, max_size=3))


@settings(deadline=None, max_examples=300)
@given(st.lists(WORKER, max_size=12, unique_by=lambda w: w.worker_id), REQUEST, HOLDINGS,
       st.sampled_from(["weighted", "cost"]))
def test_router_matches_reference(workers: list[WorkerState], request: RouteRequest,
                                  prefix: PrefixHoldings, scoring: str) -> None:
    config = RouterConfig(scoring=scoring)  # type: ignore[arg-type]
    try:
        expected = reference(request, workers, prefix, scoring)
    except UnavailableError:
        with pytest.raises(UnavailableError):
            Router(config).route(request, workers, prefix)
        return
    for given_as in (workers, tuple(workers)):
        d = Router(config).route(request, given_as, prefix)
        assert (d.worker.worker_id, d.reason, d.score) == expected


def test_a_tuple_snapshot_is_reused_and_a_list_is_rebuilt() -> None:
    router = Router()
    snapshot = tuple(WorkerState(f"w{i}", "x", "m", num_running=i) for i in range(3))
    assert router.table(snapshot) is router.table(snapshot)
    listed = list(snapshot)
    first = router.table(listed)
    listed[0] = WorkerState("w0", "x", "m", num_running=9)
    assert router.table(listed) is not first
    assert router.route(RouteRequest(model="m"), listed).worker.worker_id == "w1"
