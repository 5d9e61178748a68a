"""The embedded cluster of `bench chaos`, with the handles its faults need.

Wraps `heteroserve.embedded.EmbeddedCluster` (Redis, planner with its LocalActuator and workers,
gateway) and adds a standby planner. Fault handles: the pid of a worker by role, Redis stop/start on the
same port, corrupting KV blocks in Redis and on disk, the leader planner's kill, the checksum-failure
counters of the workers, and a scan of every log file for the run's secrets.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from common.localredis import free_port
from control_plane.planner.leader import DEFAULT_LOCK_KEY
from heteroserve.embedded.config import DEFAULT_CONFIG_PATH, EmbeddedConfig, load_embedded_config
from heteroserve.embedded.launcher import EmbeddedCluster
from heteroserve.embedded.processes import ManagedProcess, heteroserve_command, pid_alive
from heteroserve.embedded.state import worker_files
from placement.profile_file import load_node_profile

# Warm traffic every chaos plan covers (on top of the default config's short classes): ~1,360-token
# prompts, as the chaos streams' long half sends. On the seeded profiles they cannot meet TTFT on a
# colocated worker, so the planner must run a prefill pool and a decode pool (on CSD, the cheapest
# decoder that admits prompts of 250+ tokens), while the short classes (under the gateway's 256-token
# P/D threshold) keep the colocated pool: every kind of worker `bench chaos` kills is in the plan.
LONG_WARM_CLASS = {"slo_class": "interactive", "input_tokens": 1360, "output_tokens": 8,
                   "min_rate_per_s": 0.5}
CSD_NODES = 2  # so the availability floor (min_replicas 2) holds on the CSD pool too
# Profiles measured on this machine by `heteroserve up` (the same files as tests/e2e/data), seeded into
# the run's profile cache. Whether these prompts pay for P/D here is within measurement noise (a quiet
# machine's fresh profile serves even 3,000-token prompts colocated within TTFT), and this benchmark
# tests failure handling, not that decision, so its plan must not depend on the noise.
SEEDED_PROFILES = Path(__file__).with_name("data") / "chaos_profiles"


def chaos_document(disk_tier_mb: int) -> dict[str, Any]:
    """The default embedded config with the chaos changes: disk tier cap, long warm class, CSD nodes."""
    document: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["workers"]["disk_tier_mb"] = disk_tier_mb
    document["classes"] = [*document.get("classes", []), LONG_WARM_CLASS]
    document["inventory"] = {**document.get("inventory", {}), "csd-local": CSD_NODES}
    return document


class ChaosCluster:
    def __init__(self, run_dir: Path, *, disk_tier_mb: int) -> None:
        self.run_dir = run_dir
        self.config_path = run_dir / "chaos.yaml"
        document = chaos_document(disk_tier_mb)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(document))
        self.config = load_embedded_config(self.config_path)
        seed_profiles(self.config, run_dir)
        self.embedded = EmbeddedCluster(self.config, run_dir, config_path=self.config_path)
        self.standby: ManagedProcess | None = None
        self.initial_workers = 0
        self._corrupted: dict[str, bytes] = {}  # Redis key or file path -> the corrupt content written

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        state = self.embedded.start()
        self.grpc_address, self.http_url = state.grpc_address, state.http_url
        self.api_key, self.model, self.redis_url = state.api_key, state.model, state.redis_url
        argv = heteroserve_command("planner", "--actuator", "local", "--redis-url", self.redis_url,
                                   "--run-dir", str(self.run_dir), "--model-dir", state.model_dir,
                                   "--planner-id", "standby-planner", "--metrics-host", "127.0.0.1",
                                   "--metrics-port", str(free_port()), "--config", str(self.config_path),
                                   "--tls-dir", str(self.embedded.tls_dir / "planner"),
                                   "--worker-tls-dir", str(self.embedded.tls_dir / "worker"))
        for path in self.embedded.profile_paths:  # the leader's measured profiles, so both plan alike
            argv += ["--profile", str(path)]
        self.standby = ManagedProcess("planner-standby", argv, self.embedded.logs_dir / "planner-standby.log",
                                      self.embedded._env())
        self.initial_workers = len(self.workers())

    def stop(self) -> None:
        if self.standby is not None:
            self.standby.stop(timeout_seconds=30)
        self.embedded.stop()

    # workers ---------------------------------------------------------------------------------------
    def workers(self) -> list[dict[str, Any]]:
        return [w for w in worker_files(self.run_dir) if pid_alive(int(str(w["pid"])))]

    def worker_pid(self, kind: str) -> int | None:
        """The pid of a live worker of this kill kind (see `kill_kind`); for a role, a worker of that
        role on a CSD device when no other runs (the plan may decode on CSD only)."""
        chosen = pick_worker(self.workers(), kind)
        return None if chosen is None else int(str(chosen["pid"]))

    def declares_csd(self) -> bool:
        """Whether the cluster's config has a CSD node type the plan may use."""
        return any(node_type.kind == "csd" for node_type in self.config.node_types)

    async def wait_for_workers(self, timeout_seconds: float) -> bool:
        """Until the gateway lists as many healthy workers as at start (the actuator replaced the dead)."""
        deadline = time.monotonic() + timeout_seconds
        headers = {"authorization": f"Bearer {self.embedded.admin_token}"}
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    reply = await client.get(f"{self.http_url}/admin/workers", headers=headers)
                    healthy = [w for w in reply.json()["workers"] if w["healthy"] and not w["draining"]]
                    if len(healthy) >= self.initial_workers:
                        return True
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                await asyncio.sleep(0.5)
        return False

    async def restart_workers_memory(self) -> bool:
        """kill -9 every worker: their replacements start with empty KV pools, so they read the tiers."""
        for worker in self.workers():
            os.kill(int(str(worker["pid"])), signal.SIGKILL)
        await asyncio.sleep(1.0)
        return await self.wait_for_workers(timeout_seconds=240)

    def checksum_failures(self) -> float:
        total = 0.0
        for worker in self.workers():
            try:
                text = httpx.get(f"http://127.0.0.1:{worker['metrics_port']}/metrics", timeout=3).text
            except httpx.HTTPError:
                continue
            total += sum(float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("heteroserve_cache_checksum_failures_total"))
        return total

    # Redis and disk ----------------------------------------------------------------------------------
    def stop_redis(self) -> None:
        assert self.embedded.redis is not None, "cluster not started"
        self.embedded.redis.stop()

    def start_redis(self) -> None:
        assert self.embedded.redis is not None, "cluster not started"
        self.embedded.redis.start()

    def corrupt_redis_blocks(self, count: int) -> int:
        client = redis.Redis.from_url(self.redis_url)
        rng = random.Random(0)
        done = 0
        try:
            for key in client.scan_iter(match="hs:kv:*", count=500):
                value = client.get(key)
                if not value:
                    continue
                bad = rng.randbytes(len(value))
                client.set(key, bad, keepttl=True)
                self._corrupted[f"redis:{key.decode()}"] = bad
                done += 1
                if done >= count:
                    break
        finally:
            client.close()
        return done

    def corrupt_disk_blocks(self, per_tier: int) -> int:
        """Flip 64 bytes in the middle of up to `per_tier` block files of each worker's disk tier."""
        rng = random.Random(1)
        root = self.run_dir / "disk"
        tiers = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
        files = [path for tier in tiers for path in sorted(tier.rglob("*.kv"))[:per_tier]]
        for path in files:
            data = bytearray(path.read_bytes())
            middle = len(data) // 2
            data[middle:middle + 64] = rng.randbytes(len(data[middle:middle + 64]))
            path.write_bytes(bytes(data))
            self._corrupted[f"disk:{path}"] = bytes(data)
        return len(files)

    def corrupt_entries_changed(self) -> dict[str, int]:
        """How many corrupted entries no longer hold the corrupt bytes (dropped, or rewritten good)."""
        client = redis.Redis.from_url(self.redis_url)
        changed = {"redis": 0, "disk": 0}
        try:
            for name, bad in self._corrupted.items():
                kind, _, where = name.partition(":")
                if kind == "redis":
                    now = client.get(where)
                else:
                    path = Path(where)
                    now = path.read_bytes() if path.exists() else None
                changed[kind] += now != bad
        finally:
            client.close()
        return changed

    def max_disk_tier_bytes(self) -> int:
        root = self.run_dir / "disk"
        if not root.is_dir():
            return 0
        sizes = [sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) for d in root.iterdir()]
        return max(sizes, default=0)

    # planner ---------------------------------------------------------------------------------------
    def kill_leader_planner(self, timeout_seconds: float) -> dict[str, Any]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            holder = _text(client.get(DEFAULT_LOCK_KEY))
            standby = holder.startswith("standby-planner")
            victim = self.standby if standby else self.embedded.processes.get("planner")
            if victim is None:
                return {"seconds": None, "error": f"leader {holder!r} is not a planner of this run"}
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            while time.monotonic() - killed_at < timeout_seconds:
                now = _text(client.get(DEFAULT_LOCK_KEY))
                if now and now != holder:
                    return {"seconds": round(time.monotonic() - killed_at, 2), "old_leader": holder,
                            "new_leader": now, "lock_ttl_ms": self.config.planner.lock_ttl_ms,
                            "interval_seconds": self.config.planner.interval_seconds}
                time.sleep(0.1)
            return {"seconds": None, "old_leader": holder, "error": "no takeover"}
        finally:
            client.close()

    def secrets_in_logs(self) -> int:
        secrets = (self.embedded.api_key, self.embedded.admin_token, self.embedded.cluster_token)
        texts = [p.read_text(errors="replace") for p in self.run_dir.rglob("*.log")]
        return sum(1 for text in texts for s in secrets if s in text)


