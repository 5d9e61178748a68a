"""`heteroserve up` / `status` / `down` from subprocesses, as a user runs them; nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from control_plane.plan_store import read_plan_sync
from heteroserve.client import Client
from heteroserve.embedded.processes import pid_alive
from placement.plan import Plan

pytestmark = pytest.mark.slow


def heteroserve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heteroserve.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "160"})


def all_pids(run_dir: Path) -> list[int]:
    state = json.loads((run_dir / "cluster.json").read_text())
    workers = [json.loads(p.read_text())["pid"] for p in (run_dir / "workers").glob("*.json")]
    return [state["launcher_pid"], *(p["pid"] for p in state["processes"]), *workers]


def wait_for_traffic(redis_url: str, request_class: str, timeout: float = 5.0) -> int:
    """Requests of `request_class` in the traffic statistics (the gateway flushes every second)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            n = sum(int(client.hget(key, f"{request_class}|n") or 0)
                    for key in client.scan_iter("heteroserve:traffic:*"))
            if n or time.monotonic() > deadline:
                return n
            time.sleep(0.2)
    finally:
        client.close()


def test_up_status_down(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = subprocess.Popen([sys.executable, "-m", "heteroserve.cli", "up", "--run-dir", str(run_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "cluster.json").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.5)
        state = json.loads((run_dir / "cluster.json").read_text())
        pids = all_pids(run_dir)
        assert len(pids) >= 1 + 3 + 1  # launcher, redis + gateway + planner, the plan's workers
        assert oct((run_dir / "cluster.json").stat().st_mode)[-3:] == "600"
        # the first start measured a profile of every node type, and the planner compiled them
        profiles = sorted(p.name.split("-native-")[1] for p in (run_dir / "profiles").glob("*.json"))
        assert profiles == ["cpu-local.json", "csd-local.json"], profiles
        record = read_plan_sync(state["redis_url"])
        assert record is not None
        plan = Plan.from_dict(record.plan)  # the one plan document
        assert plan.demand is not None and plan.demand["basis"] == "peak"
        open_pools = {p.name for p in plan.pools}

        with Client(state["http_url"], api_key=state["api_key"]) as client:
            done = client.complete("hello there, how are you today", model="tiny", max_tokens=5)
        assert done.usage.completion_tokens == 5 and done.route.pool in open_pools
        assert done.route.request_class == "tiny/interactive/i0o0"
        # the gateway recorded it for the planner
        assert wait_for_traffic(state["redis_url"], "tiny/interactive/i0o0") == 1

        status = heteroserve("status", "--run-dir", str(run_dir))
        assert status.returncode == 0, status.stderr
        for expected in ("plan", "v1", *open_pools, f"${plan.cost_per_hour:.2f}/h", "leader"):
            assert expected in status.stdout, status.stdout

        again = heteroserve("up", "--run-dir", str(run_dir))
        assert again.returncode != 0 and "already running" in again.stderr

        down = heteroserve("down", "--run-dir", str(run_dir), timeout=180)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=30) == 0
        time.sleep(0.5)
        alive = [p for p in pids if pid_alive(p)]
        assert not alive, f"left running: {alive}"
        assert not (run_dir / "cluster.json").exists()
        assert not list((run_dir / "workers").glob("*.json"))
        assert "no cluster running" in heteroserve("down", "--run-dir", str(run_dir)).stdout
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)
