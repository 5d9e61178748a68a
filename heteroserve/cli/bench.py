"""`heteroserve bench NAME [--json] [...]`: run one benchmark from `benchmarks/`.

Each benchmark is a module `benchmarks/NAME.py` with `main(argv) -> int`. It prints the targets it checks
(name, bound, measured, ✔/✘) and, with `--json`, one JSON object as its last line. With `--check` it exits
1 when any target is missed or any part was skipped (`benchmarks/_report.py`); without, it exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from common.errors import InvalidRequestError

HELP = ("run a benchmark (engine, cache, placement, gateway, routing, system, chaos, load, scale, csd, "
        "fidelity)")


def available() -> list[str]:
    import benchmarks

    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="benchmark name")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the benchmark (e.g. --json)")


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.name not in names:
        raise InvalidRequestError(
            f"unknown benchmark {args.name!r}; available: {', '.join(names) or 'none yet'}", field="name"
        )
    module = importlib.import_module(f"benchmarks.{args.name}")
    return int(module.main(list(args.rest)))
