"""`heteroserve down`: stop everything `heteroserve up` started in a run dir; nothing is left behind."""

from __future__ import annotations

import argparse
from pathlib import Path

from heteroserve.cli.up import DEFAULT_RUN_DIR

HELP = "stop the embedded cluster started by `heteroserve up`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help=f"the run dir given to `heteroserve up` (default: {DEFAULT_RUN_DIR})")


def run(args: argparse.Namespace) -> int:
    from heteroserve.embedded.foreground import run_down

    return run_down(args.run_dir)
