"""`heteroserve worker`: run one gRPC worker (engine on cpu, cuda or csd)"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "run one gRPC worker (engine on cpu, cuda or csd)"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("worker", "Worker engine and gRPC worker")
