"""`heteroserve status`: show plan, pools, workers, load, cache hit rates and cost"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "show plan, pools, workers, load, cache hit rates and cost"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("status", "Planner loop, actuators and the embedded cluster")
