"""`heteroserve bench routing`: our prefix-aware router vs round robin and least load, same run.

Setup: one cluster per policy, all started before the replay and kept apart (each its own Redis, so no
policy sees another's caches or prefix index): 4 colocated workers of the `--preset` (bench) model and
one gateway with `--policy`. Workload: a window of a Mooncake-format trace (JSONL: `timestamp` ms,
`input_length`, `output_length`, `hash_ids`; default `../shared/data/traces/mooncake_synthetic_trace.jsonl`,
any file of that format with `--trace`), replayed scaled:
- each 512-token block id becomes 16 deterministic token ids (numpy generator seeded by the id), so
  equal ids give equal prompt blocks and the trace's prefix sharing is kept; at most `--max-blocks`
  leading blocks per request (the model's context is 4,096 tokens);
- output length = clamp(round(output_length / 32), 1, 32), EOS ignored;
- arrival time = (timestamp − first timestamp) × `--time-scale` (default 0.8): the busiest setting
  of a sweep on this machine at which every policy still finishes within about a second of the last
  arrival, i.e. workers busy (queues form) but not saturated (queues drain); docs/benchmarks.md has
  the sweep. A faster or slower machine needs its own value.
The window is replayed whole on each policy's cluster in turn (`--rounds 1`, the default), so queues
build up across it as they would in production. `--rounds N` cuts it into N consecutive slices, each
replayed on every policy in turn (the order rotating each round), arrivals counted from the slice's
first request: outside load on a shared machine then falls on every policy alike, but each slice
starts with empty queues, which measures a lighter load (docs/benchmarks.md has both).
Requests go through the REST API as token ids, streamed; TTFT is measured at the client.

Reported: per policy, cached-token share (Σ cached prompt tokens / Σ prompt tokens, as the workers
report them), mean, p50 and p99 TTFT. prefix_hit_ratio_vs_rr = ours / round robin's cached share
(target ≥ 2.0); ttft_mean_ratio_vs_rr = ours / round robin's mean TTFT (target ≤ 0.7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._cluster import LocalCluster, wait_for_workers
from benchmarks._report import add_arguments, finish
from common.stats import percentile
from heteroserve.modelgen import PRESETS, create_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "traces" / "mooncake_synthetic_trace.jsonl"
API_KEY = "sk-bench-routing"
TOKENS_PER_BLOCK = 16
POLICIES = ("round_robin", "least_load", "prefix_aware")
TARGETS = {"prefix_hit_ratio_vs_rr": (">=", 2.0), "ttft_mean_ratio_vs_rr": ("<=", 0.7)}


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    prompt: tuple[int, ...]
    max_tokens: int


def load_requests(path: Path, start: int, count: int, max_blocks: int, time_scale: float,
                  vocab_size: int) -> list[TraceRequest]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][start:start + count]
    if not rows:
        raise ValueError(f"{path}: no requests in [{start}, {start + count})")
    t0 = rows[0]["timestamp"]
    block_tokens: dict[int, tuple[int, ...]] = {}
    out = []
    for row in rows:
        prompt: list[int] = []
        for block_id in row["hash_ids"][:max_blocks]:
            if block_id not in block_tokens:
                rng = np.random.default_rng(int(block_id))
                block_tokens[block_id] = tuple(int(t) for t in rng.integers(4, vocab_size, TOKENS_PER_BLOCK))
            prompt.extend(block_tokens[block_id])
        max_tokens = int(min(32, max(1, round(row["output_length"] / 32))))
        out.append(TraceRequest((row["timestamp"] - t0) / 1000.0 * time_scale, tuple(prompt), max_tokens))
    return out


async def _one(client: httpx.AsyncClient, request: TraceRequest, start: float) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, start + request.arrival_s - time.perf_counter()))
    sent = time.perf_counter()
    ttft = None
    final: dict[str, Any] = {}
    body = {"model": "model", "prompt": list(request.prompt), "max_tokens": request.max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": True}
    async with client.stream("POST", "/v1/completions", json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"HTTP {reply.status_code}: {(await reply.aread())[:300]!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if ttft is None and data["choices"] and data["choices"][0]["text"]:
                ttft = time.perf_counter() - sent
            if "route" in data:
                final = data
    return {"ttft": ttft if ttft is not None else time.perf_counter() - sent,
            "prompt_tokens": final["usage"]["prompt_tokens"],
            "cached_tokens": final["route"]["cached_prompt_tokens"], "worker": final["route"]["worker_id"]}


async def _replay(http_url: str, requests: list[TraceRequest]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=http_url, headers={"authorization": f"Bearer {API_KEY}"},
                                 timeout=600.0, limits=limits) as client:
        start = time.perf_counter() + 0.5
        return list(await asyncio.gather(*(_one(client, r, start) for r in requests)))


@dataclass
class PolicyCluster:
    """One policy's cluster, and what the replay measured on it so far."""

    policy: str
    cluster: LocalCluster
    http_url: str
    results: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ttfts = [r["ttft"] for r in self.results]
        prompt = sum(r["prompt_tokens"] for r in self.results)
        workers = {r["worker"] for r in self.results}
        return {"cached_share": sum(r["cached_tokens"] for r in self.results) / max(1, prompt),
                "ttft_mean_s": statistics.fmean(ttfts), "ttft_p50_s": percentile(ttfts, 0.5),
                "ttft_p99_s": percentile(ttfts, 0.99), "wall_s": self.wall_s,
                "requests_per_worker": sorted(sum(1 for r in self.results if r["worker"] == w)
                                              for w in workers)}


