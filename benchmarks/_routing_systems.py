"""The systems `bench routing` and `bench system` compare, as real processes.

Every system has its own Redis and N colocated workers started as shipped (`--redis-url` for
registration and KV events, `--shared-tier-url` on the same Redis: the shared KV tier on), so no system
sees another's caches; the workers run our engine (`--engine native`) or vLLM (`--engine vllm`: vLLM's
KV events feed the cluster prefix index, its KV connector reaches the shared tier). Worker i gets the
same CPU budget either way: 1 OpenMP thread, and for vLLM engines the thread bound to core i mod C
(`VLLM_CPU_OMP_THREADS_BIND`, no reserved core), as `bench system` binds its plain vLLM servers. All
workers of a system start at once (a vLLM engine takes ~50 s to start). In front of them:
- ours: a heteroserve gateway with `--policy` round_robin, least_load or prefix_aware (REST);
- the peer: `vllm-router --policy P` (cache_aware, power_of_two or round_robin) over the workers'
  OpenAI-compatible HTTP fronts (`heteroserve worker --openai-port`) or over vLLM's own OpenAI servers
  (`bench system`). Its settings: `peer_flags()` (its defaults for routing, health checks that do not
  misfire on this loaded machine; see there).
The replay itself is `benchmarks/_replay.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks._cluster import BIN, CLUSTER_TOKEN, LocalCluster, wait_for_workers
from common.lifetime import die_with_parent
from common.localredis import free_port
from heteroserve.embedded.processes import NotReadyError

API_KEY = "sk-bench-routing"
OURS = ("round_robin", "least_load", "prefix_aware")
PEER_POLICIES = ("cache_aware", "power_of_two", "round_robin")
PEER_PREFIX = "vllm_router_"
ENGINES = ("native", "vllm")
VLLM_ROUTER = str(Path(sys.executable).parent / "vllm-router")
KV_CACHE_MB = 256  # every engine's KV pool, ours and vLLM's alike
VLLM_MEMORY_FRACTION = 0.1  # vLLM's gpu_memory_utilization (on CPU: host share); KV is sized exactly


def peer_flags(policy: str) -> list[str]:
    """vllm-router's flags besides addresses: `policy` with the router's own defaults for it
    (cache_aware: cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5, eviction
    every 120 s, 2^25 characters of tree per worker; retries and circuit breaker on), and two changes
    that concern failure detection only, not routing: a health-check timeout of 30 s instead of 5 s
    (at load averages of 20-60 on this 2-core machine a worker's /health can take longer than 5 s, and
    three misses in a row mark a live worker down) and a startup probe every 1 s instead of 30 s."""
    return ["--policy", policy, "--log-level", "info", "--worker-startup-check-interval", "1",
            "--health-check-timeout-secs", "30"]


def vllm_env(index: int) -> dict[str, str]:
    """Environment of the `index`-th vLLM engine: one OpenMP thread bound to core index mod C of the
    cores this process may use, no core reserved for the front end, no usage reporting."""
    cores = sorted(os.sched_getaffinity(0))
    return {"VLLM_CPU_OMP_THREADS_BIND": str(cores[index % len(cores)]), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_NO_USAGE_STATS": "1", "VLLM_LOGGING_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def worker_command(model_dir: Path, worker_id: str, redis_url: str, engine: str, index: int,
                   extra: tuple[str, ...] = (), shared_tier: bool = True) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of one colocated `heteroserve worker`; the shared tier on (as shipped) unless
    `shared_tier` is False (an ablation)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: one of {ENGINES}, got {engine!r}")
    tier = ("--shared-tier-url", redis_url) if shared_tier else ()
    argv = [BIN, "worker", "--model", str(model_dir), "--port", "0", "--worker-id", worker_id,
            "--redis-url", redis_url, *tier, "--kv-cache-mb", str(KV_CACHE_MB), "--engine", engine, *extra]
    if engine == "vllm":
        return [*argv, "--vllm-memory-fraction", str(VLLM_MEMORY_FRACTION)], vllm_env(index)
    return argv, {"OMP_NUM_THREADS": "1"}


@dataclass
class System:
    """One system under test: its processes, the URL and headers a client uses, what it measured."""

    name: str
    cluster: LocalCluster
    url: str
    headers: dict[str, str]
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    replays: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


def start_ours(policy: str, model_dir: Path, workdir: Path, num_workers: int, engine: str = "native",
               name: str | None = None, shared_tier: bool = True,
               gateway_args: tuple[str, ...] = ()) -> System:
    """Our gateway with `policy` (and `gateway_args`, e.g. router settings for an A/B) over `num_workers`
    workers running `engine` (shared tier as given)."""
    name = name or policy
    cluster = LocalCluster(_mkdir(workdir / name))
    try:
        redis_url = cluster.start_redis()
        cluster.start_parallel([worker_command(model_dir, f"{name}-w{i}", redis_url, engine, i,
                                               shared_tier=shared_tier) for i in range(num_workers)],
                               " ready on ")
        http_url, _ = cluster.start_gateway(model_dir, redis_url, {API_KEY: "bench"}, "--policy", policy,
                                             *gateway_args)
        wait_for_workers(http_url, num_workers)
    except NotReadyError as exc:
        cluster.stop()
        raise RuntimeError(f"{name}: {exc}; its stderr ends:\n{exc.stderr[-3000:]}") from None
    except BaseException:
        cluster.stop()
        raise
    return System(name, cluster, http_url, {"authorization": f"Bearer {API_KEY}"}, model_dir.name,
                  {"router": " ".join(["heteroserve gateway --policy", policy, *gateway_args]),
                   "engine": engine, "workers": num_workers, "shared_tier": shared_tier,
                   "kv_cache_mb": KV_CACHE_MB})


def start_peer(policy: str, model_dir: Path, workdir: Path, num_workers: int,
               engine: str = "native") -> System:
    """vllm-router with `policy` over `num_workers` workers' OpenAI fronts (bearer = the cluster token,
    which vllm-router forwards)."""
    name = PEER_PREFIX + policy
    cluster = LocalCluster(_mkdir(workdir / name))
    try:
        redis_url = cluster.start_redis()
        ports = [free_port() for _ in range(num_workers)]
        cluster.start_parallel([worker_command(model_dir, f"{name}-w{i}", redis_url, engine, i,
                                               ("--openai-port", str(port))) for i, port in enumerate(ports)],
                               " ready on ")
        url = start_router(cluster, policy, [f"http://127.0.0.1:{port}" for port in ports])
    except NotReadyError as exc:
        cluster.stop()
        raise RuntimeError(f"{name}: {exc}; its stderr ends:\n{exc.stderr[-3000:]}") from None
    except BaseException:
        cluster.stop()
        raise
    return System(name, cluster, url, {"authorization": f"Bearer {CLUSTER_TOKEN}"}, model_dir.name,
                  {"router": f"vllm-router {' '.join(peer_flags(policy))}", "engine": engine,
                   "workers": num_workers, "shared_tier": True, "kv_cache_mb": KV_CACHE_MB})


def start_router(cluster: LocalCluster, policy: str, worker_urls: list[str]) -> str:
    """Start vllm-router over `worker_urls` as one of `cluster`'s processes (log: vllm-router.log in its
    workdir); its base URL once it answers /health."""
    port = free_port()
    argv = [VLLM_ROUTER, "--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(free_port()),
            "--worker-urls", *worker_urls, *peer_flags(policy)]
    log_path = cluster.workdir / "vllm-router.log"
    with log_path.open("w") as log:
        args, preexec = die_with_parent(argv)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec)
    cluster.procs.append(proc)
    wait_healthy(f"http://127.0.0.1:{port}", proc, log_path)
    return f"http://127.0.0.1:{port}"


def system_pids(system: System) -> list[int]:
    """The pids of `system`'s own processes (workers, gateway or vllm-router, its Redis server)."""
    redis_pid = system.cluster.redis.pid if system.cluster.redis is not None else None
    return [p.pid for p in system.cluster.procs] + ([redis_pid] if redis_pid is not None else [])


def report_failures(system: System, summary: dict[str, Any]) -> None:
    """When a replay had failed requests, print the end of the system's vllm-router log (if it has one)
    to stderr: the run's directory is temporary, and a router's own account is the evidence."""
    log = system.cluster.workdir / "vllm-router.log"
    if summary["errors"] and log.is_file():
        print(f"{system.name}: {summary['errors']} failed ({summary['first_error']}); vllm-router.log ends:\n"
              + "\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr, flush=True)


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 60.0,
                 interval: float = 0.2) -> None:
    """Until `url`/health answers 200; raises (with the log's tail) if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{url} not healthy within {timeout} s: {log.read_text()[-2000:]}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
