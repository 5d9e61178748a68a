"""The machine a profile was measured on: a few facts and a fingerprint of them.

The fingerprint keys the embedded cluster's profile cache: the same model on the same machine (CPU
model, core count, memory, torch and Python versions) reuses its measurement; anything else measures
again. It is a short sha256 of the sorted facts, not a secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError):
        return 0.0


def machine_info() -> dict[str, Any]:
    """CPU model, usable cores, memory (GB), torch and Python versions, OS."""
    try:
        import torch

        torch_version = str(torch.__version__)
    except ImportError:
        torch_version = "none"
    return {"cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0)), "memory_gb": _memory_gb(),
            "torch": torch_version, "python": platform.python_version(), "system": platform.system()}


def fingerprint(machine: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the sorted facts."""
    return hashlib.sha256(json.dumps(dict(machine), sort_keys=True).encode()).hexdigest()[:16]
