"""vLLM (CPU build) as the engine benchmark's peer, run in its own process tree.

`run_vllm(spec)` starts `python -m benchmarks._vllm_peer` with a JSON spec on stdin and reads one JSON
object from the last line of its stdout. The child builds vLLM's `LLMEngine` (v1, which spawns its engine
core and a CPU worker process), runs the same requests our engine runs, and exits: the engine core, its
worker and all their memory go away with it, so the rest of the benchmark runs on a quiet machine.

The spec (`VLLMSpec`) carries the model directory, the thread count and every request as token ids, so
both engines see exactly the same prompts. The child measures the way `benchmarks/engine.py` measures
our engine: all batched requests submitted at once, then `step()` until done, TTFT per request from the
submission, wall time from submission to the last token; single requests one at a time; greedy,
`ignore_eos`, prefix cache reset between repetitions so no repetition is served from a cache.

vLLM's settings are its own CPU defaults except where the benchmark must pin them (see `engine_args`):
dtype float32 (the model's, so greedy tokens can be compared), a fixed KV size instead of a share of
host memory, and the CPU set: with N threads vLLM's worker binds N OpenMP threads to cores 0..N-1
(`VLLM_CPU_OMP_THREADS_BIND`) and the whole process tree is confined to those cores, as our side is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.lifetime import parent_death_preexec

Request = tuple[list[int], int]  # (prompt token ids, output tokens)
KV_CACHE_BYTES = 2**30  # as our engine's pool in the benchmark
RESULT_MARK = "VLLM_PEER_RESULT "
START_TIMEOUT_S = 900.0  # engine start is ~50 s here, much more under load; the runs add a few minutes


@dataclass(frozen=True)
class VLLMSpec:
    """What the child runs. `batched` is submitted at once `repeats` times (best wall time kept);
    each of `singles` runs alone once. `threads` >= 1 cores/OpenMP threads."""

    model_dir: str
    threads: int
    batched: list[Request]
    singles: list[Request]
    repeats: int = 2
    intel_openmp: bool = True
    extra_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads: must be >= 1, got {self.threads}")
        if self.repeats < 1:
            raise ValueError(f"repeats: must be >= 1, got {self.repeats}")
        if not self.batched:
            raise ValueError("batched: must hold at least one request")


def cpu_set(threads: int) -> list[int]:
    """The first `threads` cores this process may run on (both engines use the same set)."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise ValueError(f"threads: {threads} > the {len(allowed)} cores available")
    return allowed[:threads]


def child_env(threads: int, intel_openmp: bool = True) -> dict[str, str]:
    """Environment of the vLLM child: OpenMP threads bound to our cores, Intel OpenMP preloaded when
    `intel_openmp` and the venv has it (vLLM's CPU install guide asks for it), no usage reporting."""
    env = dict(os.environ)
    cores = cpu_set(threads)
    env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))
    env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    env["VLLM_NO_USAGE_STATS"] = "1"
    env["VLLM_LOGGING_LEVEL"] = env.get("VLLM_LOGGING_LEVEL", "WARNING")
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # legacy: the KV size is set by kv_cache_memory_bytes
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if intel_openmp and iomp.is_file() and "libiomp" not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(p for p in (str(iomp), env.get("LD_PRELOAD", "")) if p)
    return env


def engine_args(spec: VLLMSpec) -> dict[str, Any]:
    """vLLM's `EngineArgs` for the benchmark: its CPU defaults for `LLMEngine` (max_num_batched_tokens
    2048, max_num_seqs 128, block 128, chunked prefill and prefix caching on, torch.compile via inductor)
    except dtype, KV size and seed; `spec.extra_args` overrides (for sweeps)."""
    args: dict[str, Any] = {"model": spec.model_dir, "tokenizer": spec.model_dir, "dtype": "float32",
                            "kv_cache_memory_bytes": KV_CACHE_BYTES, "seed": 0, "disable_log_stats": True}
    return {**args, **spec.extra_args}


