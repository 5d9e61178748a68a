"""`heteroserve down`: stop everything `heteroserve up` started in a run dir; nothing is left behind."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "stop the embedded cluster started by `heteroserve up`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path(".heteroserve/run"),
                        help="the run dir given to `heteroserve up` (default: .heteroserve/run)")


def run(args: argparse.Namespace) -> int:
    from heteroserve.embedded.foreground import run_down

    return run_down(args.run_dir)
