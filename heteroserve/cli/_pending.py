"""Helper for commands whose capability is not built yet: they say so and exit non-zero."""

from __future__ import annotations

import argparse
import sys


def not_built(command: str, issue: str) -> int:
    print(f"heteroserve {command}: not built yet (tracked in the issue '{issue}').", file=sys.stderr)
    return 3


def accept_anything(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