def seed_profiles(config: EmbeddedConfig, run_dir: Path) -> None:
    """`SEEDED_PROFILES` where the launcher's profile cache looks for them on this machine (the model
    generated now, as `EmbeddedCluster` would: same preset and seed, same bytes, same hash)."""
    from heteroserve.embedded.profiling import cache_path, local_node_types
    from heteroserve.modelgen import create_model

    model_dir = config.model_dir(run_dir)
    if not (model_dir / "config.json").exists():
        create_model(model_dir, preset=config.model.preset, seed=config.model.seed)
    cache = config.profile_cache_dir(run_dir)
    cache.mkdir(parents=True, exist_ok=True)
    seeded = {load_node_profile(p).node_type: p for p in sorted(SEEDED_PROFILES.glob("*.profile.json"))}
    for node in local_node_types(config):
        cache_path(cache, model_dir, node).write_text(seeded[node.name].read_text())


def kill_kind(worker: dict[str, Any]) -> str:
    """`csd` for a worker on a CSD device (whatever its role), else its role (colocated, prefill,
    decode): the kinds `bench chaos` must each kill at least once."""
    return "csd" if worker.get("device") == "csd" else str(worker.get("role", ""))


def pick_worker(workers: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The first worker of `kind`; for a role with none, the first of that role on a CSD device."""
    exact = [w for w in workers if kill_kind(w) == kind]
    fallback = [w for w in workers if kind != "csd" and w.get("role") == kind]
    found = exact or fallback
    return found[0] if found else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
