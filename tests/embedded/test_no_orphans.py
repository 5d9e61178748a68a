"""No orphans: SIGKILL the parent of a real process tree and nothing of the tree is left.

The trees are real: `heteroserve up` (launcher → redis-server, planner, gateway; planner → workers),
and a benchmark `LocalCluster` (its process → redis-server, a worker) run in a child Python process.
Every process is identified by pid and start time (field 22 of /proc/<pid>/stat), so a pid reused by
an unrelated process in the meantime does not count as a survivor; a zombie (already dead, waiting
to be reaped by init) does not count either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common.lifetime import parent_death_preexec

pytestmark = pytest.mark.slow
GONE_WITHIN_SECONDS = 10.0

Identity = tuple[int, str]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on; the name may hold spaces


def identity(pid: int) -> Identity | None:
    fields = _stat(pid)
    return None if fields is None else (pid, fields[19])


def alive(process: Identity) -> bool:
    """The same process (pid and start time) exists and is not a zombie."""
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"


def descendants(root: int) -> set[Identity]:
    """Every live process below `root` (children, grandchildren, ...), from the ppid of each process."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[Identity] = set()
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        if (ident := identity(pid)) is not None and alive(ident):
            found.add(ident)
            todo += parents.get(pid, [])
    return found


def survivors_after_kill(parent: subprocess.Popen[str], tree: set[Identity]) -> set[Identity]:
    """SIGKILL `parent`, then wait up to GONE_WITHIN_SECONDS for `tree` to die; what is still alive."""
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    left = {p for p in tree if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {p for p in left if alive(p)}
    return left


def kill_all(processes: set[Identity]) -> None:
    for pid, _ in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def commands(processes: set[Identity]) -> list[str]:
    out = []
    for pid, _ in sorted(processes):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            argv = "?"
        out.append(f"{pid}: {argv}")
    return out


def test_sigkilled_launcher_leaves_no_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    up = subprocess.Popen([sys.executable, "-m", "heteroserve.cli", "up", "--run-dir", str(run_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tree: set[Identity] = set()
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "cluster.json").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.5)
        tree = descendants(up.pid)
        names = " ".join(commands(tree))
        # redis-server, planner, gateway, and the initial plan's workers (grandchildren, via the planner).
        assert "redis-server" in names and " planner " in names and " gateway " in names
        assert sum(" worker " in c for c in commands(tree)) >= 1, commands(tree)  # the idle plan: 1+
        left = survivors_after_kill(up, tree)
        assert not left, f"still running {GONE_WITHIN_SECONDS:.0f}s after SIGKILL: {commands(left)}"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        kill_all({p for p in tree if alive(p)})
        if up.stdout is not None:
            up.stdout.close()


BENCH_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from benchmarks._cluster import LocalCluster

    cluster = LocalCluster(Path(sys.argv[1]))
    redis_url = cluster.start_redis()
    cluster.start_worker(Path(sys.argv[2]), "orphan-check-worker", redis_url)
    print("READY", flush=True)
    time.sleep(600)
""")


def test_sigkilled_benchmark_cluster_leaves_no_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    bench = subprocess.Popen([sys.executable, "-c", BENCH_CHILD, str(tmp_path), str(tiny_model_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    tree: set[Identity] = set()
    try:
        assert bench.stdout is not None
        line = bench.stdout.readline()  # blocks until READY, or "" when the child died
        assert line.strip() == "READY", bench.stderr.read() if bench.stderr else ""
        tree = descendants(bench.pid)
        names = commands(tree)
        assert any("redis-server" in c for c in names) and any(" worker " in c for c in names), names
        left = survivors_after_kill(bench, tree)
        assert not left, f"still running {GONE_WITHIN_SECONDS:.0f}s after SIGKILL: {commands(left)}"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(timeout=10)
        kill_all({p for p in tree if alive(p)})
        for stream in (bench.stdout, bench.stderr):
            if stream is not None:
                stream.close()


RACE_CHILD = textwrap.dedent("""
    import os, sys
    from common.lifetime import parent_death_preexec

    def run_in_child(fn):
        pid = os.fork()
        if pid == 0:
            fn()
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    preexec = parent_death_preexec()  # records this process as the parent
    direct = run_in_child(preexec)  # its parent is the recorded one: goes on (exit 0)
    # A grandchild's parent is not the recorded process: as if the parent died before prctl.
    reparented = run_in_child(lambda: os._exit(run_in_child(preexec)))
    print(direct, reparented)
""")


def test_a_child_whose_parent_is_not_the_recorded_one_exits_at_once() -> None:
    """The fork/prctl race: when `getppid()` is no longer the recorded parent, the child exits 1."""
    assert parent_death_preexec() is not None, "Linux has PR_SET_PDEATHSIG"
    result = subprocess.run([sys.executable, "-c", RACE_CHILD], capture_output=True, text=True, timeout=30,
                            cwd=Path(__file__).resolve().parents[2], check=False)
    assert result.stdout.split() == ["0", "1"], result.stderr
