"""`heteroserve up`: start the embedded cluster (Redis, gateway, planner, workers) on this machine"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "start the embedded cluster (Redis, gateway, planner, workers) on this machine"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("up", "Planner loop, actuators and the embedded cluster")
