"""`heteroserve demo`: the embedded cluster end to end on this machine (see heteroserve/embedded/demo.py)."""

from __future__ import annotations

import argparse

HELP = "start the embedded cluster, push a realistic workload through it, print the report, stop"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default=".heteroserve/demo", help="where the demo writes its files")


def run(args: argparse.Namespace) -> int:
    from heteroserve.embedded.demo import run_demo

    return run_demo(args.run_dir)
