"""The gateway's router view on the hot path: one `WorkerTable` per membership, loads moved in place.

A real worker process answers the stats polls; the view's table must stay the same object across
decisions, routed/finished requests and stats reports, with loads equal to what a fresh snapshot
counts, and must be rebuilt when the membership changes (a worker fails, joins or leaves).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.localredis import free_port
from common.registry import WorkerRecord
from control_plane.orchestrator.cluster import ClusterView
from control_plane.router import InflightTracker, Router, RouteRequest
from tests.control_plane.gateway.gateway_procs import CLUSTER_TOKEN, start_worker

pytestmark = pytest.mark.slow


def record(worker_id: str, port: int) -> WorkerRecord:
    return WorkerRecord(worker_id=worker_id, address=f"127.0.0.1:{port}", node_type="cpu", device="cpu",
                        role="colocated", model="tiny", pool="default", kv_blocks=0, max_num_seqs=0,
                        block_size=16, started_at=0.0)


async def test_table_is_kept_per_membership_and_its_loads_move_in_place(tiny_model_dir: Path) -> None:
    port = free_port()
    inflight = InflightTracker()
    view = ClusterView(None, CLUSTER_TOKEN, inflight, unary_timeout_seconds=2.0)
    view.add_static(record("h-0", port))
    worker = start_worker(tiny_model_dir, None, "h-0", port=port)
    try:
        await view.refresh()
        table = view.table()
        assert view.table() is table and [w.healthy for w in table.states] == [True]

        def loads() -> tuple[list[int], list[int]]:
            return table.load.tolist(), [w.load for w in view.snapshot()]

        inflight.routed("h-0", "r1")
        inflight.routed("h-0", "r2")
        assert loads() == ([2], [2])  # routed after the last report: unreported, counted in place
        router = Router()
        decision = router.route(RouteRequest(model="tiny"), view.table(), None)
        assert decision.worker.worker_id == "h-0" and router.table(view.table()) is table
        inflight.finished("h-0", "r1")
        assert loads() == ([1], [1])
        await view.refresh()  # a new report (r2 is not running on the worker: it was never sent)
        assert view.table() is table and loads() == ([0], [0])
        inflight.finished("h-0", "r2")  # routed before that report: the report already had it
        assert loads() == ([0], [0])

        view.mark_failed("h-0")  # membership change: rebuilt, the worker no longer live
        rebuilt = view.table()
        assert rebuilt is not table and rebuilt.num_live == 0
        await view.refresh()
        again = view.table()
        assert again is not rebuilt and again.num_live == 1
        worker.kill()
        await view.refresh()
        assert view.table().num_live == 0
    finally:
        worker.stop()
        await view.stop()
