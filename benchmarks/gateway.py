"""`heteroserve bench gateway`: what the gateway adds to each request, paired with the same request sent
straight to the worker the gateway chose.

Setup: Redis, 4 `tiny` workers in two pools (`pa`, `pb`, 2 workers each, KV events on) and one gateway
(REST + gRPC, prefix-aware router), real processes on 127.0.0.1. A plan routing the default class 60/40
over the two pools is published first, so the gateway's plan view is in the path; workers publish KV
events, so hashing, the prefix index lookup and every scorer run on each request.

Workload (fixed by the rule in `_gateway_workload.py`, stated in the output): 200 prompts of 128–2,048
tokens sharing prefixes with one of 8 documents, 32 streamed output tokens each, greedy, ignore_eos.

Method: one untimed pass of every prompt through the gateway (caches and the index warm), and one untimed
request on each connection a timed request uses (REST, the direct channel and the direct HTTP connection
to each worker). Then, one request at a time, each after a 50 ms pause (so it starts on an idle cluster:
the worker has finished writing and announcing the previous request's blocks), for each prompt: one
untimed request of it through the gateway (the prime), then through the gateway's REST
`/v1/completions` (SSE), then the same token ids directly to the worker that served it over gRPC (the
route names it); then the same over the gateway's gRPC `Generate` and direct again; then, for the REST
pair, the same REST body to that worker's own OpenAI-compatible HTTP front (`--openai-port`, what
vllm-router calls), once untimed (its own prime: that front sends no tenant salt, so its blocks are keyed
apart from the gateway's and must be computed once) and once timed. The prime is there because a
prompt's first request after other prompts meets a slower worker: measured inside the worker, its time
from receipt to first token was ~2 ms longer than the direct re-send's right after it, whichever
transport went first, and without the prime the pairing counted that as the first transport's overhead
(docs/benchmarks.md). Per request: overhead = gateway TTFT − direct TTFT (the request's own cost: auth,
tokenize, hash, index lookup, scoring, plan view, relay of the first token); relay per token = the
difference of the times after the first token / 31; e2e overhead = the difference of send → last token
(both together). The direct request runs after the gateway's, so it meets a cache at least as warm: if
anything the overhead is overstated. Percentiles are of the per-request differences
(`common.stats.percentile`), never a difference of percentiles.

Pairing rule (session 7, fixed before its runs): a request is paired with the same request in the same
protocol sent straight to the worker. `rest_*` pairs the gateway's REST with the worker's own REST front
(like for like: both parse HTTP/JSON, tokenize the text and stream SSE); `grpc_*` pairs the gateway's gRPC
with the worker's gRPC `Generate`. The earlier REST pairing (gateway REST vs the worker's gRPC, which also
counts the difference between the two client protocols) is still reported beside it as
`rest_vs_grpc_direct_*`, and checked too: the worker's REST front is itself ~3 ms slower than its gRPC,
so a REST pass against it alone would partly measure a slow peer; a user bypassing the gateway would
take the faster path. Targets, REST (against both direct paths) and gRPC: overhead p50 ≤ 2 ms, p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from grpc import aio

from benchmarks._cluster import CLUSTER_TOKEN, LocalCluster, wait_for_workers
from benchmarks._gateway_workload import Pair, Prompt, Timing, WorkloadRule, build_prompts, paired_stats
from benchmarks._report import Target, add_arguments, finish
from common.localredis import free_port
from heteroserve.modelgen import create_model
from heteroserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, worker_pb2
from workerrpc.client import WorkerClient

API_KEY = "sk-bench-gateway"
TENANT = "bench"  # the API key's tenant: its salt keys the KV cache, so the direct request carries it too
SETTLE_SECONDS = 0.05
WARM_DIRECT_TOKENS = 3  # < one 16-token block
WARM_DIRECT_TEXT = "warm up"  # < one 16-token block
MODEL = "tiny"
POOLS = ("pa", "pa", "pb", "pb")
PLAN = {"pools": [{"name": "pa", "role": "colocated"}, {"name": "pb", "role": "colocated"}],
        "routing": {"default": {"pa": 0.6, "pb": 0.4}}}
TARGETS: dict[str, Target] = {"rest_overhead_p50_ms": ("<=", 2.0), "rest_overhead_p99_ms": ("<=", 10.0),
                              "rest_vs_grpc_direct_overhead_p50_ms": ("<=", 2.0),
                              "rest_vs_grpc_direct_overhead_p99_ms": ("<=", 10.0),
                              "grpc_overhead_p50_ms": ("<=", 2.0), "grpc_overhead_p99_ms": ("<=", 10.0)}


class Paths:
    """One streamed call per path; each returns its `Timing` and the route the gateway took."""

    def __init__(self, workers: dict[str, str], http_url: str, grpc_target: str, max_tokens: int,
                 worker_http: dict[str, str]) -> None:
        self.workers = {wid: WorkerClient(address, CLUSTER_TOKEN) for wid, address in workers.items()}
        self.http = httpx.AsyncClient(base_url=http_url, headers={"authorization": f"Bearer {API_KEY}"},
                                      timeout=120)
        self.worker_http = {wid: httpx.AsyncClient(base_url=url, timeout=120,
                                                   headers={"authorization": f"Bearer {CLUSTER_TOKEN}"})
                            for wid, url in worker_http.items()}
        self.channel = aio.insecure_channel(grpc_target)
        self.gateway = gateway_pb2_grpc.GatewayStub(self.channel)
        self.max_tokens = max_tokens
        self.sampling = common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        self.metadata = (("authorization", f"Bearer {API_KEY}"),)
        self.counter = 0

    async def rest(self, text: str) -> tuple[Timing, dict[str, Any]]:
        return await self._sse(self.http, text)

    async def direct_rest(self, worker_id: str, text: str) -> Timing:
        """The same REST request to the worker's own OpenAI-compatible front."""
        timing, _ = await self._sse(self.worker_http[worker_id], text)
        return timing

    async def _sse(self, client: httpx.AsyncClient, text: str) -> tuple[Timing, dict[str, Any]]:
        body = {"model": MODEL, "prompt": text, "max_tokens": self.max_tokens, "temperature": 0,
                "ignore_eos": True, "stream": True}
        route: dict[str, Any] = {}
        start, first, tokens = time.perf_counter(), None, 0
        async with client.stream("POST", "/v1/completions", json=body) as reply:
            reply.raise_for_status()
            async for line in reply.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0].get("text"):
                    first = first or time.perf_counter()
                    tokens += 1  # one SSE event per relayed token delta
                route = chunk.get("route") or route
        end = time.perf_counter()
        return Timing((first or end) - start, end - start, tokens), route

    async def grpc(self, text: str) -> tuple[Timing, dict[str, Any]]:
        request = gateway_pb2.GatewayGenerateRequest(model=MODEL, prompt=text, sampling=self.sampling)
        route: dict[str, Any] = {}
        start, first, tokens = time.perf_counter(), None, 0
        async for chunk in self.gateway.Generate(request, metadata=self.metadata):
            if chunk.token_ids:
                first = first or time.perf_counter()
                tokens += len(chunk.token_ids)
            if chunk.HasField("route"):
                route = {"worker_id": chunk.route.worker_id, "reason": chunk.route.reason,
                         "cached_prompt_tokens": chunk.route.cached_prompt_tokens}
        end = time.perf_counter()
        return Timing((first or end) - start, end - start, tokens), route

    async def direct(self, worker_id: str, prompt_ids: list[int]) -> Timing:
        self.counter += 1
        request = worker_pb2.GenerateRequest(request_id=f"direct-{self.counter}", prompt_token_ids=prompt_ids,
                                             sampling=self.sampling,
                                             cache_keys=common_pb2.CacheKeys(tenant_salt=TENANT))
        start, first, tokens = time.perf_counter(), None, 0
        async for chunk in self.workers[worker_id].generate(request):
            if chunk.token_ids:
                first = first or time.perf_counter()
                tokens += len(chunk.token_ids)
        end = time.perf_counter()
        return Timing((first or end) - start, end - start, tokens)

    async def close(self) -> None:
        for client in self.workers.values():
            await client.close()
        await self.http.aclose()
        for http in self.worker_http.values():
            await http.aclose()
        await self.channel.close()


