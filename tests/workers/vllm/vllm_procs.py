"""Real vLLM processes for the vLLM worker tests: `heteroserve worker --engine vllm` and the offline
`LLM.generate` reference, started together (each vLLM engine takes about a minute to start here, more
under load)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.localredis import free_port
from heteroserve.embedded.processes import NotReadyError, start_until_ready
from tests.control_plane.gateway.gateway_procs import BIN, CLUSTER_TOKEN, Worker

READY_TIMEOUT_SECONDS = 600.0
# The smallest settings that start here: a tiny model needs little besides its KV, which is sized
# exactly (--kv-cache-mb), so the share of host memory stays at 1 % per engine.
MEMORY_FRACTION = 0.01
KV_CACHE_MB = 64


def vllm_worker_args(model_dir: Path, redis_url: str | None, worker_id: str, *extra: str) -> list[str]:
    args = [BIN, "worker", "--engine", "vllm", "--model", str(model_dir), "--port", "0", "--worker-id",
            worker_id, "--vllm-memory-fraction", str(MEMORY_FRACTION), "--kv-cache-mb", str(KV_CACHE_MB),
            "--drain-grace-seconds", "5", *extra]
    return args + (["--redis-url", redis_url] if redis_url else [])


STOP_TIMEOUT_SECONDS = 60.0


class VLLMWorker(Worker):
    """A vLLM worker process. `stop()` also ends the processes vLLM spawned (engine core, model
    worker) if they outlive it: a worker killed after its grace would otherwise leave them running."""

    def stop(self) -> int:
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()
        return int(self.proc.returncode)


def start_vllm_worker(args: list[str]) -> VLLMWorker:
    env = {"HETEROSERVE_CLUSTER_TOKEN": CLUSTER_TOKEN}
    try:
        proc, line, errors = start_until_ready(args, " ready on ", env=env,
                                               timeout_seconds=READY_TIMEOUT_SECONDS)
    except NotReadyError as exc:
        pytest.fail(f"vllm worker did not become ready ({exc}); stderr:\n{exc.stderr}")
    worker_id = args[args.index("--worker-id") + 1]
    return VLLMWorker(proc, line, errors, worker_id, line.rsplit(" ", 1)[-1])


def offline_reference(model_dir: Path, prompts: list[list[int]], max_tokens: int) -> subprocess.Popen[str]:
    """Start vLLM's offline `LLM.generate` on `prompts` (greedy); `reference_tokens` reads its answer."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.workers.vllm.offline_reference"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[3])
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"model": str(model_dir), "memory_fraction": MEMORY_FRACTION,
                                 "kv_cache_bytes": KV_CACHE_MB * 2**20, "prompts": prompts,
                                 "max_tokens": max_tokens}))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush the closed pipe
    return proc


def reference_tokens(proc: subprocess.Popen[str]) -> list[list[int]]:
    out, err = proc.communicate(timeout=READY_TIMEOUT_SECONDS)  # stdin went in (and closed) at start
    assert proc.returncode == 0, f"offline vLLM reference failed (exit {proc.returncode}): {err[-3000:]}"
    return [list(t) for t in json.loads(out.strip().splitlines()[-1])["tokens"]]


# Workers get SIGKILL when the *thread* that started them exits (common.lifetime): start them from
# threads that live as long as the test process, never from a pool that is shut down.
_STARTERS = ThreadPoolExecutor(4, thread_name_prefix="vllm-worker-starter")


def start_together(arg_lists: list[list[str]]) -> list[VLLMWorker]:
    """Start several vLLM workers at once (their engine starts overlap)."""
    return list(_STARTERS.map(start_vllm_worker, arg_lists))


def metrics_port() -> int:
    return free_port()
