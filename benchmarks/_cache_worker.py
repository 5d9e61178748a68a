"""One worker process for `heteroserve bench cache`: an AsyncEngine + a Redis-backed TieredStore joined
by `workers.kv`, driven by JSON lines on stdin (one reply line each on stdout).

Commands: {"op": "generate", "prompt": [...], "load": bool, "publish": bool, "max_tokens": int}
-> {"ttft_s", "load_s", "cached_tokens", "tokens", "hits", "misses"}; {"op": "quit"}.
TTFT is measured here, from the command's arrival to the first token, and includes the cache lookup,
the Redis read, decode and import when `load` is set. This is the engine and the bridge in a process of
its own, not the gRPC worker service.

Usage: python -m benchmarks._cache_worker MODEL_DIR REDIS_URL NAMESPACE NUM_THREADS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from cache.config import CacheConfig, build_store
from cache.hashing import hash_prompt_blocks
from cache.metrics import CacheMetrics
from cache.store import TieredStore
from cache.tiers import RedisTierConfig
from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, SamplingParams
from workers.kv.bridge import publish_prompt_blocks
from workers.kv.fetch import fetch_prefix
from workers.kv.sources import StoreSource


def _count(metrics: CacheMetrics, family: str) -> float:
    return sum(s.value for m in getattr(metrics, family).collect() for s in m.samples
               if s.name.endswith("_total"))


async def _generate(engine: AsyncEngine, store: TieredStore, metrics: CacheMetrics, cmd: dict,
                    seq: int) -> dict:
    prompt = tuple(cmd["prompt"])
    hashes = hash_prompt_blocks(prompt, engine.hash_keys(), engine.block_size)
    start = time.perf_counter()
    if cmd.get("load"):
        await fetch_prefix(engine, StoreSource(store), hashes, prompt)
    load_s = time.perf_counter() - start
    ttft, cached, tokens = None, 0, []
    request = EngineRequest(f"r{seq}", prompt, SamplingParams(max_tokens=int(cmd.get("max_tokens", 4)),
                                                               ignore_eos=True))
    async for event in engine.generate(request):
        if ttft is None:
            ttft, cached = time.perf_counter() - start, event.num_cached_prompt_tokens
        if event.token_id is not None:
            tokens.append(event.token_id)
    if cmd.get("publish"):
        await publish_prompt_blocks(engine, store, hashes)
    return {"ttft_s": ttft, "load_s": load_s, "cached_tokens": cached, "tokens": tokens,
            "hits": _count(metrics, "hits"), "misses": _count(metrics, "misses")}


async def main(argv: list[str]) -> int:
    model_dir, redis_url, namespace, threads = argv
    engine = AsyncEngine.from_config(EngineConfig(model_dir=Path(model_dir), num_kv_blocks=512,
                                                  num_threads=int(threads)))
    metrics = CacheMetrics(CollectorRegistry())
    store = await build_store(CacheConfig(memory=None, redis=RedisTierConfig(url=redis_url,
                                                                             namespace=namespace)), metrics)
    await engine.start()
    print(json.dumps({"ready": True}), flush=True)
    seq = 0
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            seq += 1
            print(json.dumps(await _generate(engine, store, metrics, cmd, seq)), flush=True)
    finally:
        await engine.stop()
        await store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
