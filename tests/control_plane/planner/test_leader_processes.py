"""Leader election with real planner processes: one leads; kill it (SIGKILL); the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import redis
import yaml

from control_plane.plan_store import read_plan_sync
from control_plane.planner.leader import DEFAULT_LOCK_KEY
from control_plane.traffic import TrafficConfig, TrafficRecorder
from placement.profile_file import save_node_profile
from tests.control_plane.planner.fleet import TINY, cpu_profile

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def fast_config(tmp_path: Path) -> Path:
    data = yaml.safe_load((ROOT / "deploy" / "examples" / "embedded.yaml").read_text())
    data["planner"].update(interval_seconds=1.0, tick_seconds=0.3, min_solve_gap_seconds=0.0,
                           lock_ttl_ms=1500)
    # a measured profile of cpu-local, so that a load step needs more workers
    save_node_profile(tmp_path / "cpu-local.json", cpu_profile())
    data["profiles"] = [{"path": "cpu-local.json"}]
    data["model"]["architecture"] = asdict(TINY)
    # one worker per pool at rest, so the load step below changes the plan (with the availability floor
    # of 2, the plan at rest already covers the step and the new leader would have nothing to publish)
    data.setdefault("options", {})["min_replicas"] = 1
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_planner(config: Path, redis_url: str, planner_id: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "heteroserve.cli", "planner", "--config", str(config), "--redis-url",
            redis_url, "--actuator", "none", "--planner-id", planner_id]
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return None


def test_two_planners_one_leads_and_the_other_takes_over_after_a_kill(redis_url: str, tmp_path: Path) -> None:
    config = fast_config(tmp_path)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    a = start_planner(config, redis_url, "planner-a", tmp_path / "a.log")
    procs = [a]
    try:
        leads_a = wait_for(lambda: client.get(DEFAULT_LOCK_KEY) == "planner-a", 30)
        assert leads_a, (tmp_path / "a.log").read_text()
        b = start_planner(config, redis_url, "planner-b", tmp_path / "b.log")
        procs.append(b)
        first = wait_for(lambda: read_plan_sync(redis_url), 30)
        assert first is not None and first.leader == "planner-a"
        time.sleep(3.0)  # b is running and polling the lock all this time
        assert client.get(DEFAULT_LOCK_KEY) == "planner-a"
        assert all(r.leader == "planner-a" for r in [read_plan_sync(redis_url)] if r)
        os.kill(a.pid, signal.SIGKILL)  # no release: b must wait for the lease to expire
        a.wait(timeout=10)
        killed_at = time.monotonic()
        leads_b = wait_for(lambda: client.get(DEFAULT_LOCK_KEY) == "planner-b", 10)
        assert leads_b, (tmp_path / "b.log").read_text()
        assert time.monotonic() - killed_at <= 1.5 + 1.5  # ttl + one renew period, with slack
        # the new leader adopted the plan and keeps planning: a load step makes it publish, as itself
        recorder = TrafficRecorder(TrafficConfig(redis_url=redis_url, flush_interval_seconds=0.2))
        try:
            for _ in range(40):  # a burst: ~8 req/s over the 5 s peak window, several workers
                recorder.record("chat", 100, 20, 0.05, 0.01, True)
            record = wait_for(lambda: (r := read_plan_sync(redis_url)) and r.leader == "planner-b" and r, 15)
        finally:
            recorder.close()
        assert record is not None and record.version > first.version, (tmp_path / "b.log").read_text()
        def workers(plan: dict[str, list[dict[str, int]]]) -> int:
            return sum(p["count"] for p in plan["pools"])

        assert workers(record.plan) > workers(first.plan)  # type: ignore[arg-type]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=20)
        client.close()
    assert all(p.poll() is not None for p in procs)