async def warm(paths: Paths, prompts: list[Prompt], prompt_ids: list[list[int]]) -> None:
    """Untimed: every prompt once through the gateway (worker caches and the prefix index warm), then
    every connection a timed request uses opened once: REST's (the first REST request used to pay
    ~30 ms of connection set-up), the direct channel to each worker (~1 ms) and the HTTP connection to
    each worker's own front. The direct warm-ups are shorter than a block, so they cache no block of the
    workload."""
    for prompt in prompts:
        await paths.grpc(prompt.text)
    await paths.rest(prompts[0].text)
    for worker_id in paths.workers:
        await paths.direct(worker_id, prompt_ids[0][:WARM_DIRECT_TOKENS])
        await paths.direct_rest(worker_id, WARM_DIRECT_TEXT)


@dataclass
class Tally:
    """What the timed requests of a run measured: the pairs of each figure and the routes taken."""

    pairs: dict[str, list[Pair]] = field(
        default_factory=lambda: {"rest": [], "grpc": [], "rest_vs_grpc_direct": []})
    reasons: Counter[str] = field(default_factory=Counter)
    chosen: Counter[str] = field(default_factory=Counter)
    cached: int = 0


async def measure_prompt(paths: Paths, prompt: Prompt, ids: list[int], tally: Tally) -> None:
    """One prompt's timed requests, in the order of the method (module docstring)."""
    await asyncio.sleep(SETTLE_SECONDS)
    await paths.grpc(prompt.text)  # untimed prime: every timed request follows one of its prompt
    rest: tuple[Timing, str] | None = None
    for name, call in (("rest", paths.rest), ("grpc", paths.grpc)):
        await asyncio.sleep(SETTLE_SECONDS)
        timing, route = await call(prompt.text)
        worker = str(route["worker_id"])
        await asyncio.sleep(SETTLE_SECONDS)
        direct = await paths.direct(worker, ids)
        tally.pairs["rest_vs_grpc_direct" if name == "rest" else name].append(Pair(timing, direct))
        tally.reasons[str(route.get("reason", ""))] += 1
        tally.chosen[worker] += 1
        tally.cached += int(str(route.get("cached_prompt_tokens", 0)))
        if name == "rest":
            rest = (timing, worker)
    assert rest is not None
    timing, worker = rest  # last: its prime and the timed request go to the worker's own REST front
    await asyncio.sleep(SETTLE_SECONDS)
    await paths.direct_rest(worker, prompt.text)
    await asyncio.sleep(SETTLE_SECONDS)
    tally.pairs["rest"].append(Pair(timing, await paths.direct_rest(worker, prompt.text)))


