"""`heteroserve generate`: send one prompt to a gateway and stream the answer"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "send one prompt to a gateway and stream the answer"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("generate", "Gateway, router and client SDK")
