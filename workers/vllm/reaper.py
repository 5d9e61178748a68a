"""vLLM's engine processes end with the worker, however the worker ends.

vLLM spawns its engine core (and the core its model process) with multiprocessing; they do not watch
their parent, so a worker that is SIGKILLed (OOM killer, a CI limit, `kill -9` in a chaos test) would
leave them running, holding the model's memory and spinning. `Reaper` starts a tiny process that
asks the kernel for SIGTERM when the worker's main thread exits (PR_SET_PDEATHSIG, set by the reaper itself)
and then SIGKILLs the engine processes it was given. A clean stop (`stop()`, after vLLM's own shutdown)
has the reaper reap too: an engine process vLLM's shutdown left behind is killed, not left running.
"""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = """
import ctypes, os, signal, sys
parent, pids = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
def reap(*_):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, reap)
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:  # the worker died before the line above: reap now
    reap()
while True:
    signal.pause()
"""


class Reaper:
    """Kills `pids` if this process dies before `stop()`. Start it from the main thread (the kernel
    signals when the thread that started it exits)."""

    def __init__(self, pids: list[int]) -> None:
        # No preexec_fn: this process runs gRPC's threads by now, and running Python in a forked child
        # of it is unsafe (a gRPC worker aborted with "epoll_wait error: Bad file descriptor" in a CI
        # run); the reaper arms its own parent-death signal instead (PR_SET_PDEATHSIG after exec is the
        # same as before it, and it checks that the worker is still its parent).
        self._proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(os.getpid()), *map(str, pids)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    @classmethod
    def for_children(cls) -> Reaper:
        """A reaper of every process this one has spawned so far (vLLM's engine processes)."""
        import psutil

        return cls([child.pid for child in psutil.Process().children(recursive=True)])

    def stop(self) -> None:
        """Kill what is left of the engine processes, then end the reaper."""
        if self._proc.poll() is None:
            self._proc.terminate()  # its handler SIGKILLs the pids (gone already after a clean shutdown)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
