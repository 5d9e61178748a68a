"""The `heteroserve` command line.

Each command lives in its own module under `heteroserve.cli`. Every module is imported to build the
parser, so a module imports only the standard library and `common.errors`/`logs` at the top and its
heavy dependencies (torch, grpc, the components) inside `run()`: that
keeps `heteroserve --help` fast and lets the SDK-only install (no torch) run the commands it needs.
A command module defines `HELP` (one line), `configure(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from common.errors import HeteroserveError
from heteroserve import __version__

# command name -> module path. Order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "up": "heteroserve.cli.up",
    "down": "heteroserve.cli.down",
    "demo": "heteroserve.cli.demo",
    "status": "heteroserve.cli.status",
    "plan": "heteroserve.cli.plan",
    "profile": "heteroserve.cli.profile",
    "bench": "heteroserve.cli.bench",
    "generate": "heteroserve.cli.generate",
    "model": "heteroserve.cli.model",
    "worker": "heteroserve.cli.worker",
    "gateway": "heteroserve.cli.gateway",
    "planner": "heteroserve.cli.planner",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heteroserve",
        description="Cost-aware LLM serving on heterogeneous GPU, CPU and CSD fleets.",
    )
    parser.add_argument("--version", action="version", version=f"heteroserve {__version__}")
    parser.add_argument("--log-level", default="INFO", help="log level (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from common.logs import setup_logging

    setup_logging(args.log_level, component=args.command)
    try:
        return int(args._run(args))
    except HeteroserveError as exc:
        print(f"heteroserve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
