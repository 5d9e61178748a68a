"""One vLLM worker process for `heteroserve bench cache --engine vllm`: a `VLLMEngine` whose KV
connector (workers/vllm/connector.py) reads and writes a Redis tier, driven by JSON lines on stdin.

Commands: {"op": "generate", "prompt": [...], "max_tokens": int} -> {"ttft_s", "cached_tokens",
"tokens"}; {"op": "quit"}. The connector stores every prompt's blocks and loads whatever leading
blocks the tier holds, so the same command serves worker A (computes, publishes) and worker B (loads).
TTFT is measured here, from the command's arrival to the first token: it includes the tier lookup, the
Redis read, the checks and the copy into vLLM's pages. This is the engine and its connector in a
process of their own, not the gRPC worker service.

Usage: python -m benchmarks._vllm_cache_worker MODEL_DIR REDIS_URL NAMESPACE MEMORY_FRACTION
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

KV_CACHE_BYTES = 256 << 20


async def serve(engine: object) -> None:
    from workers.engine.types import EngineRequest, SamplingParams

    await engine.start()  # type: ignore[attr-defined]
    print(json.dumps({"ready": True}), flush=True)
    for n, line in enumerate(sys.stdin):
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        sampling = SamplingParams(max_tokens=cmd.get("max_tokens", 8))
        request = EngineRequest(f"b{n}", tuple(cmd["prompt"]), sampling)
        start, ttft, cached = time.perf_counter(), 0.0, 0
        tokens: list[int] = []
        async for event in engine.generate(request):  # type: ignore[attr-defined]
            if not tokens and event.token_id is not None:
                ttft, cached = time.perf_counter() - start, event.num_cached_prompt_tokens
            if event.token_id is not None:
                tokens.append(event.token_id)
        print(json.dumps({"ttft_s": ttft, "cached_tokens": cached, "tokens": tokens}), flush=True)
    await engine.stop()  # type: ignore[attr-defined]


def main() -> None:
    from cache.config import CacheConfig
    from cache.tiers import RedisTierConfig
    from workers.vllm.config import VLLMEngineConfig
    from workers.vllm.engine import VLLMEngine

    model_dir, url, namespace, fraction = sys.argv[1:5]
    cache = CacheConfig(memory=None, redis=RedisTierConfig(url=url, namespace=namespace))
    config = VLLMEngineConfig(model_dir=Path(model_dir), memory_fraction=float(fraction),
                              kv_cache_bytes=KV_CACHE_BYTES, cache=cache)
    asyncio.run(serve(VLLMEngine.from_config(config)))


if __name__ == "__main__":
    main()
