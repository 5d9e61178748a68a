"""`die_with_parent`: the child is started through `setpriv --pdeathsig` (no Python in the forked child)
and really dies when its parent is SIGKILLed, even a parent with other threads running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from common.lifetime import die_with_parent

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent("""
    import subprocess, threading, time
    from common.lifetime import die_with_parent

    def spin():
        while True:
            sum(range(1000))

    for _ in range(4):  # threads busy while the child is forked, as gRPC's are in a gateway or test
        threading.Thread(target=spin, daemon=True).start()
    argv, preexec = die_with_parent(["sleep", "300"])
    child = subprocess.Popen(argv, preexec_fn=preexec)
    print(child.pid, flush=True)
    time.sleep(300)
""")


def test_the_child_runs_through_setpriv_with_no_preexec_fn() -> None:
    argv, preexec = die_with_parent(["sleep", "1"])
    assert preexec is None
    assert argv == [shutil.which("setpriv"), "--pdeathsig", "KILL", "sleep", "1"]
    argv, _ = die_with_parent(["sleep", "1"], signal.SIGTERM)
    assert argv[1:3] == ["--pdeathsig", "TERM"]


def test_the_child_dies_when_its_threaded_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10  # setpriv execs sleep in the same pid
        while Path(f"/proc/{child_pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "setpriv never started sleep"
            time.sleep(0.01)
    finally:
        parent.kill()
        parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{child_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # dead, waiting for init to reap it
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        raise AssertionError(f"child {child_pid} outlived its SIGKILLed parent by 10 s")
