"""vLLM's engine processes end with the worker, however the worker ends.

vLLM spawns its engine core (and the core its model process) with multiprocessing; they do not watch
their parent, so a worker that is SIGKILLed (OOM killer, a CI limit, `kill -9` in a chaos test) would
leave them running, holding the model's memory and spinning. `Reaper` starts a tiny process that
asks the kernel for SIGTERM when the worker's main thread exits (`common.lifetime`, PR_SET_PDEATHSIG)
and then SIGKILLs the engine processes it was given. A clean stop (`stop()`, after vLLM's own shutdown)
has the reaper reap too: an engine process vLLM's shutdown left behind is killed, not left running.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from common.lifetime import parent_death_preexec

_SCRIPT = """
import os, signal, sys
pids = [int(p) for p in sys.argv[1:]]
def reap(*_):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, reap)
while True:
    signal.pause()
"""


class Reaper:
    """Kills `pids` if this process dies before `stop()`. Start it from the main thread (the kernel
    signals when the thread that started it exits)."""

    def __init__(self, pids: list[int]) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, *map(str, pids)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      preexec_fn=parent_death_preexec(signal.SIGTERM))

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
