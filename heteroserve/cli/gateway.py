"""`heteroserve gateway`: run the OpenAI-compatible REST and gRPC gateway"""

from __future__ import annotations

import argparse

from heteroserve.cli._pending import accept_anything, not_built

HELP = "run the OpenAI-compatible REST and gRPC gateway"


def configure(parser: argparse.ArgumentParser) -> None:
    accept_anything(parser)


def run(args: argparse.Namespace) -> int:
    return not_built("gateway", "Gateway, router and client SDK")
