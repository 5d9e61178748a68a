"""bench routing's per-replay CPU account with real processes: CPU burned by a 'system' child, by the
client itself and by a process outside the bench's tree each land in their own bucket."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from benchmarks._routing_cpu import account, snapshot

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


def _burn_here(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def _outside(seconds: float) -> int:
    """Start a CPU burner that is not our descendant (the shell that starts it exits at once, so it is
    re-parented to init); its pid."""
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c '{BURN.format(s=seconds)}' >/dev/null 2>&1 & "
                          "echo $!"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_each_burner_lands_in_its_bucket() -> None:
    system = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6) + "import time; time.sleep(60)"])
    idle_other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = snapshot()
        outside = _outside(0.6)
        _burn_here(0.3)
        while psutil.pid_exists(outside) and psutil.Process(outside).status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while sum(psutil.Process(system.pid).cpu_times()[:2]) < 0.58 and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu = account(before, snapshot(), [system.pid])
    finally:
        for proc in (system, idle_other):
            proc.kill()
            proc.wait()
    assert 0.5 <= cpu["system_cpu_s"] <= 1.0, cpu
    assert cpu["client_cpu_s"] >= 0.25, cpu
    assert cpu["other_systems_cpu_s"] < 0.2, cpu  # the idle sibling burned nothing
    assert cpu["outside_cpu_s"] >= 0.45, cpu  # the re-parented burner is not the bench's
    assert cpu["machine_cpu_s"] >= cpu["system_cpu_s"] + cpu["client_cpu_s"] + 0.45, cpu
