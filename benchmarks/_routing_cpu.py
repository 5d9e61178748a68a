"""Who used the machine's CPU during one replay of `bench routing`: the system being replayed, the
bench's other (idle) systems, the replaying client, and everything outside the bench.

Why: on this shared 2-core machine a replay's TTFT moves with load nobody in the bench controls, and
in session 7 two long-horizon runs got vllm-router means of 77 and 438 ms (~20 ms in session 6) with
no record of what else ran. Each replay now carries its own account, so a disturbed replay is visible
in its result instead of guessed at afterwards.

CPU seconds are user + system time: the machine's busy time from `psutil.cpu_times()` (all but idle
and iowait), the bench's from its process tree (this process and every descendant: workers,
gateways, Redis servers, vllm-router), per process so a system's share can be split out. A process
that exits during the replay loses its last interval from the tree and shows up as outside; the
bench's systems stay up for the whole run, so that does not happen to them. psutil, already used by
`benchmarks/_vllm_peer.py`, reads /proc for us.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil


def machine_busy_s() -> float:
    """CPU seconds the machine has spent busy since boot, over all cores."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(procs: Iterable[psutil.Process]) -> dict[int, float]:
    out: dict[int, float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except psutil.Error:  # exited in between
            continue
    return out


@dataclass
class Snapshot:
    busy_s: float
    load: float
    per_pid: dict[int, float]


def snapshot() -> Snapshot:
    """The machine's busy seconds, its 1-minute load average and the CPU seconds of every process in
    this process's tree (this process included)."""
    return Snapshot(machine_busy_s(), os.getloadavg()[0], _cpu(_tree(os.getpid())))


def account(before: Snapshot, after: Snapshot, system_pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds between two snapshots: `machine_cpu_s` (all busy time), `system_cpu_s` (the process
    trees rooted at `system_pids`: the system replayed), `client_cpu_s` (this process),
    `other_systems_cpu_s` (the rest of the bench's tree) and `outside_cpu_s` (machine − bench: other
    tenants of the machine), with the load average at both ends."""
    def used(pid: int) -> float:
        return max(0.0, after.per_pid[pid] - before.per_pid.get(pid, 0.0))

    system = {p.pid for root in system_pids for p in _tree(root)} & after.per_pid.keys()
    me = os.getpid()
    bench = sum(used(pid) for pid in after.per_pid)
    system_s = sum(used(pid) for pid in system)
    client_s = used(me) if me in after.per_pid else 0.0
    machine = max(0.0, after.busy_s - before.busy_s)
    return {"machine_cpu_s": round(machine, 2), "system_cpu_s": round(system_s, 2),
            "client_cpu_s": round(client_s, 2),
            "other_systems_cpu_s": round(max(0.0, bench - system_s - client_s), 2),
            "outside_cpu_s": round(max(0.0, machine - bench), 2),
            "load_start": round(before.load, 2), "load_end": round(after.load, 2)}
