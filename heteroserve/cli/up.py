"""`heteroserve up`: start the embedded cluster (Redis, gateway, planner, workers) on this machine.

Runs in the foreground: prints the endpoints and the API key, then one line per plan change, until
Ctrl-C or SIGTERM (e.g. from `heteroserve down`), which stops everything it started. Each process
logs to `<run-dir>/logs/<name>.log`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "start the embedded cluster (Redis, gateway, planner, workers) on this machine"
DEFAULT_RUN_DIR = Path(".heteroserve/run")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="embedded cluster file (default: deploy/examples/embedded.yaml)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help=f"where logs, data, pids and cluster.json go (default: {DEFAULT_RUN_DIR})")


def run(args: argparse.Namespace) -> int:
    from heteroserve.embedded.foreground import run_up

    return run_up(args.config, args.run_dir, args.log_level)
