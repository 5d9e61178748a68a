"""`heteroserve status`: plan, pools, workers, load, cache hit rates and cost of the embedded cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from heteroserve.cli.up import DEFAULT_RUN_DIR

HELP = "show plan, pools, workers, load, cache hit rates and cost (live with --watch)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help=f"the run dir given to `heteroserve up` (default: {DEFAULT_RUN_DIR})")
    parser.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="refresh period with --watch")


def run(args: argparse.Namespace) -> int:
    from heteroserve.embedded.foreground import run_status

    return run_status(args.run_dir, watch=args.watch, interval_seconds=args.interval)
