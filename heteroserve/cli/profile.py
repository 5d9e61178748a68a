"""`heteroserve profile`: measure a node type's workers in every role and write its profile file.

Either starts the workers itself (`--model DIR`: one idle worker per role on this machine, and a
private `redis-server` for the shared-tier path unless `--shared-tier-url` names one), or measures
running workers of the node type (`--colocated`, `--prefill`, `--decode` HOST:PORT; run them on the
node you profile). Writes one `placement.profile_file.NodeProfile` (JSON, schema 1) that
`heteroserve plan` (spec key `profiles`) and the planner (`profiles` in its file) compile directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError
from common.vocab import DEVICES, ENGINES
from heteroserve.cli._tls import add_tls_flag, tls_files

if TYPE_CHECKING:
    from control_plane.profiler.grid import ProfileGrid
    from placement.profile_file import NodeProfile

HELP = "measure prefill, decode and KV transfer of a node type in every role (profile file)"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="start local workers on this model directory")
    parser.add_argument("--model-name", default=None, help="model name in the profile (default: the "
                                                           "directory name)")
    parser.add_argument("--colocated", help="HOST:PORT of a running colocated worker")
    parser.add_argument("--prefill", help="HOST:PORT of a running prefill worker (the KV source)")
    parser.add_argument("--decode", help="HOST:PORT of a running decode worker")
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="device of the workers")
    parser.add_argument("--engine", default="native", choices=ENGINES, help="engine of the workers")
    parser.add_argument("--node-type", required=True, help="node type the profile is for (e.g. L4, cpu-32)")
    parser.add_argument("--shared-tier-url", default=None,
                        help="Redis of the shared KV tier (default with --model: a private redis-server)")
    grid = parser.add_argument_group("grid (defaults: control_plane.profiler.grid.ProfileGrid)")
    grid.add_argument("--input-tokens", type=_ints, default=None, help="prompt lengths (64,256,1024)")
    grid.add_argument("--prefill-batches", type=_ints, default=None, help="prefill batches (1,4,8)")
    grid.add_argument("--context-tokens", type=_ints, default=None, help="decode contexts (128,512,1024)")
    grid.add_argument("--decode-batches", type=_ints, default=None, help="decode batches (1,4,8)")
    grid.add_argument("--repeats", type=int, default=None, help="runs per point, the median kept (3)")
    parser.add_argument("--quick", action="store_true", help="the embedded cluster's small first-start grid")
    parser.add_argument("--kv-cache-mb", type=int, default=64, help="KV pool of the local workers (MiB)")
    parser.add_argument("--out", type=Path, required=True, help="profile file to write (JSON)")
    parser.add_argument("--cluster-token-env", default="HETEROSERVE_CLUSTER_TOKEN",
                        help="environment variable holding the cluster token (running workers)")
    add_tls_flag(parser)  # running workers on mutual TLS: the profiler's certificate


def _grid(args: argparse.Namespace) -> ProfileGrid:
    from dataclasses import replace

    from control_plane.profiler.grid import FIRST_START_GRID, ProfileGrid

    base = FIRST_START_GRID if args.quick else ProfileGrid()
    names = ("input_tokens", "prefill_batches", "context_tokens", "decode_batches", "repeats")
    changes = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    try:
        return replace(base, **changes)
    except ValueError as exc:
        raise ConfigError(str(exc), source="command line") from None


def run(args: argparse.Namespace) -> int:
    grid = _grid(args)
    if args.model is not None:
        profile = _local(args, grid)
    elif args.prefill:
        profile = _remote(args, grid)
    else:
        raise ConfigError("give --model DIR, or --prefill HOST:PORT (with --colocated / --decode)",
                          field="model", source="command line")
    from placement.profile_file import save_node_profile

    save_node_profile(args.out, profile)
    _print_summary(profile)
    print(f"wrote {args.out}")
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _local(args: argparse.Namespace, grid: ProfileGrid) -> NodeProfile:
    from common.localredis import LocalRedis, RedisServerConfig
    from heteroserve.embedded.profiling import LocalNodeType, WorkerSettings, profile_local

    node = LocalNodeType(args.node_type, args.device, args.engine)
    name = args.model_name or Path(args.model).name
    settings = WorkerSettings(kv_cache_mb=args.kv_cache_mb)
    if args.shared_tier_url:
        return profile_local(args.model, name, node, grid, shared_tier_url=args.shared_tier_url,
                             settings=settings, progress=_say)
    with tempfile.TemporaryDirectory(prefix="heteroserve-profile-redis-") as tmp, \
            LocalRedis(RedisServerConfig(data_dir=Path(tmp))) as redis:
        return profile_local(args.model, name, node, grid, shared_tier_url=redis.url, settings=settings,
                             progress=_say)


def _remote(args: argparse.Namespace, grid: ProfileGrid) -> NodeProfile:
    from common.tls import ClientTLS
    from control_plane.profiler.run import Identity, RoleWorkers, profile_node
    from workerrpc.client import WorkerClient

    token = os.environ.get(args.cluster_token_env, "")
    files = tls_files(args)
    tls = ClientTLS(files) if files is not None else None
    identity = Identity(model=args.model_name or "model", node_type=args.node_type, device=args.device,
                        engine=args.engine)

    async def measure() -> NodeProfile:
        clients = {role: WorkerClient(address, token, stream_timeout_seconds=600, tls=tls)
                   for role, address in (("colocated", args.colocated), ("prefill", args.prefill),
                                         ("decode", args.decode)) if address}
        try:
            workers = RoleWorkers(clients.get("colocated"), clients["prefill"], clients.get("decode"),
                                  args.shared_tier_url)
            return await profile_node(workers, grid, identity, _say)
        finally:
            for client in clients.values():
                await client.close()

    return asyncio.run(measure())


def _print_summary(profile: NodeProfile) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{profile.model} on {profile.node_type} ({profile.engine}, {profile.device})")
    for column in ("role", "prefill points", "decode points"):
        table.add_column(column)
    for role, rp in profile.roles.items():
        table.add_row(role, str(len(rp.prefill)), str(len(rp.decode)))
    for t in profile.transfer:
        table.add_row(f"transfer {t.path}", f"{t.bytes_per_second / 1e6:.1f} MB/s",
                      f"{t.latency_seconds * 1e3:.2f} ms latency")
    Console(stderr=True).print(table)
