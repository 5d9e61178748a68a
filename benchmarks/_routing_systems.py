"""The systems `bench routing` compares, as real processes, and the streamed replay of one window on one.

Every system has its own Redis and 4 colocated workers started as shipped (`--redis-url` for
registration and KV events, `--shared-tier-url` on the same Redis: the shared KV tier on), so no system
sees another's caches. In front of them:
- ours: a heteroserve gateway with `--policy` round_robin, least_load or prefix_aware (REST);
- the peer: `vllm-router --policy P` (cache_aware, power_of_two or round_robin) over the workers'
  OpenAI-compatible HTTP fronts (`heteroserve worker --openai-port`), its other settings at their
  defaults (`PEER_FLAGS` adds only ports, log level and a 1 s startup probe interval).
The client sends every request as streamed text completions (`stream_options.include_usage`), measures
TTFT at the first chunk with a choice, and reads the cached prompt tokens from the gateway's `route`
or, through vllm-router, from `usage.prompt_tokens_details.cached_tokens` (the worker's count).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks._cluster import CLUSTER_TOKEN, LocalCluster, wait_for_workers
from benchmarks._routing_workload import TraceRequest
from common.lifetime import parent_death_preexec
from common.localredis import free_port
from common.stats import percentile
from heteroserve.embedded.processes import NotReadyError

API_KEY = "sk-bench-routing"
OURS = ("round_robin", "least_load", "prefix_aware")
PEER_POLICIES = ("cache_aware", "power_of_two", "round_robin")
PEER_PREFIX = "vllm_router_"
VLLM_ROUTER = str(Path(sys.executable).parent / "vllm-router")
PEER_FLAGS = ("--log-level", "warning", "--worker-startup-check-interval", "1")


@dataclass
class System:
    """One system under test: its processes, the URL and headers a client uses, what it measured."""

    name: str
    cluster: LocalCluster
    url: str
    headers: dict[str, str]
    model: str
    replays: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)


def start_ours(policy: str, model_dir: Path, workdir: Path, num_workers: int) -> System:
    cluster = LocalCluster(_mkdir(workdir / policy))
    try:
        redis_url = cluster.start_redis()
        for i in range(num_workers):
            cluster.start_worker(model_dir, f"{policy}-w{i}", redis_url, ("--shared-tier-url", redis_url))
        http_url, _ = cluster.start_gateway(model_dir, redis_url, {API_KEY: "bench"}, "--policy", policy)
        wait_for_workers(http_url, num_workers)
    except NotReadyError as exc:
        cluster.stop()
        raise RuntimeError(f"{policy}: {exc}; its stderr ends:\n{exc.stderr[-3000:]}") from None
    except BaseException:
        cluster.stop()
        raise
    return System(policy, cluster, http_url, {"authorization": f"Bearer {API_KEY}"}, model_dir.name)


def start_peer(policy: str, model_dir: Path, workdir: Path, num_workers: int) -> System:
    """vllm-router with `policy` over `num_workers` workers' OpenAI fronts (bearer = the cluster token,
    which vllm-router forwards)."""
    name = PEER_PREFIX + policy
    cluster = LocalCluster(_mkdir(workdir / name))
    try:
        redis_url = cluster.start_redis()
        urls = []
        for i in range(num_workers):
            port = free_port()
            cluster.start_worker(model_dir, f"{name}-w{i}", redis_url,
                                 ("--shared-tier-url", redis_url, "--openai-port", str(port)))
            urls.append(f"http://127.0.0.1:{port}")
        port = free_port()
        argv = [VLLM_ROUTER, "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
                "--prometheus-port", str(free_port()), "--worker-urls", *urls, *PEER_FLAGS]
        log = (cluster.workdir / "vllm-router.log").open("w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=parent_death_preexec())
        cluster.procs.append(proc)
        _wait_healthy(f"http://127.0.0.1:{port}", proc, cluster.workdir / "vllm-router.log")
    except BaseException:
        cluster.stop()
        raise
    return System(name, cluster, f"http://127.0.0.1:{port}", {"authorization": f"Bearer {CLUSTER_TOKEN}"},
                  model_dir.name)


def _wait_healthy(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm-router exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"vllm-router not healthy within {timeout} s: {log.read_text()[-2000:]}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _one(client: httpx.AsyncClient, model: str, request: TraceRequest, start: float) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, start + request.arrival_s - time.perf_counter()))
    sent = time.perf_counter()
    out: dict[str, Any] = {"ttft": None, "prompt_tokens": None, "cached_tokens": None, "worker": None,
                           "error": None}
    body = {"model": model, "prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with client.stream("POST", "/v1/completions", json=body) as reply:
            if reply.status_code != 200:
                out["error"] = f"HTTP {reply.status_code}: {(await reply.aread())[:200]!r}"
                return out
            async for line in reply.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    _read_event(json.loads(line[6:]), out, sent)
    except httpx.HTTPError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    if out["error"] is None and (out["ttft"] is None or out["prompt_tokens"] is None):
        out["error"] = "stream ended without a token or without usage"
    return out


def _read_event(data: dict[str, Any], out: dict[str, Any], sent: float) -> None:
    if data.get("choices") and out["ttft"] is None:
        out["ttft"] = time.perf_counter() - sent
    if "route" in data:  # our gateway: the worker's counts, on the last chunk with a choice
        out["cached_tokens"] = data["route"]["cached_prompt_tokens"]
        out["worker"] = data["route"]["worker_id"]
    usage = data.get("usage")
    if usage:
        out["prompt_tokens"] = usage["prompt_tokens"]
        details = usage.get("prompt_tokens_details") or {}
        if out["cached_tokens"] is None and "cached_tokens" in details:
            out["cached_tokens"] = details["cached_tokens"]


async def _replay(system: System, requests: list[TraceRequest]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=system.url, headers=system.headers, timeout=600.0,
                                 limits=limits) as client:
        start = time.perf_counter() + 0.5
        return list(await asyncio.gather(*(_one(client, system.model, r, start) for r in requests)))


def replay(system: System, requests: list[TraceRequest]) -> dict[str, Any]:
    """Replay `requests` on `system` (arrivals in real time); returns the replay's summary."""
    began = time.perf_counter()
    results = asyncio.run(_replay(system, requests))
    wall = time.perf_counter() - began
    ok = [r for r in results if r["error"] is None]
    errors = [r["error"] for r in results if r["error"] is not None]
    ttfts = [r["ttft"] for r in ok]
    prompt = sum(r["prompt_tokens"] for r in ok)
    workers = [r["worker"] for r in ok if r["worker"] is not None]
    return {"requests": len(results), "errors": len(errors), "first_error": errors[0] if errors else None,
            "cached_share": sum(r["cached_tokens"] or 0 for r in ok) / max(1, prompt),
            "ttft_mean_s": statistics.fmean(ttfts) if ttfts else None,
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p99_s": percentile(ttfts, 0.99), "wall_s": wall,
            "requests_per_worker": sorted(workers.count(w) for w in set(workers))}
