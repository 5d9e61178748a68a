"""`heteroserve planner`: run the planner loop (observe traffic, re-plan, actuate)"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "run the planner loop (observe traffic, re-plan, actuate)"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("planner", "Planner loop, actuators and the embedded cluster")
