"""`heteroserve down`: stop everything `heteroserve up` started"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "stop everything `heteroserve up` started"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("down", "Planner loop, actuators and the embedded cluster")
