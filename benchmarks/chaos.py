"""`heteroserve bench chaos`: fault injection on the embedded cluster (tiny model, real processes, Redis).

Scenarios, in this order, on one cluster started by `EmbeddedCluster` with a second (standby) planner:
1. baseline: `--streams` concurrent greedy streams (half short chat prompts, half long prompts that take
   the P/D path), `--max-tokens` tokens each, ignore_eos: the reference token ids;
2. for each kind (decode, prefill, colocated, csd): as many streams on fresh prompts (nothing cached,
   so the long ones take the P/D path); once they flow, `kill -9` one worker of that kind. The chaos
   config (`_chaos_cluster.chaos_document`) makes the plan hold every kind: warm ~1,360-token traffic
   (P/D, decoding on CSD) beside the short classes (colocated), two CSD nodes, and the planner's
   availability floor (`min_replicas` 2) so each kind has a peer to retry on; the profile cache is
   seeded with profiles measured on this machine (`_chaos_cluster.SEEDED_PROFILES`: the P/D decision
   is within measurement noise here). A kind never killed fails `--check`. `lost_requests` =
   streams without a finish, `token_mismatches` = streams whose token ids differ from the same
   prompts sent again after recovery without a fault (greedy: the tokens must be equal);
3. disk full: the workers' disk tiers are capped at `--disk-mb`; distinct long prompts until the disk
   tiers hold at least 90 % of the cap: `failed_requests_disk_full`;
4. corruption: overwrite every KV block in Redis and `--corrupt` block files per disk tier with random
   bytes of the same length, kill -9 the workers (their replacements start with empty pools and must
   read the tiers), then the streams again: `corrupt_blocks_used` = streams whose tokens differ from
   the baseline (a used corrupt block would change them); `corrupt_entries_dropped_or_rewritten`
   shows how many corrupt entries the workers read, rejected and replaced (worker processes do not
   export the cache's checksum-failure counter, see docs/reliability.md);
5. Redis outage: closed-loop load (`--streams`/4 clients) for 5 s, Redis stopped for `--outage` s,
   restarted (same port, empty), 10 s more: `failed_requests_redis_outage`; `hit_rate_recovered` = the
   prefix-hit rate of repeated prompts in the last 5 s is at least half of the first 5 s;
6. planner failover: `kill -9` the leading planner; `planner_failover_seconds` = time until the standby
   holds the leader lock (target: within 2 planner intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._chaos_cluster import ChaosCluster, kill_kind
from benchmarks._report import Target, add_arguments, finish
from benchmarks._streams import StreamResult, closed_loop, prompt, run_streams
from common.vocab import ROLES, Role

# Killed in this order (decode, prefill, colocated): the disaggregated roles first, while P/D streams
# are in flight.
ROLES_TO_KILL: tuple[Role, ...] = tuple(reversed(ROLES))
ROLE_WAIT_SECONDS = 90.0  # for the planner to (re)start a worker of a kind before it counts as skipped
# ~1,360 tokens: over the gateway's 256-token P/D threshold, and too long for a colocated worker to meet
# TTFT on the seeded profiles (see _chaos_cluster.LONG_WARM_CLASS)
LONG_PROMPT_WORDS = 480


def prompts(n: int, offset: int = 0) -> list[str]:
    return [prompt(offset + i, LONG_PROMPT_WORDS if i % 2 else 12) for i in range(n)]


def compare(results: list[StreamResult], baseline: list[StreamResult]) -> dict[str, int]:
    lost = sum(1 for r in results if not r.ok)
    mismatches = sum(1 for r, b in zip(results, baseline, strict=True) if r.ok and r.token_ids != b.token_ids)
    return {"lost": lost, "mismatches": mismatches, "migrations": sum(r.migrations for r in results),
            "retries": sum(r.retries for r in results), "pd_routes": sum(r.disaggregated for r in results)}


def kill_kinds(cluster: ChaosCluster) -> tuple[str, ...]:
    """Every kind that must be killed: the three roles, and `csd` when the cluster has a CSD pool or
    runs a CSD worker."""
    present = {kill_kind(w) for w in cluster.workers()}
    return (*ROLES_TO_KILL, "csd") if "csd" in present or cluster.declares_csd() else ROLES_TO_KILL


async def _wait_for_pid(cluster: ChaosCluster, kind: str, timeout_seconds: float) -> int | None:
    """A live worker of `kind`; waits for the planner to start one (e.g. a replacement) if none runs."""
    deadline = time.monotonic() + timeout_seconds
    while (pid := cluster.worker_pid(kind)) is None and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    return pid


async def _kill_during(cluster: ChaosCluster, role: str, texts: list[str], max_tokens: int) -> dict[str, Any]:
    pid = await _wait_for_pid(cluster, role, ROLE_WAIT_SECONDS)
    if pid is None:
        return {"role": role, "skipped": f"no {role} worker ran within {ROLE_WAIT_SECONDS:g} s"}
    started = asyncio.Event()
    counts = {"chunks": 0}
    # A prefill worker holds a request only until its first token: kill it as soon as streams flow
    # (the long prompts queue on it). Decode and colocated workers: once streams are well under way.
    threshold = 1 if role == "prefill" else len(texts) // 4 * 3

    def on_token() -> None:
        counts["chunks"] += 1
        if counts["chunks"] >= threshold:
            started.set()

    task = asyncio.create_task(run_streams(cluster.grpc_address, cluster.api_key, cluster.model, texts,
                                           max_tokens, on_token))
    await asyncio.wait_for(started.wait(), 120)
    os.kill(pid, signal.SIGKILL)
    results = await task
    return {"role": role, "killed_pid": pid, "results": results}


async def scenario_worker_kills(cluster: ChaosCluster, args: argparse.Namespace) -> dict[str, Any]:
    """Each kill runs on prompts never sent before, so that no prefix is cached and the long ones take
    the P/D path (the gateway sends a prompt there only when >= 256 of its tokens are uncached). The
    reference is the same prompts sent again after the cluster recovered, without a fault."""
    out: dict[str, Any] = {"lost_requests": 0, "token_mismatches": 0, "by_role": {}}
    for k, role in enumerate(kill_kinds(cluster)):
        texts = prompts(args.streams, offset=(k + 1) * 10_000)
        run = await _kill_during(cluster, role, texts, args.max_tokens)
        # The planner's actuator replaces the dead worker; the reference and the next kill wait for that.
        run["replaced"] = await cluster.wait_for_workers(timeout_seconds=180)
        if "results" in run:
            reference = await run_streams(cluster.grpc_address, cluster.api_key, cluster.model, texts,
                                          args.max_tokens)
            stats = compare(run.pop("results"), reference)
            out["lost_requests"] += stats["lost"]
            out["token_mismatches"] += stats["mismatches"]
            run.update(stats, reference_failed=sum(not r.ok for r in reference))
        out["by_role"][role] = run
    return out


async def scenario_corruption(cluster: ChaosCluster, args: argparse.Namespace,
                              baseline: list[StreamResult]) -> dict[str, Any]:
    """Corrupt every KV block in Redis and up to `--corrupt` block files per disk tier (at least
    `--corrupt` in all), restart the workers so their pools are empty, and replay the streams. A corrupt
    block that a worker reads must be dropped (removed from its tier) and recomputed: `detected` counts
    the corrupted entries that no longer hold the corrupt bytes afterwards."""
    redis_corrupted = cluster.corrupt_redis_blocks(max(args.corrupt, 1_000_000))
    disk_corrupted = cluster.corrupt_disk_blocks(args.corrupt)
    replaced = await cluster.restart_workers_memory()
    results = await run_streams(cluster.grpc_address, cluster.api_key, cluster.model, prompts(args.streams),
                                args.max_tokens)
    stats = compare(results, baseline)
    detected = cluster.corrupt_entries_changed()
    return {"corrupted_redis_blocks": redis_corrupted, "corrupted_disk_blocks": disk_corrupted,
            "corrupt_blocks_used": stats["mismatches"], "lost": stats["lost"],
            "corrupt_entries_dropped_or_rewritten": detected, "workers_replaced": replaced}


async def scenario_redis_outage(cluster: ChaosCluster, args: argparse.Namespace) -> dict[str, Any]:
    log: list[tuple[float, StreamResult]] = []
    t0 = time.monotonic()
    texts = [prompt(1000 + i, 40) for i in range(8)]  # few distinct prompts: repeats hit the prefix cache
    load = asyncio.create_task(closed_loop(cluster.grpc_address, cluster.api_key, cluster.model,
                                           max(2, args.streams // 4), 15 + args.outage, texts,
                                           args.max_tokens, log))
    await asyncio.sleep(5)
    down_at = time.monotonic()
    cluster.stop_redis()
    await asyncio.sleep(args.outage)
    cluster.start_redis()
    up_at = time.monotonic()
    await load
    end = t0 + 15 + args.outage  # the load's own end: a stalled stream finishing later must not shift it

    def hit_rate(lo: float, hi: float) -> float:
        window = [r for t, r in log if lo <= t < hi and r.ok]
        return sum(1 for r in window if r.cached_prompt_tokens > 0) / len(window) if window else 0.0

    before, after = hit_rate(t0, down_at), hit_rate(end - 5, end)
    return {"failed_requests_redis_outage": sum(1 for _, r in log if not r.ok),
            "requests_during_outage": sum(1 for t, _ in log if down_at <= t < up_at),
            "requests_total": len(log), "stalled_until_deadline": sum(1 for t, _ in log if t > end + 30),
            "hit_rate_before": round(before, 3),
            "hit_rate_after_restart": round(after, 3), "hit_rate_recovered": after >= 0.5 * before > 0,
            "errors_sample": sorted({r.error for _, r in log if r.error})[:3]}


async def scenario_disk_full(cluster: ChaosCluster, args: argparse.Namespace) -> dict[str, Any]:
    cap = args.disk_mb * 2**20
    failed = sent = 0
    batch = 0
    fill_before = cluster.max_disk_tier_bytes() / cap
    # At least two batches: the tiers may already be full from the earlier scenarios, which is the
    # state to serve in; then more until a tier holds 90 % of its cap.
    while batch < 2 or (cluster.max_disk_tier_bytes() < 0.9 * cap and batch < args.disk_batches):
        texts = [prompt(5000 + batch * 16 + i, LONG_PROMPT_WORDS) for i in range(16)]
        results = await run_streams(cluster.grpc_address, cluster.api_key, cluster.model, texts, 2)
        failed += sum(1 for r in results if not r.ok)
        sent += len(results)
        batch += 1
    return {"failed_requests_disk_full": failed, "requests": sent,
            "fill_fraction_before": round(fill_before, 3),
            "disk_tier_fill_fraction": round(cluster.max_disk_tier_bytes() / cap, 3)}


async def run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    cluster = ChaosCluster(run_dir, disk_tier_mb=args.disk_mb)
    result: dict[str, Any] = {}
    try:
        await asyncio.to_thread(cluster.start)
        baseline = await run_streams(cluster.grpc_address, cluster.api_key, cluster.model,
                                     prompts(args.streams), args.max_tokens)
        result["baseline_failed"] = sum(1 for r in baseline if not r.ok)
        again = await run_streams(cluster.grpc_address, cluster.api_key, cluster.model, prompts(args.streams),
                                  args.max_tokens)
        result["no_fault_mismatches"] = compare(again, baseline)["mismatches"]  # determinism of the paths
        result["baseline_pd_routes"] = sum(r.disaggregated for r in baseline)
        kills = await scenario_worker_kills(cluster, args)
        result.update(lost_requests=kills["lost_requests"], token_mismatches=kills["token_mismatches"],
                      worker_kills=kills["by_role"])
        disk = await scenario_disk_full(cluster, args)
        result.update(failed_requests_disk_full=disk["failed_requests_disk_full"], disk_full=disk)
        corruption = await scenario_corruption(cluster, args, baseline)
        result.update(corrupt_blocks_used=corruption["corrupt_blocks_used"], corruption=corruption)
        outage = await scenario_redis_outage(cluster, args)
        result.update(failed_requests_redis_outage=outage["failed_requests_redis_outage"],
                      hit_rate_recovered=outage["hit_rate_recovered"], redis_outage=outage)
        await cluster.wait_for_workers(timeout_seconds=120)
        failover = await asyncio.to_thread(cluster.kill_leader_planner, 120.0)
        result.update(planner_failover_seconds=failover["seconds"], planner_failover=failover,
                      planner_failover_bound_seconds=2 * cluster.config.planner.interval_seconds)
    finally:
        secrets_leaked = cluster.secrets_in_logs()
        await asyncio.to_thread(cluster.stop)
    result["secrets_in_logs"] = secrets_leaked
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heteroserve bench chaos", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="16 streams, 8 tokens, 4 s outage")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down")
    parser.add_argument("--corrupt", type=int, default=100, help="blocks to corrupt in Redis and on disk")
    parser.add_argument("--disk-mb", type=int, default=2, help="cap of each worker's disk tier")
    parser.add_argument("--disk-batches", type=int, default=12, help="at most this many batches of 16")
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the run (logs) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.max_tokens, args.outage, args.disk_batches = 16, 8, 4.0, 4
    if args.run_dir is not None:  # kept afterwards: logs of every process under <run-dir>/logs
        result = asyncio.run(run(args, args.run_dir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="hs-bench-chaos-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    print("worker kills: " + ", ".join(f"{role} {'killed' if 'killed_pid' in run else 'NOT killed'}"
                                       for role, run in result.get("worker_kills", {}).items()))
    return finish(result, chaos_targets(result), args, skipped_parts(result))


def chaos_targets(result: dict[str, Any]) -> dict[str, Target]:
    """Zero losses everywhere, recovery of the hit rate, and planner failover within the stated bound:
    two planner intervals of the cluster's config (the lock TTL expires, then the standby's next tick)."""
    targets: dict[str, Target] = {key: ("==", 0) for key in (
        "lost_requests", "token_mismatches", "failed_requests_redis_outage", "corrupt_blocks_used",
        "failed_requests_disk_full", "secrets_in_logs")}
    targets["hit_rate_recovered"] = ("==", True)
    targets["planner_failover_seconds"] = ("<=", float(result.get("planner_failover_bound_seconds", 0.0)))
    return targets


def skipped_parts(result: dict[str, Any]) -> list[str]:
    """A kind of worker never killed fails the check (it is not 0 lost: nothing was tried)."""
    kills = result.get("worker_kills", {})
    return [f"kill {role}: {run['skipped']}" for role, run in kills.items() if "skipped" in run]
