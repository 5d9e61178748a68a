"""Which OpenMP runtime runs the engine's threads, and the environment that starts a process on another.

Why (issue 18, measured at 2 threads on a shared 2-core machine, docs/benchmarks.md "bench engine",
session 7): torch's CPU wheel runs its intra-op threads (oneDNN GEMMs, SDPA, the engine's compiled
kernels through `at::parallel_for`) on GNU libgomp, whose idle threads spin at the end of every parallel
region. When other processes hold the cores, a spinning thread takes the time slice the late thread
needs, and a decode step has ~70 parallel regions: under other tenants' load the engine's batch-1 run
took 1.8-69 s where it takes ~1 s alone. Two settings avoid that:
- "gnu-passive": libgomp with `OMP_WAIT_POLICY=PASSIVE`, whose idle threads sleep at once;
- "intel": Intel's libiomp5 preloaded (what vLLM's CPU guide asks for, and what the bench gives vLLM),
  whose idle threads yield while they wait. It implements libgomp's `GOMP_*` entry points, so torch and
  the engine's library bind to it without a rebuild; it comes with the `intel-openmp` wheel
  (`<venv>/lib/libiomp5.so`).
"gnu" is torch's default. The runtime is fixed when the process loads torch (environment variables read
at the runtime's start), so this module reports the runtime in use and builds a child's environment;
whoever starts the process applies it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

RUNTIMES = ("gnu", "gnu-passive", "intel")


def intel_library() -> Path | None:
    """The venv's libiomp5 (the `intel-openmp` wheel installs it under `<prefix>/lib`), or None."""
    path = Path(sys.prefix) / "lib" / "libiomp5.so"
    return path if path.is_file() else None


def loaded_runtime(environ: Mapping[str, str], maps: str | None = None) -> str:
    """The runtime of this process (one of RUNTIMES, or "none" when no OpenMP library is mapped):
    "intel" when libiomp5 is mapped (it then serves libgomp's calls too), else libgomp, passive when
    `environ` (the environment the process started with) asks for it. `maps` is /proc/self/maps' text
    (read when None)."""
    if maps is None:
        maps = Path("/proc/self/maps").read_text()
    names = {Path(line.split()[-1]).name for line in maps.splitlines() if "/" in line}
    if any(name.startswith("libiomp5") for name in names):
        return "intel"
    if any(name.startswith("libgomp") for name in names):
        return "gnu-passive" if environ.get("OMP_WAIT_POLICY", "").lower() == "passive" else "gnu"
    return "none"


def runtime_env(env: Mapping[str, str], runtime: str) -> dict[str, str]:
    """A copy of `env` whose processes start on `runtime`: "intel" puts libiomp5 first in `LD_PRELOAD`
    (ValueError when it is not installed), "gnu-passive" sets `OMP_WAIT_POLICY=PASSIVE`, "gnu" removes
    both (other preloads stay)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: one of {', '.join(RUNTIMES)}, got {runtime!r}")
    out = dict(env)
    preload = [p for p in out.pop("LD_PRELOAD", "").split(":") if p and "libiomp5" not in Path(p).name]
    out.pop("OMP_WAIT_POLICY", None)
    if runtime == "intel":
        library = intel_library()
        if library is None:
            raise ValueError("runtime: 'intel' needs libiomp5.so in the venv (pip install intel-openmp)")
        preload.insert(0, str(library))
    elif runtime == "gnu-passive":
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    if preload:
        out["LD_PRELOAD"] = ":".join(preload)
    return out
