"""Child processes of the embedded cluster: start with a log file, wait until ready, stop in order.

Every child runs in its own session (so a Ctrl-C in the terminal reaches only the launcher, which
then stops the children in order) and writes stdout + stderr to `<run_dir>/logs/<name>.log`.
Every child also dies with the thread that started it (`common.lifetime`, the parent-death signal):
a launcher or benchmark that is SIGKILLed leaves no process behind. Start children from the main
thread or from an executor thread kept for the whole run, never from a short-lived thread.
`stop()` sends SIGTERM, waits `timeout` seconds, then SIGKILLs. `stop_pid()` does the same for a
process known only by its pid (used by `heteroserve down` after the launcher died).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from common.errors import UnavailableError
from common.lifetime import die_with_parent

PYTHON = sys.executable


def heteroserve_command(*args: str, log_level: str = "INFO") -> list[str]:
    """argv that runs `heteroserve <args>` with this interpreter (no PATH lookup)."""
    return [PYTHON, "-m", "heteroserve.cli", "--log-level", log_level, *args]


class ManagedProcess:
    """One child process with its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            args, preexec = die_with_parent(argv)
            self.proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, **(env or {})}, preexec_fn=preexec)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise UnavailableError naming the log file if the process has exited."""
        if not self.alive():
            raise UnavailableError(f"{self.name} exited with code {self.proc.returncode}; "
                                   f"last lines of {self.log_path}:\n{tail(self.log_path)}")

    def wait_for_log(self, needle: str, timeout_seconds: float) -> str:
        """Wait until a line containing `needle` appears in the log; returns that line."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if needle in line:
                    return line
            self.check_alive()
            time.sleep(0.1)
        raise UnavailableError(f"{self.name} did not log {needle!r} within {timeout_seconds:.0f}s; "
                               f"see {self.log_path}")

    def stop(self, timeout_seconds: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] == "Z"


def cmdline(pid: int) -> str:
    """The process's command line (space-joined), "" if unknown."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_pid(pid: int, timeout_seconds: float = 30.0, *, expect: str | None = None) -> bool:
    """SIGTERM `pid`, wait, SIGKILL. True if it is gone afterwards. With `expect`, a process whose
    command line does not contain it is left alone (the pid was reused by something else)."""
    if not pid_alive(pid):
        return True
    if expect is not None and expect not in cmdline(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    return not pid_alive(pid)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class NotReadyError(UnavailableError):
    """A process exited, or printed no ready line in time. `stderr` holds what it wrote."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def start_until_ready(argv: Sequence[str], ready_marker: str, *, env: Mapping[str, str] | None = None,
                      timeout_seconds: float = 90.0) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start `argv` with stdout and stderr piped and wait for a stdout line containing `ready_marker`.

    Returns (process, the ready line stripped, stderr lines — a list that keeps filling while the process
    runs). A process that exits or stays silent past `timeout_seconds` is killed and raises
    `NotReadyError`. The pumping threads are daemons and end when the process closes its pipes.
    """
    args, preexec = die_with_parent(argv)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=preexec)
    lines: queue.Queue[str] = queue.Queue()
    stderr_lines: list[str] = []
    threading.Thread(target=_pump, args=(proc.stdout, lines.put), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, stderr_lines.append), daemon=True).start()
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if ready_marker in line:
            return proc, line.strip(), stderr_lines
    proc.kill()
    proc.wait(timeout=10)
    stderr = "".join(stderr_lines)
    raise NotReadyError(f"{' '.join(argv[:3])} did not print {ready_marker!r} within {timeout_seconds:.0f}s "
                        f"(exit code {proc.returncode})", stderr[-3000:])


def _pump(stream: IO[str] | None, sink: Callable[[str], None]) -> None:
    for line in stream or ():
        sink(line)