def start_policy(policy: str, model_dir: Path, workdir: Path, num_workers: int) -> PolicyCluster:
    (workdir / policy).mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir / policy)
    try:
        redis_url = cluster.start_redis()
        for i in range(num_workers):
            cluster.start_worker(model_dir, f"{policy}-w{i}", redis_url)
        http_url, _ = cluster.start_gateway(model_dir, redis_url, {API_KEY: "bench"}, "--policy", policy)
        wait_for_workers(http_url, num_workers)
    except BaseException:
        cluster.stop()
        raise
    return PolicyCluster(policy, cluster, http_url)


def slices(requests: list[TraceRequest], rounds: int) -> list[list[TraceRequest]]:
    """`requests` cut into `rounds` consecutive slices, each with arrivals counted from its first."""
    size = -(-len(requests) // max(1, rounds))
    out = []
    for begin in range(0, len(requests), size):
        part = requests[begin:begin + size]
        t0 = part[0].arrival_s
        out.append([TraceRequest(r.arrival_s - t0, r.prompt, r.max_tokens) for r in part])
    return out


def replay_interleaved(clusters: list[PolicyCluster], requests: list[TraceRequest], rounds: int) -> None:
    parts = slices(requests, rounds)
    for i, part in enumerate(parts):
        for k in range(len(clusters)):
            target = clusters[(i + k) % len(clusters)]
            began = time.perf_counter()
            target.results += asyncio.run(_replay(target.http_url, part))
            elapsed = time.perf_counter() - began
            target.wall_s += elapsed
            print(f"round {i + 1}/{len(parts)}: {target.policy}, {len(part)} requests in {elapsed:.1f} s",
                  file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir = create_model(workdir / "model", preset=args.preset, seed=0)
        requests = load_requests(args.trace, args.start, args.requests, args.max_blocks, args.time_scale,
                                 preset.vocab_size)
        clusters: list[PolicyCluster] = []
        try:
            for policy in args.policies:
                print(f"starting the {policy} cluster ({args.workers} workers)", file=sys.stderr, flush=True)
                clusters.append(start_policy(policy, model_dir, workdir, args.workers))
            replay_interleaved(clusters, requests, args.rounds)
        finally:
            for c in clusters:
                c.cluster.stop()
        per_policy = {c.policy: c.summary() for c in clusters}
    mean_prompt = round(statistics.fmean(len(r.prompt) for r in requests), 1)
    result: dict[str, Any] = {"requests": len(requests), "workers": args.workers, "preset": args.preset,
                              "trace": args.trace.name, "start": args.start, "time_scale": args.time_scale,
                              "rounds": args.rounds,
                              "mean_prompt_tokens": mean_prompt}
    for policy, stats in per_policy.items():
        for key, value in stats.items():
            result[f"{policy}_{key}"] = round(value, 4) if isinstance(value, float) else value
    if "round_robin" in per_policy and "prefix_aware" in per_policy:
        rr, ours = per_policy["round_robin"], per_policy["prefix_aware"]
        result["prefix_hit_ratio_vs_rr"] = round(ours["cached_share"] / max(rr["cached_share"], 1e-9), 3)
        result["ttft_mean_ratio_vs_rr"] = round(ours["ttft_mean_s"] / rr["ttft_mean_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench routing", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mooncake-format JSONL trace")
    parser.add_argument("--start", type=int, default=3600, help="index of the first trace request")
    parser.add_argument("--requests", type=int, default=160, help="number of trace requests to replay")
    parser.add_argument("--max-blocks", type=int, default=32, help="leading blocks kept per request")
    parser.add_argument("--time-scale", type=float, default=0.8, help="arrival-time multiplier")
    parser.add_argument("--rounds", type=int, default=1,
                        help="slices of the window, each replayed on every policy in turn (1 = whole)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--preset", default="bench", choices=sorted(PRESETS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args(argv)
    if not args.trace.is_file():
        parser.error(f"--trace: no such file {args.trace}")
    if args.time_scale <= 0:
        parser.error(f"--time-scale: must be > 0, got {args.time_scale}")
    if args.rounds < 1:
        parser.error(f"--rounds: must be >= 1, got {args.rounds}")
    result = run(args)
    for key, value in result.items():
        print(f"{key:<36} {value!s:>14}")
    return finish(result, TARGETS, args)