def run_vllm(spec: VLLMSpec, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Run the spec in a fresh child process tree confined to `cpu_set(spec.threads)`; its result dict.
    Raises RuntimeError (with the child's last stderr lines) when the child fails or times out."""
    cores = cpu_set(spec.threads)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._vllm_peer"], input=json.dumps(asdict(spec)), text=True,
            capture_output=True, env=child_env(spec.threads, spec.intel_openmp), timeout=timeout_s,
            preexec_fn=_preexec(cores), cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired as error:  # run() has killed the child; its tree follows it
        raise RuntimeError(f"vLLM peer took over {timeout_s:.0f} s") from error
    found = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"vLLM peer exited {proc.returncode} without a result:\n{tail}")
    result: dict[str, Any] = json.loads(found[-1].removeprefix(RESULT_MARK))
    return result


def _preexec(cores: list[int]) -> Callable[[], None]:
    """In the forked child: confine it (and so vLLM's processes) to `cores`; die with this process."""
    die_with_parent = parent_death_preexec()

    def setup() -> None:
        if die_with_parent is not None:
            die_with_parent()
        os.sched_setaffinity(0, cores)

    return setup


# ---- the child --------------------------------------------------------------------------------------
def _tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and all its live descendants (the
    engine core and the worker): the work vLLM did, whatever other tenants of the machine do."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # a helper that exited in between
            continue
        total += times.user + times.system
    return total


def _drive(engine: Any, requests: list[Request], tag: str) -> dict[str, Any]:
    """Submit all requests, step until done; wall and tree CPU time, TTFT and generated tokens per
    request."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    cpu_start = _tree_cpu_s()
    start = time.perf_counter()
    for i, (prompt, out) in enumerate(requests):
        params = SamplingParams(temperature=0.0, max_tokens=out, min_tokens=out, ignore_eos=True,
                                output_kind=RequestOutputKind.DELTA)
        engine.add_request(f"{tag}{i}", {"prompt_token_ids": prompt}, params)
    first: dict[str, float] = {}
    tokens: dict[str, list[int]] = {f"{tag}{i}": [] for i in range(len(requests))}
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = time.perf_counter()
        for output in outputs:
            new = output.outputs[0].token_ids
            if new:
                first.setdefault(output.request_id, now)
                tokens[output.request_id].extend(new)
    wall = time.perf_counter() - start
    ids = [f"{tag}{i}" for i in range(len(requests))]
    return {"wall_s": wall, "cpu_s": _tree_cpu_s() - cpu_start, "ttft_s": [first[r] - start for r in ids],
            "tokens": [tokens[r] for r in ids]}


def _child(spec: VLLMSpec) -> dict[str, Any]:
    import torch
    from vllm import EngineArgs, LLMEngine

    started = time.perf_counter()
    engine = LLMEngine.from_engine_args(EngineArgs(**engine_args(spec)))
    start_s = time.perf_counter() - started
    _drive(engine, [([1, *range(10, 60)], 8)], "warm")
    runs = []
    for rep in range(spec.repeats):
        engine.reset_prefix_cache()  # no repetition may be served from an earlier one's KV
        runs.append(_drive(engine, spec.batched, f"b{rep}-"))
    best = min(runs, key=lambda r: r["wall_s"])
    singles = []
    for i, request in enumerate(spec.singles):
        engine.reset_prefix_cache()
        singles.append(_drive(engine, [request], f"s{i}-"))
    config = engine.vllm_config
    settings = {"version": _version(), "dtype": str(config.model_config.dtype),
                "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
                "max_num_seqs": config.scheduler_config.max_num_seqs,
                "enable_chunked_prefill": config.scheduler_config.enable_chunked_prefill,
                "enable_prefix_caching": config.cache_config.enable_prefix_caching,
                "block_size": config.cache_config.block_size,
                "compilation_mode": str(config.compilation_config.mode),
                "compilation_backend": config.compilation_config.backend,
                "kv_cache_memory_bytes": config.cache_config.kv_cache_memory_bytes,
                "omp_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
                "ld_preload": os.environ.get("LD_PRELOAD", ""), "torch": torch.__version__}
    return {"start_s": start_s, "batched": best, "batched_walls_s": [r["wall_s"] for r in runs],
            "single_walls_s": [r["wall_s"] for r in singles], "single_cpu_s": [r["cpu_s"] for r in singles],
            "settings": settings}


def _version() -> str:
    import vllm

    return str(vllm.__version__)


def main() -> int:
    raw = json.loads(sys.stdin.read())
    raw["batched"] = [(list(p), int(n)) for p, n in raw["batched"]]
    raw["singles"] = [(list(p), int(n)) for p, n in raw["singles"]]
    result = _child(VLLMSpec(**raw))
    print(RESULT_MARK + json.dumps(result), flush=True)  # vLLM logs to stdout too: the mark finds ours
    return 0


if __name__ == "__main__":  # vLLM spawns its engine core: the guard keeps the child from re-running this
    raise SystemExit(main())
