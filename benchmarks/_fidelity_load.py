"""What else ran on this machine during a phase of `bench fidelity`: a diagnostic, not a calibration.

The prediction is calibrated before the window (profiles, then the probe), and the window is served
after; on this shared machine other engineers' jobs come and go in between (load average 1.3 → 4.2
in the 18:28 UTC run of 2026-12-07, 7.1 → 3.4 in the 21:02 UTC run, whose probe saw a worker twice as
slow as the window did). To say how much of an error is that, each phase records the cores busy with
processes **outside** the benchmark's own process tree (the bench, its Redis, gateway and workers):
the machine's busy time from /proc/stat minus the tree's CPU time, over the phase's wall time.
Nothing here feeds a prediction or a target.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (nor waiting on I/O) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICKS


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds of `pid` (default this process), its reaped children and every live descendant."""
    root = os.getpid() if pid is None else pid
    total = 0.0
    for p in [root, *descendants(root)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        own = fields[11:15] if p == root else fields[11:13]  # utime stime (+ cutime cstime: reaped children)
        total += sum(int(x) for x in own) / TICKS
    return total


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float
    ours: float


def snapshot() -> Snapshot:
    return Snapshot(time.monotonic(), machine_busy_seconds(), tree_cpu_seconds())


def foreign_cores(before: Snapshot, after: Snapshot) -> float | None:
    """Mean cores busy outside this process tree between the snapshots (≥ 0); None for no time."""
    wall = after.wall - before.wall
    if wall <= 0:
        return None
    return max(0.0, ((after.busy - before.busy) - (after.ours - before.ours)) / wall)
