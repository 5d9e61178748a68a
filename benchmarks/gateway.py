"""`heteroserve bench gateway`: what the gateway adds to a request, and how many it carries.

Setup: Redis, one `tiny` worker and one gateway (REST + gRPC), real processes on 127.0.0.1.
Workload: one 8-token prompt, greedy, max_tokens 1 (so the worker's work is minimal and the gateway's
share is what shows).

1. Latency, same run, interleaved: `--requests` (500) requests each, one at a time, by three paths:
   direct to the worker's gRPC `Generate` (peer), through the gateway's gRPC `Generate`, and through
   its REST `/v1/completions`. overhead_p50_ms = p50(gateway gRPC) − p50(direct gRPC): the same
   client stack on both sides, so the difference is the gateway (auth, tokenize, hash, route, relay).
   overhead_p99_ms likewise. rest_overhead_* = REST − direct: it adds the HTTP client (httpx) and
   server (uvicorn, FastAPI) costs, all on the same two cores. Targets: p50 ≤ 2 ms, p99 ≤ 10 ms.
2. Throughput: closed loop, `--clients` (32) concurrent clients for `--seconds` (5) s through the
   gateway (gRPC, then REST) and direct to the worker. gateway_rps = the better gateway transport.
   Target: ≥ 300 req/s. The client runs in this process, on the same cores as the gateway and worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from grpc import aio

from benchmarks._cluster import CLUSTER_TOKEN, LocalCluster, percentile, wait_for_workers
from benchmarks._report import target_table
from heteroserve.modelgen import create_model
from heteroserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, worker_pb2
from workerrpc.client import WorkerClient

API_KEY = "sk-bench-gateway"
PROMPT = "the gateway overhead benchmark"
TARGETS = {"overhead_p50_ms": ("<=", 2.0), "overhead_p99_ms": ("<=", 10.0), "gateway_rps": (">=", 300.0)}


class Paths:
    """One call per path; each returns when the single token has arrived."""

    def __init__(self, worker_address: str, http_url: str, grpc_target: str, prompt_ids: list[int]) -> None:
        self.worker = WorkerClient(worker_address, CLUSTER_TOKEN)
        self.http = httpx.AsyncClient(base_url=http_url, headers={"authorization": f"Bearer {API_KEY}"},
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.channel = aio.insecure_channel(grpc_target)
        self.gateway = gateway_pb2_grpc.GatewayStub(self.channel)
        self.prompt_ids = prompt_ids
        self.sampling = common_pb2.SamplingParams(max_tokens=1)
        self.metadata = (("authorization", f"Bearer {API_KEY}"),)
        self.counter = 0

    async def direct(self) -> None:
        self.counter += 1
        request = worker_pb2.GenerateRequest(request_id=f"direct-{self.counter}",
                                             prompt_token_ids=self.prompt_ids, sampling=self.sampling)
        async for _ in self.worker.generate(request):
            pass

    async def rest(self) -> None:
        reply = await self.http.post("/v1/completions", json={"model": "tiny", "prompt": PROMPT,
                                                                "max_tokens": 1, "temperature": 0})
        reply.raise_for_status()

    async def grpc(self) -> None:
        request = gateway_pb2.GatewayGenerateRequest(model="tiny", prompt=PROMPT, sampling=self.sampling)
        async for _ in self.gateway.Generate(request, metadata=self.metadata):
            pass

    async def close(self) -> None:
        await self.worker.close()
        await self.http.aclose()
        await self.channel.close()


async def _latencies(paths: Paths, requests: int) -> dict[str, list[float]]:
    calls = {"direct": paths.direct, "rest": paths.rest, "grpc": paths.grpc}
    for call in calls.values():  # warm up connections and the worker's prefix cache
        for _ in range(20):
            await call()
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(requests):
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            out[name].append((time.perf_counter() - start) * 1000.0)
    return out


async def _closed_loop(call: Callable[[], Awaitable[None]], clients: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - start)


async def _measure(paths: Paths, args: argparse.Namespace) -> dict[str, Any]:
    lat = await _latencies(paths, args.requests)
    rps = {name: await _closed_loop(call, args.clients, args.seconds)
           for name, call in (("grpc", paths.grpc), ("rest", paths.rest), ("direct", paths.direct))}
    p = {name: (percentile(v, 0.5), percentile(v, 0.99)) for name, v in lat.items()}
    return {
        "overhead_p50_ms": round(p["grpc"][0] - p["direct"][0], 3),
        "overhead_p99_ms": round(p["grpc"][1] - p["direct"][1], 3),
        "rest_overhead_p50_ms": round(p["rest"][0] - p["direct"][0], 3),
        "rest_overhead_p99_ms": round(p["rest"][1] - p["direct"][1], 3),
        "gateway_rps": round(max(rps["grpc"], rps["rest"]), 1),
        "gateway_rest_rps": round(rps["rest"], 1), "gateway_grpc_rps": round(rps["grpc"], 1),
        "direct_rps": round(rps["direct"], 1),
        "direct_p50_ms": round(p["direct"][0], 3), "direct_p99_ms": round(p["direct"][1], 3),
        "rest_p50_ms": round(p["rest"][0], 3), "rest_p99_ms": round(p["rest"][1], 3),
        "grpc_p50_ms": round(p["grpc"][0], 3), "grpc_p99_ms": round(p["grpc"][1], 3),
        "requests": args.requests, "clients": args.clients,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = create_model(workdir / "tiny", preset="tiny", seed=0)
        cluster = LocalCluster(workdir)
        try:
            redis_url = cluster.start_redis()
            worker = cluster.start_worker(model_dir, "bench-w0", redis_url)
            http_url, grpc_target = cluster.start_gateway(model_dir, redis_url, {API_KEY: "bench"})
            wait_for_workers(http_url, 1)
            prompt_ids = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(PROMPT).ids

            async def main() -> dict[str, Any]:
                paths = Paths(worker, http_url, grpc_target, prompt_ids)
                try:
                    return await _measure(paths, args)
                finally:
                    await paths.close()

            return asyncio.run(main())
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per path")
    parser.add_argument("--clients", type=int, default=32, help="closed-loop concurrency")
    parser.add_argument("--seconds", type=float, default=5.0, help="closed-loop duration per path")
    args = parser.parse_args(argv)
    result = run(args)
    print(target_table(result, TARGETS, 24))
    if args.json:
        print(json.dumps(result))
    return 0
