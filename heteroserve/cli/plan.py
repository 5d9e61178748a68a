"""`heteroserve plan`: solve a placement spec (YAML or JSON); --simulate TRACE replays a trace against the plan"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "solve a placement spec (YAML or JSON); --simulate TRACE replays a trace against the plan"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("plan", "Placement")
