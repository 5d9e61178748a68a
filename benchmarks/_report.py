"""The one target check of every benchmark: a verdict per target, the table it prints, the exit code.

A benchmark states its targets as `{metric name: (op, bound)}` with op `<=`, `>=` or `==`, and
collects its measured figures in a flat `result` mapping. `check(result, targets)` gives one `Verdict`
per target, in the targets' order. A target whose metric is missing, None or not a number/bool is
missed: a part that did not run never passes. Parts a benchmark could not run are listed in `skipped`
(one reason each) and fail the check as well.

`finish(result, targets, args, skipped)` prints the table (name, bound, measured, ✔/✘), then, with
`--json`, one JSON object as the last line (the result plus `targets`, `skipped` and `passed`), and
returns the exit code: 1 under `--check` when any target is missed or any part was skipped, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Target = tuple[str, float | bool]  # (op, bound), op one of OPS
OPS = ("<=", ">=", "==")
PASS, FAIL = "✔", "✘"


@dataclass(frozen=True)
class Verdict:
    name: str
    op: str
    bound: float | bool
    measured: Any
    ok: bool


def meets(value: Any, target: Target) -> bool:
    """Whether `value` meets `target`; False for None, NaN and anything not a number or bool."""
    op, bound = target
    if op not in OPS:
        raise ValueError(f"target op must be one of {OPS}, got {op!r}")
    if isinstance(value, bool) or isinstance(bound, bool):
        return op == "==" and value is bound
    if not isinstance(value, int | float) or math.isnan(value):
        return False
    if op == "<=":
        return value <= bound
    if op == ">=":
        return value >= bound
    return value == bound


def check(result: Mapping[str, Any], targets: Mapping[str, Target]) -> list[Verdict]:
    """One verdict per target, in the order of `targets`. Does not modify its inputs."""
    return [Verdict(name, op, bound, result.get(name), meets(result.get(name), (op, bound)))
            for name, (op, bound) in targets.items()]


def passed(verdicts: Sequence[Verdict], skipped: Sequence[str] = ()) -> bool:
    return all(v.ok for v in verdicts) and not skipped


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(verdicts: Sequence[Verdict], skipped: Sequence[str] = ()) -> str:
    """`target  bound  measured  ✔/✘` per verdict, then one `✘ skipped: reason` line per skipped part."""
    width = max([len(v.name) for v in verdicts] + [24])
    rows = [f"{'target':<{width}} {'bound':>12} {'measured':>12}"]
    rows += [f"{v.name:<{width}} {v.op + ' ' + _shown(v.bound):>12} {_shown(v.measured):>12}  "
             f"{PASS if v.ok else FAIL}" for v in verdicts]
    rows += [f"{'skipped: ' + reason:<{width + 26}}  {FAIL}" for reason in skipped]
    ok = passed(verdicts, skipped)
    rows.append(f"targets: {sum(v.ok for v in verdicts)}/{len(verdicts)} met"
                + (f", {len(skipped)} part(s) skipped" if skipped else "") + f"  {PASS if ok else FAIL}")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The two flags every benchmark takes: `--json` and `--check`."""
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when any target is missed or any part was skipped")


def finish(result: Mapping[str, Any], targets: Mapping[str, Target], args: argparse.Namespace,
           skipped: Sequence[str] = ()) -> int:
    """Print the target table (and the JSON line with `args.json`); the exit code under `args.check`."""
    verdicts = check(result, targets)
    ok = passed(verdicts, skipped)
    print(table(verdicts, skipped))
    if getattr(args, "json", False):
        summary = {"targets": {v.name: {"op": v.op, "bound": v.bound, "ok": v.ok} for v in verdicts},
                   "skipped": list(skipped), "passed": ok}
        print(json.dumps({**result, **summary}, default=str))
    return 1 if getattr(args, "check", False) and not ok else 0
