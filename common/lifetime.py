"""Child processes that die with their parent: Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`).

`parent_death_preexec()` returns a `preexec_fn` for `subprocess.Popen`. In the forked child, before
`exec`, it asks the kernel to send SIGKILL to the child when its parent goes away, however the parent
ends (SIGKILL, a crash, the OOM killer, a CI time limit), then exits at once if the parent is already
gone (it died between `fork` and `prctl`: the child was re-parented, so `getppid()` changed). The
setting survives `exec` (except into set-user-ID binaries), so it covers `redis-server` as well as our
own Python processes, and it needs nothing from the child's code.

Caveat, by design of the kernel: the signal fires when the *thread* that forked the child exits, not
when the parent process does. Start children from a thread that lives as long as they should: the
main thread, or an executor thread that is kept until shutdown (asyncio's default executor and
`concurrent.futures.ThreadPoolExecutor` never retire idle threads). A child forked by a short-lived
`threading.Thread` is killed as soon as that thread returns.

Why SIGKILL and not SIGTERM: a parent that vanished drains nobody and waits for nobody; SIGTERM would
let a worker spend its drain grace period (minutes) serving a cluster that no longer exists. Worker
records in Redis expire by their heartbeat TTL.

Chains compose: the launcher's children die with the launcher, the planner's workers die with the
planner, so killing the launcher takes down the whole tree within a scheduling round per level.
Off Linux the function returns None (no parent-death signal there); `heteroserve down` still stops
every process by pid.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
_EXIT_PARENT_GONE = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved once in the parent (the child after fork must not import or load)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def parent_death_preexec(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `sig` when the calling thread of this process exits
    (see the module docstring for the thread caveat); None where no parent-death signal exists.

    Call it in the thread that calls `Popen`, right before: it records this process's pid, which the
    child compares with its parent after `prctl` to catch a parent that died in between.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent_pid = os.getpid()

    def set_parent_death_signal() -> None:
        # Runs in the child between fork and exec: no imports, no allocation-heavy work, no locks.
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0 or os.getppid() != parent_pid:
            os._exit(_EXIT_PARENT_GONE)

    return set_parent_death_signal


def die_with_parent(
    argv: Sequence[str], sig: int = signal.SIGKILL
) -> tuple[list[str], Callable[[], None] | None]:
    """`(argv, preexec_fn)` for `subprocess.Popen`, so the child gets `sig` when the calling thread exits.

    Through util-linux's `setpriv --pdeathsig` where it exists (it does on every Debian system), so no
    Python code runs in the forked child: a `preexec_fn` is unsafe in a process that has other threads,
    and beside gRPC's threads such children were seen to abort (SIGABRT: Redis restarted under bench
    chaos) and crash (SIGSEGV: a worker started mid-stream in a gateway test). Unlike the preexec path,
    setpriv cannot notice a parent that died between fork and its prctl. Elsewhere: the `preexec_fn`
    of `parent_death_preexec` (or none off Linux).
    """
    preexec, setpriv = parent_death_preexec(sig), shutil.which("setpriv")
    if preexec is not None and setpriv is not None:
        return [setpriv, "--pdeathsig", signal.Signals(sig).name.removeprefix("SIG"), *argv], None
    return list(argv), preexec
