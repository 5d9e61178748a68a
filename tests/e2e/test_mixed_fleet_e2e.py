"""A mixed embedded cluster end to end: `heteroserve up --config deploy/examples/mixed.yaml` (native
cpu and csd node types, a vLLM cpu node type) serves a shortened demo workload through the gateway.

The native node types' profiles are seeded (the committed ones of tests/e2e/data, measured on this
machine; measuring them afresh is tested in tests/embedded/test_cli_cluster.py); the vLLM node type's
is measured by this first start, as a user's would be. Asserted: the vLLM profile was measured and
cached under its engine (colocated role only), no request failed, the plan the gateway runs gives
the vLLM pool a share of the traffic, and the vLLM worker served requests: the SDK's routes name it,
and its /metrics carries vLLM's own `vllm:*` families with finished requests.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from control_plane.plan_store import read_plan_sync
from heteroserve.embedded.config import ROOT
from heteroserve.embedded.demo import BASE, BUNDLED_TRACE, run_workload
from heteroserve.embedded.report import TimelinePoint
from heteroserve.embedded.state import read_state, worker_files
from heteroserve.embedded.workload import Phase, PromptMaker, WorkloadConfig, build_schedule
from placement.profile_file import load_node_profile
from tests.e2e.embedded_cluster import admin, seed_profiles, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(2400)]
MIXED = ROOT / "deploy" / "examples" / "mixed.yaml"
VLLM_POOL = "cpu-vllm-colocated"
# The demo's phases, shortened: its base rates, then the chat step (the planner has to grow the fleet
# beyond the single vLLM worker the inventory allows).
PHASES = (Phase("base", 30.0, BASE), Phase("step", 40.0, {**BASE, "chat": 2 * BASE["chat"]}))


def write_config(path: Path, profile_cache: Path) -> Path:
    config = yaml.safe_load(MIXED.read_text())
    config["profiling"]["cache_dir"] = str(profile_cache)
    path.write_text(yaml.safe_dump(config))
    return path


def vllm_requests_finished(metrics_url: str) -> float:
    """Sum of vLLM's own `vllm:request_success_total` series on a worker's /metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    series = re.findall(r"^vllm:request_success_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(v) for v in series)


def vllm_shares(routing: dict[str, Any]) -> dict[str, float]:
    """Class → planned share of the vLLM pool in the plan the gateway runs (/admin/routing)."""
    return {c["request_class"]: c["planned_share"] for c in routing["classes"]
            if c["pool"] == VLLM_POOL and c["planned_share"] > 0}


def test_mixed_cluster_serves_the_demo_workload_with_the_vllm_pool_in_the_plan(tmp_path: Path) -> None:
    run_dir, cache = tmp_path / "run", tmp_path / "profiles"
    cache.mkdir()
    seed_profiles(cache, tmp_path / "seed-model")
    config = write_config(tmp_path / "mixed.yaml", cache)
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([sys.executable, "-m", "heteroserve.cli", "up", "--run-dir", str(run_dir),
                           "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until("the mixed cluster", lambda: up.poll() is not None or (run_dir / "cluster.json").exists(),
                   1500, interval=2)
        assert up.poll() is None, (tmp_path / "up.log").read_text()[-4000:]
        measured = [load_node_profile(p) for p in cache.glob("*-vllm-cpu-vllm.json")]
        assert len(measured) == 1 and set(measured[0].roles) == {"colocated"}, measured
        # TPOT from completion times: a vLLM decode step on CPU takes milliseconds; the first-to-last
        # token span read ~0.03 ms here, because vLLM hands a lagging stream its tokens in bunches
        assert min(p.seconds for p in measured[0].roles["colocated"].decode) >= 5e-4, measured[0].roles
        assert not measured[0].transfer and measured[0].kv_bytes_per_token > 0
        state = read_state(run_dir)

        workload = WorkloadConfig(trace=BUNDLED_TRACE, phases=PHASES)
        prompts = PromptMaker(Path(state.model_dir) / "tokenizer.json",
                              (ROOT / "heteroserve" / "modelgen" / "corpus.txt").read_text(), workload)
        schedule = build_schedule(workload, prompts)
        timeline: list[TimelinePoint] = []
        console = Console(file=io.StringIO(), width=160)
        results, _ = asyncio.run(run_workload(state, schedule, console, timeline))
        routing = admin(json.loads((run_dir / "cluster.json").read_text()), "routing")
        record = read_plan_sync(state.redis_url)
        vllm_workers = [w for w in worker_files(run_dir) if w["pool"] == VLLM_POOL]
        finished = sum(vllm_requests_finished(f"http://127.0.0.1:{w['metrics_port']}/metrics")
                       for w in vllm_workers)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=300)
        log.close()

    failed = [r.error for r in results if not r.ok]
    assert len(results) == len(schedule) >= 150 and not failed, failed[:5]
    assert record is not None and routing["plan_version"] == record.version, (routing["plan_version"], record)
    assert vllm_shares(routing), routing["classes"]
    by_pool: dict[str, int] = {}
    for r in results:
        assert r.route is not None
        by_pool[r.route.pool] = by_pool.get(r.route.pool, 0) + 1
    assert by_pool.get(VLLM_POOL, 0) > 0, by_pool
    assert finished >= 1, "the vLLM worker's vllm:request_success_total stayed at 0"
    plans = {p.plan_version: p.desired for p in timeline}
    print(f"requests per pool {by_pool}; plans {plans}; vLLM shares {vllm_shares(routing)}; "
          f"vLLM finished {finished}")
