"""`heteroserve profile`: measure a worker's sustainable rate per length bucket under an SLO.

Either profiles a running worker (`--worker HOST:PORT`, the way to profile a real node type: run one
worker there and point this at it) or starts a local worker on `--model DIR` for the duration. Writes
a Mélange-format profile file that `heteroserve plan` and the planner load as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConfigError
from common.vocab import DEVICES

if TYPE_CHECKING:
    from control_plane.profiler.profile import BucketResult, ProfileConfig

HELP = "measure a worker's sustainable rate per length bucket under an SLO (Mélange-format profile)"


def _edges(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--worker", help="HOST:PORT of a running worker to profile")
    target.add_argument("--model", type=Path, help="start a local worker on this model directory")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="device of the local worker (with --model)")
    parser.add_argument("--node-type", required=True, help="node type the profile is for (e.g. L4, cpu-32)")
    parser.add_argument("--cost-per-hour", type=float, required=True, help="price of one instance, $/h")
    parser.add_argument("--ttft-slo-ms", type=float, default=2000.0, help="p90 TTFT SLO (default 2000)")
    parser.add_argument("--tpot-slo-ms", type=float, default=200.0, help="p90 TPOT SLO (default 200)")
    parser.add_argument("--input-edges", type=_edges, default=(0, 64, 256, 1024),
                        help="input-length bucket edges (default 0,64,256,1024)")
    parser.add_argument("--output-edges", type=_edges, default=(0, 32, 128),
                        help="output-length bucket edges (default 0,32,128)")
    parser.add_argument("--probe-seconds", type=float, default=5.0, help="length of each load probe")
    parser.add_argument("--start-rate", type=float, default=1.0, help="first rate tried, req/s")
    parser.add_argument("--min-rate", type=float, default=0.25,
                        help="below this rate a bucket is reported as 0 req/s (default 0.25)")
    parser.add_argument("--max-doublings", type=int, default=8,
                        help="how many times the rate may double while the SLO still holds (default 8)")
    parser.add_argument("--vocab-size", type=int, default=256, help="prompt token ids are drawn below this")
    parser.add_argument("--out", type=Path, required=True, help="profile file to write (JSON)")
    parser.add_argument("--cluster-token-env", default="HETEROSERVE_CLUSTER_TOKEN",
                        help="environment variable holding the cluster token")


def run(args: argparse.Namespace) -> int:
    from control_plane.profiler.profile import ProfileConfig
    from control_plane.profiler.search import SLO, SearchOptions

    try:
        config = ProfileConfig(
            node_type=args.node_type, cost_per_hour=args.cost_per_hour,
            slo=SLO(args.ttft_slo_ms / 1e3, args.tpot_slo_ms / 1e3),
            input_edges=args.input_edges, output_edges=args.output_edges,
            probe_seconds=args.probe_seconds, vocab_size=args.vocab_size,
            search=SearchOptions(start_rate=args.start_rate, min_rate=args.min_rate,
                                 max_doublings=args.max_doublings),
        )
    except ValueError as exc:
        raise ConfigError(str(exc), source="command line") from None
    if args.worker:
        token = os.environ.get(args.cluster_token_env, "")
        return asyncio.run(_profile(args.worker, token, config, args.out, model=args.worker))
    return _with_local_worker(args, config)


def _with_local_worker(args: argparse.Namespace, config: ProfileConfig) -> int:
    from common.localredis import free_port
    from heteroserve.embedded.processes import ManagedProcess, heteroserve_command

    token = secrets.token_urlsafe(24)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="heteroserve-profile-") as tmp:
        argv = heteroserve_command("worker", "--model", str(args.model), "--device", args.device,
                                   "--role", "colocated", "--port", str(port), "--node-type", args.node_type,
                                   *(["--csd-path", tmp] if args.device == "csd" else []))
        worker = ManagedProcess("worker", argv, Path(tmp) / "worker.log",
                                env={"HETEROSERVE_CLUSTER_TOKEN": token})
        try:
            worker.wait_for_log(" ready on ", timeout_seconds=120)
            print(f"profiling a local worker on {args.model} (127.0.0.1:{port})", file=sys.stderr)
            return asyncio.run(_profile(f"127.0.0.1:{port}", token, config, args.out,
                                        model=Path(args.model).name))
        finally:
            worker.stop()


async def _profile(address: str, token: str, config: ProfileConfig, out: Path, model: str) -> int:
    from control_plane.profiler.profile import profile_document, profile_worker, write_profile
    from workerrpc.client import WorkerClient

    async with WorkerClient(address, token, stream_timeout_seconds=600) as client:
        grid = await profile_worker(client, config, progress=lambda line: print(line, file=sys.stderr))
    write_profile(out, profile_document(config, grid, model=model, worker=address))
    _print_table(config, grid)
    print(f"wrote {out}")
    return 0


def _print_table(config: ProfileConfig, grid: list[list[BucketResult]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sustainable req/s under the SLO ({config.node_type})")
    table.add_column("input \\ output tokens")
    for cell in grid[0]:
        table.add_column(str(cell.output_tokens), justify="right")
    for row in grid:
        table.add_row(str(row[0].input_tokens), *(f"{cell.rate:.3g}" for cell in row))
    Console(stderr=True).print(table)
