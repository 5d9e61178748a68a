"""What else ran on this machine during a phase of `bench fidelity`: a diagnostic, not a calibration.

The prediction is calibrated before the window (profiles, then the probe), and the window is served
after; on this shared machine other engineers' jobs come and go in between (load average 1.3 → 4.2
in the 18:28 UTC run of 2026-12-07, 7.1 → 3.4 in the 21:02 UTC run, whose probe saw a worker twice as
slow as the window did). To say how much of an error is that, each phase records the cores busy with
processes **outside** the benchmark's own process tree (the bench, its Redis, gateway and workers):
the machine's busy time from /proc/stat minus the tree's CPU time, over the phase's wall time.
Each phase also records the cores each part of the tree kept busy (`part_cores`: workers, gateway,
Redis, this process as load generator), to see whether the parts that are not workers, which the
simulator does not model, compete with the workers for the two cores.
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


def part_of(pid: int) -> str:
    """Which part of the benchmark's tree `pid` is, from its command line: `worker`, `gateway`,
    `redis`, `bench` (this process: the load generator and the probe's clients) or `other`."""
    if pid == os.getpid():
        return "bench"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "other"
    for part in ("worker", "gateway"):
        if part in argv:
            return part
    return "redis" if any("redis-server" in a for a in argv) else "other"


def tree_cpu_by_part() -> dict[str, float]:
    """CPU seconds of each part of this process tree (`part_of`), live processes only (own time)."""
    out: dict[str, float] = {}
    for p in [os.getpid(), *descendants(os.getpid())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        part = part_of(p)
        out[part] = out.get(part, 0.0) + sum(int(x) for x in fields[11:13]) / TICKS
    return out


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float
    ours: float
    parts: dict[str, float]


def snapshot() -> Snapshot:
    return Snapshot(time.monotonic(), machine_busy_seconds(), tree_cpu_seconds(), tree_cpu_by_part())


def part_cores(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Mean cores each part of the tree kept busy between the snapshots (parts alive at both)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return {}
    return {k: round(max(0.0, (after.parts[k] - before.parts.get(k, 0.0)) / wall), 4)
            for k in after.parts if k in before.parts}


def foreign_cores(before: Snapshot, after: Snapshot) -> float | None:
    """Mean cores busy outside this process tree between the snapshots (≥ 0); None for no time."""
    wall = after.wall - before.wall
    if wall <= 0:
        return None
    return max(0.0, ((after.busy - before.busy) - (after.ours - before.ours)) / wall)
