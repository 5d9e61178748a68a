"""`heteroserve bench load`: ramp streaming clients to the TTFT SLO's knee, then hold a soak load.

On the embedded cluster (tiny model, real processes, real Redis), closed-loop streaming clients (gRPC
SDK, short chat prompts from a pool of 32, greedy, `--max-tokens` tokens) are run in steps:
1. ramp: concurrency 1, 2, 4, 8, ... up to `--max-concurrency`, `--step-seconds` per step (the first
   `--warmup-seconds` of a step are not counted); the step's TTFT p99 is compared with the chat class's
   SLO (`ttft_seconds` of the embedded config, 1.0 s, or `--slo-seconds`). `max_concurrency_within_slo`
   is the last step within the SLO (the knee); the ramp stops at the first step over it;
2. soak: `--hold-clients` clients (issue: 200) for `--hold-seconds` (issue: 60): `errors` = streams
   that failed; RSS (VmRSS) of every process of the cluster sampled at the start and end of the hold:
   `max_rss_growth_mb` is the largest growth of one process (processes started during the hold, e.g.
   workers the planner adds, count from their first sample).
The planner may scale the pools during the run: it is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._chaos_cluster import ChaosCluster
from benchmarks._report import add_arguments, finish
from benchmarks._streams import Timed, closed_loop, prompt
from common.stats import percentile
from heteroserve.embedded.state import worker_files


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def processes(cluster: ChaosCluster) -> dict[str, int]:
    """name -> pid of every process of the cluster (Redis, gateway, planner, each live worker)."""
    out = {name: p.pid for name, p in cluster.embedded.processes.items()}
    if cluster.embedded.redis is not None and cluster.embedded.redis.pid is not None:
        out["redis"] = cluster.embedded.redis.pid
    out.update({f"worker {w['worker_id']}": int(str(w["pid"])) for w in worker_files(cluster.run_dir)})
    return out


async def ramp(cluster: ChaosCluster, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    knee = 0
    concurrency = 1
    while concurrency <= args.max_concurrency:
        started = time.monotonic()
        log = await closed_loop(cluster.grpc_address, cluster.api_key, cluster.model, concurrency,
                                args.step_seconds, texts, args.max_tokens)
        counted = [r for t, r in log if t - started >= args.warmup_seconds]
        ttfts = [r.ttft_seconds for r in counted if r.ttft_seconds is not None]
        p99 = percentile(ttfts, 0.99)
        step = {"concurrency": concurrency, "requests": len(counted),
                "errors": sum(not r.ok for r in counted), "ttft_p50_s": percentile(ttfts, 0.5),
                "ttft_p99_s": p99}
        steps.append(step)
        if p99 is None or p99 > args.slo_seconds or step["errors"]:
            break
        knee = concurrency
        concurrency *= 2
    return {"max_concurrency_within_slo": knee, "steps": steps}


async def soak(cluster: ChaosCluster, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    first: dict[str, float] = {}
    last: dict[str, float] = {}

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, pid in processes(cluster).items():
                if (mb := rss_mb(pid)) is not None:
                    first.setdefault(name, mb)
                    last[name] = mb
            await asyncio.sleep(2.0)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    log: list[Timed] = await closed_loop(cluster.grpc_address, cluster.api_key, cluster.model,
                                         args.hold_clients, args.hold_seconds, texts, args.max_tokens)
    stop.set()
    await sampler
    growth = {name: round(last[name] - first[name], 1) for name in first}
    ttfts = [r.ttft_seconds for _, r in log if r.ttft_seconds is not None]
    return {"clients": args.hold_clients, "seconds": args.hold_seconds, "requests": len(log),
            "errors": sum(not r.ok for _, r in log),
            "error_sample": sorted({r.error for _, r in log if r.error})[:3],
            "ttft_p50_s": percentile(ttfts, 0.5), "ttft_p99_s": percentile(ttfts, 0.99),
            "max_rss_growth_mb": max(growth.values(), default=0.0), "rss_growth_mb": growth,
            "rss_end_mb": {k: round(v, 1) for k, v in last.items()}}


async def run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    cluster = ChaosCluster(run_dir, disk_tier_mb=256)
    texts = [prompt(i, 12) for i in range(32)]
    try:
        await asyncio.to_thread(cluster.start)
        ramp_result = await ramp(cluster, args, texts)
        soak_result = await soak(cluster, args, texts)
    finally:
        await asyncio.to_thread(cluster.stop)
    return {"max_concurrency_within_slo": ramp_result["max_concurrency_within_slo"],
            "slo_ttft_p99_seconds": args.slo_seconds, "errors": soak_result["errors"],
            "max_rss_growth_mb": soak_result["max_rss_growth_mb"], "ramp": ramp_result["steps"],
            "soak": soak_result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench load", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="ramp to 8, hold 16 clients for 10 s")
    parser.add_argument("--slo-seconds", type=float, default=1.0, help="TTFT p99 SLO (chat class)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-concurrency", type=int, default=256)
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--hold-clients", type=int, default=200)
    parser.add_argument("--hold-seconds", type=float, default=60.0)
    parser.add_argument("--rss-limit-mb", type=float, default=200.0, help="target for max_rss_growth_mb")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_concurrency, args.step_seconds, args.hold_clients, args.hold_seconds = 8, 6.0, 16, 10.0
    with tempfile.TemporaryDirectory(prefix="hs-bench-load-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(f"{'concurrency':>11} {'requests':>9} {'errors':>7} {'ttft p50 s':>11} {'ttft p99 s':>11}")
    for step in result["ramp"]:
        print(f"{step['concurrency']:>11} {step['requests']:>9} {step['errors']:>7} "
              f"{step['ttft_p50_s'] or 0:>11.3f} {step['ttft_p99_s'] or 0:>11.3f}")
    soak_result = result["soak"]
    print(f"knee (TTFT p99 <= {args.slo_seconds} s): {result['max_concurrency_within_slo']} clients")
    print(f"soak: {soak_result['clients']} clients x {soak_result['seconds']} s: {soak_result['requests']} "
          f"requests, errors {soak_result['errors']} (target 0), max RSS growth "
          f"{soak_result['max_rss_growth_mb']} MB (target <= {args.rss_limit_mb})")
    targets = {"errors": ("==", 0), "max_rss_growth_mb": ("<=", args.rss_limit_mb)}
    return finish(result, targets, args)
