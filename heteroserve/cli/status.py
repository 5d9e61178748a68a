"""`heteroserve status`: plan, pools, workers, load, cache hit rates and cost of the embedded cluster.

`-o table` (default) fits the terminal; without a terminal (a pipe, a file) it prints at full width, as
`-o wide` always does: nothing is ever truncated outside a terminal. `-o json` prints one versioned
document (`heteroserve.embedded.status_output`, documented in docs/operations.md). With `--watch`, a
terminal table refreshes in place; any other output prints a new rendering (one JSON line) each time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from heteroserve.cli.up import DEFAULT_RUN_DIR

HELP = "show plan, pools, workers, load, cache hit rates and cost (live with --watch)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help=f"the run dir given to `heteroserve up` (default: {DEFAULT_RUN_DIR})")
    parser.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                        help="table: fit the terminal (full width when not a terminal); wide: never "
                             "truncate; json: the versioned document of docs/operations.md")
    parser.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="refresh period with --watch")


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from heteroserve.embedded.state import read_state
    from heteroserve.embedded.status import collect
    from heteroserve.embedded.status_output import parse_output, write_status

    output = parse_output(args.output)
    is_terminal = sys.stdout.isatty()
    if args.watch and output == "table" and is_terminal:
        from heteroserve.embedded.foreground import run_status

        return run_status(args.run_dir, watch=True, interval_seconds=args.interval)
    state = read_state(args.run_dir)
    try:
        while True:
            write_status(collect(state), output, sys.stdout, is_terminal=is_terminal)
            sys.stdout.flush()
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
