"""`heteroserve profile`: measure a worker's sustainable rate per length bucket under an SLO"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "measure a worker's sustainable rate per length bucket under an SLO"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("profile", "Placement")