def summarize(tally: Tally, prompt_ids: list[list[int]]) -> dict[str, Any]:
    pairs = tally.pairs
    result: dict[str, Any] = {**paired_stats("rest", pairs["rest"]), **paired_stats("grpc", pairs["grpc"]),
                              **paired_stats("rest_vs_grpc_direct", pairs["rest_vs_grpc_direct"])}
    for q in ("p50", "p99"):
        values = [result[f"{t}_overhead_{q}_ms"] for t in ("rest", "grpc")]
        result[f"overhead_{q}_ms"] = max(values) if None not in values else None
    total_prompt = 2 * sum(len(ids) for ids in prompt_ids)
    result.update(pairs=len(pairs["rest"]), workers_chosen=len(tally.chosen),
                  route_reasons=dict(tally.reasons),
                  cached_prompt_share=round(tally.cached / total_prompt, 3),
                  prompt_tokens_min=min(map(len, prompt_ids)), prompt_tokens_max=max(map(len, prompt_ids)),
                  prompt_tokens_mean=round(sum(map(len, prompt_ids)) / len(prompt_ids), 1))
    return result


async def measure(paths: Paths, prompts: list[Prompt], prompt_ids: list[list[int]]) -> dict[str, Any]:
    await warm(paths, prompts, prompt_ids)
    tally = Tally()
    for prompt, ids in zip(prompts, prompt_ids, strict=True):
        await measure_prompt(paths, prompt, ids, tally)
    return summarize(tally, prompt_ids)


async def _publish_plan(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from control_plane.plan_store import PlanStore

    client = aioredis.Redis.from_url(redis_url)
    try:
        await PlanStore(client).publish(PLAN, leader="bench-gateway", reason="bench gateway")
    finally:
        await client.aclose()


def run(rule: WorkloadRule) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from heteroserve.modelgen.tokenizer import corpus_text

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = create_model(workdir / MODEL, preset=MODEL, seed=0)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        bos = len(tokenizer.encode("").ids)  # the post-processor adds <s> to every encoding
        prompts = build_prompts(rule, corpus_text().split(), lambda w: len(tokenizer.encode(w).ids) - bos)
        prompt_ids = [list(tokenizer.encode(p.text).ids) for p in prompts]
        cluster = LocalCluster(workdir)
        try:
            redis_url = cluster.start_redis()
            asyncio.run(_publish_plan(redis_url))
            http_ports = {f"bench-w{i}": free_port() for i in range(len(POOLS))}
            workers = {wid: cluster.start_worker(model_dir, wid, redis_url,
                                                 ("--pool", pool, "--openai-port", str(http_ports[wid])))
                       for wid, pool in zip(http_ports, POOLS, strict=True)}
            worker_http = {wid: f"http://127.0.0.1:{port}" for wid, port in http_ports.items()}
            http_url, grpc_target = cluster.start_gateway(model_dir, redis_url, {API_KEY: TENANT})
            wait_for_workers(http_url, len(workers))

            async def main() -> dict[str, Any]:
                paths = Paths(workers, http_url, grpc_target, rule.output_tokens, worker_http)
                try:
                    return await measure(paths, prompts, prompt_ids)
                finally:
                    await paths.close()

            return asyncio.run(main())
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench gateway", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--requests", type=int, default=200, help="prompts (each measured on REST and gRPC)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workload rule")
    args = parser.parse_args(argv)
    rule = WorkloadRule(requests=args.requests, seed=args.seed)
    print(f"workload rule: {rule.describe()}")
    result = {"workload_rule": rule.describe(), **run(rule)}
    for key, value in result.items():
        if key != "workload_rule":
            print(f"{key:<34} {value!s:>14}")
    return finish(result, TARGETS, args)
