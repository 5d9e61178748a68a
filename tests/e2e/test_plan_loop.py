"""The whole loop with real processes: traffic → real planner (measured profiles, HiGHS) → new plan →
LocalActuator starts and drains workers → the gateway's served shares follow the new plan.

The embedded cluster runs as a user starts it (`heteroserve up --config FILE`), with the default
config except the demo model (`heteroserve demo`'s preset), one warm class (short prompts), a shorter
scale-down stabilization, and its profile cache seeded with profiles of that model measured on this
machine by the real profiler (tests/e2e/data/demo, written by the demo's first start; measuring afresh
is tested in tests/embedded/test_cli_cluster.py). Seeded, because the decision this test needs, P/D
for long prompts, is close on this machine: on these profiles (measured under load) a colocated
worker's prefill of 4×512 tokens took twice a prefill-only worker's, and ~1,200-token prompts plan P/D
(also with every step time scaled by 0.25-1: a uniformly faster machine); a measurement on a quieter
machine (1.65×) made colocated cheaper. A test of the loop must not depend on that noise.

Short prompts (the warm class) plan two colocated workers (min_replicas); long prompts make P/D pay,
so the planner must publish a plan with prefill and decode pools and no colocated one, which is a
different role mix.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from control_plane.plan_store import read_plan_sync
from heteroserve.client import Client
from heteroserve.embedded.config import DEFAULT_CONFIG_PATH
from heteroserve.embedded.processes import pid_alive
from heteroserve.embedded.state import worker_files
from placement.plan import Plan
from tests.e2e.embedded_cluster import admin, seed_profiles, wait_until

pytestmark = pytest.mark.slow

SHARE_TOLERANCE = 0.05  # served vs planned share, any class route, once the gateway runs the new plan
WORDS = ("alpha", "river", "stone", "cloud", "maple", "quartz", "violet", "ember", "harbor", "lumen")


MODEL = "demo"  # heteroserve.modelgen preset and model name


def long_prompt(seed: int, words: int = 280) -> str:
    """~1,200 tokens of the demo model's tokenizer, distinct per seed (no cached prefix: P/D is not
    skipped)."""
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(100)}" for _ in range(words))


def roles(plan: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pool in plan["pools"]:
        if int(pool.get("count", 0)) > 0:
            out[pool["role"]] = out.get(pool["role"], 0) + int(pool["count"])
    return out


def live_workers(run_dir: Path) -> dict[str, list[int]]:
    """Worker pids per pool whose process is alive (the LocalActuator's pid files)."""
    out: dict[str, list[int]] = {}
    for w in worker_files(run_dir):
        if pid_alive(int(str(w["pid"]))):
            out.setdefault(str(w["pool"]), []).append(int(str(w["pid"])))
    return out


def route_counts(routing: dict[str, Any]) -> dict[str, Any]:
    """Per (class, route): planned share and requests sent on it; per class: requests, from
    /admin/routing (served share × class requests)."""
    routes = {(c["request_class"], c["route"]): (c["planned_share"], round((c["served_share"] or 0)
                                                                            * c["requests"]))
              for c in routing["classes"]}
    totals = {c["request_class"]: c["requests"] for c in routing["classes"]}
    return {"version": routing["plan_version"], "routes": routes, "totals": totals}


def window_shares(start: dict[str, Any],
                  end: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(class, route) → (planned share, served share, class requests) over the requests between two
    `route_counts` of the same plan; classes without requests in between are left out."""
    out = {}
    for key, (planned, sent) in end["routes"].items():
        n = end["totals"][key[0]] - start["totals"].get(key[0], 0)
        if n > 0:
            out[key] = (planned, (sent - start["routes"].get(key, (0, 0))[1]) / n, n)
    return out


def write_config(path: Path, profile_cache: Path) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["profiling"]["cache_dir"] = str(profile_cache)
    config["planner"]["scale_down_stabilization_seconds"] = 5
    config["model"].update(name=MODEL, preset=MODEL)
    config["classes"] = config["classes"][:1]  # short prompts only: the long one would plan P/D at once
    path.write_text(yaml.safe_dump(config))
    return path


def healthy_pools(workers: dict[str, Any]) -> set[str]:
    return {w["pool"] for w in workers["workers"] if w["healthy"] and not w["draining"]}


def ready(http_url: str) -> bool:
    """The gateway's readiness probe: every served model has a healthy worker."""
    try:
        return httpx.get(f"{http_url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class LongTraffic:
    """Long prompts at about `rate` req/s from a thread until stopped; counts completions."""

    def __init__(self, state: dict[str, Any], rate: float) -> None:
        self.state, self.rate = state, rate
        self.done, self.errors = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LongTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        seed = 1000
        with Client(self.state["http_url"], api_key=self.state["api_key"], timeout_seconds=120) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                seed += 1
                try:
                    client.complete(long_prompt(seed), model=MODEL, max_tokens=16)
                    self.done += 1
                except Exception:  # counted: the assertion below names how many failed
                    self.errors += 1
                self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))


def test_traffic_change_replans_reshapes_the_fleet_and_the_gateway_follows(
        tmp_path: Path, pytestconfig: pytest.Config) -> None:
    run_dir = tmp_path / "run"
    cache = tmp_path / "profiles"
    cache.mkdir()
    seed_profiles(cache, tmp_path / "seed-model", preset=MODEL)
    config = write_config(tmp_path / "embedded.yaml", cache)
    up = subprocess.Popen([sys.executable, "-m", "heteroserve.cli", "up", "--run-dir", str(run_dir),
                           "--config", str(config)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_until("the cluster", lambda: up.poll() is None and (run_dir / "cluster.json").exists(), 240)
        state = json.loads((run_dir / "cluster.json").read_text())

        # 1. short prompts only: the warm classes' plan, colocated
        first = read_plan_sync(state["redis_url"])
        assert first is not None
        Plan.from_dict(first.plan)
        assert roles(first.plan) == {"colocated": 2}, first.plan["pools"]  # min_replicas 2
        before = wait_until("the colocated worker", lambda: live_workers(run_dir) or None, 30)
        assert set(before) == {"cpu-local-colocated"}, before
        # a live process is not yet a healthy worker in the gateway's view: wait for its readiness probe
        wait_until("the gateway's readiness", lambda: ready(state["http_url"]), 60)
        with Client(state["http_url"], api_key=state["api_key"]) as client:
            short = client.complete("hello there, how are you today", model=MODEL, max_tokens=4)
        assert short.route.pool == "cpu-local-colocated" and not short.route.disaggregated

        # 2. long prompts: the measured profiles make P/D pay; the real planner publishes a new plan
        with LongTraffic(state, rate=1.0) as traffic:
            def pd_plan() -> Any:
                record = read_plan_sync(state["redis_url"])
                return record if record is not None and "prefill" in roles(record.plan) else None

            second = wait_until("a P/D plan", pd_plan, 90)
            assert second.version > first.version
            mix = roles(second.plan)
            assert mix.get("prefill", 0) >= 1 and mix.get("decode", 0) >= 1, mix
            assert mix != roles(first.plan)
            planned = {p["name"]: int(p["count"]) for p in second.plan["pools"]}

            # 3. the actuator starts the new pools' workers and drains the colocated one
            def fleet_matches() -> dict[str, list[int]] | None:
                live = live_workers(run_dir)
                ok = all(len(live.get(pool, [])) == n for pool, n in planned.items())
                return live if ok and set(live) <= {p for p, n in planned.items() if n > 0} else None

            after = wait_until("the fleet of the new plan", fleet_matches, 150)
            for pid in before["cpu-local-colocated"]:
                if planned.get("cpu-local-colocated", 0) == 0:
                    assert not pid_alive(pid), "the colocated worker was not drained"
            assert {p for p in after} == {p for p, n in planned.items() if n > 0}

            # 4. the gateway runs the new plan. Its ledger counts from adoption, which precedes the
            # new workers (publish, then actuate): requests in between go off-plan (`no_route`). So
            # the shares are compared over the requests served once the new fleet is up.
            wait_until("the gateway on the new plan",
                       lambda: admin(state, "routing")["plan_version"] >= second.version, 30)
            wanted = {pool for pool, n in planned.items() if n > 0}
            wait_until("the new pools healthy in the gateway's view",
                       lambda: wanted <= healthy_pools(admin(state, "workers")), 60)
            with Client(state["http_url"], api_key=state["api_key"], timeout_seconds=120) as client:
                probe = client.complete(long_prompt(7), model=MODEL, max_tokens=8)
            assert probe.route.disaggregated and probe.route.pool in planned, probe.route
            start = route_counts(admin(state, "routing"))
            served_before = traffic.done
            wait_until("requests on the new fleet", lambda: traffic.done >= served_before + 10, 90)
            routing = admin(state, "routing")
        assert traffic.errors == 0, f"{traffic.errors} long requests failed"
        assert routing["plan_version"] == start["version"], "another plan came in between"

        end = route_counts(routing)
        shares = window_shares(start, end)
        assert max(n for _, _, n in shares.values()) >= 8, shares  # the long class ran on the new fleet
        for (request_class, route), (planned_share, served_share, _n) in shares.items():
            assert abs(served_share - planned_share) <= SHARE_TOLERANCE, (request_class, route, shares)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=150)
