"""The OpenMP runtime helpers (workers/engine/openmp.py): what a process has loaded, and the environment
that preloads Intel OpenMP, checked on real child processes that run the engine's compiled kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.engine import openmp

MAPS = """7f00-7f01 r-xp 00000000 08:01 1 /venv/lib/python3.11/site-packages/torch/lib/libgomp.so.1
7f02-7f03 r-xp 00000000 08:01 2 /venv/lib/libiomp5.so
7f04-7f05 rw-p 00000000 00:00 0 [heap]
7f06-7f07 rw-p 00000000 00:00 0
"""


def test_loaded_runtime_reads_the_mapped_libraries_and_the_wait_policy() -> None:
    assert openmp.loaded_runtime({}, MAPS) == "intel"  # libiomp5 serves libgomp's calls when both are mapped
    gnu_only = MAPS.replace("libiomp5", "libfoo")
    assert openmp.loaded_runtime({}, gnu_only) == "gnu"
    assert openmp.loaded_runtime({"OMP_WAIT_POLICY": "passive"}, gnu_only) == "gnu-passive"
    assert openmp.loaded_runtime({"OMP_WAIT_POLICY": "ACTIVE"}, gnu_only) == "gnu"
    assert openmp.loaded_runtime({}, "7f04-7f05 rw-p 00000000 00:00 0 [heap]\n") == "none"


def test_runtime_env_sets_exactly_one_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    library = tmp_path / "lib" / "libiomp5.so"
    library.write_bytes(b"")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    env = openmp.runtime_env({"LD_PRELOAD": "/x/libother.so", "OMP_WAIT_POLICY": "PASSIVE", "A": "1"},
                             "intel")
    assert env == {"LD_PRELOAD": f"{library}:/x/libother.so", "A": "1"}
    assert openmp.runtime_env(env, "intel") == env  # already there: unchanged, not preloaded twice
    assert openmp.runtime_env(env, "gnu-passive") == {"LD_PRELOAD": "/x/libother.so", "A": "1",
                                                       "OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp.runtime_env({"LD_PRELOAD": str(library), "A": "1"}, "gnu") == {"A": "1"}
    with pytest.raises(ValueError, match="runtime"):
        openmp.runtime_env({}, "llvm")
    library.unlink()
    with pytest.raises(ValueError, match="intel-openmp"):
        openmp.runtime_env({}, "intel")


CHILD = """
import json, os, torch
from workers.engine import openmp, paged_kernel
from workers.engine.layers import add_rms_norm, rms_norm
torch.set_num_threads(2)
x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
w = torch.rand(256, generator=torch.Generator().manual_seed(1))
kernel = paged_kernel.load()
out = add_rms_norm(kernel, x.clone(), None, w, 1e-6, torch.empty_like(x)) if kernel else rms_norm(x, w, 1e-6)
print(json.dumps({"runtime": openmp.loaded_runtime(os.environ), "sum": out.double().sum().item(),
                  "matmul": (x @ x.T).double().sum().item()}))
"""


@pytest.mark.skipif(openmp.intel_library() is None, reason="no libiomp5 in this environment")
def test_children_started_with_each_environment_run_on_that_runtime_with_the_same_results() -> None:
    def run(env: dict[str, str]) -> dict[str, float | str]:
        done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).parents[3], check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    gnu, passive, intel = (run(openmp.runtime_env(os.environ, name)) for name in openmp.RUNTIMES)
    assert (gnu["runtime"], passive["runtime"], intel["runtime"]) == openmp.RUNTIMES
    for other in (passive, intel):  # the fused kernel's rows split the same way: the same arithmetic
        assert other["sum"] == gnu["sum"]
        assert other["matmul"] == pytest.approx(gnu["matmul"], rel=1e-6)
