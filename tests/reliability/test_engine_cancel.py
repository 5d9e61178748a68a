"""A caller that gives up on an engine call must not kill the engine thread.

Found by `bench chaos` (Redis outage): a worker's KV import was cancelled while queued for the engine
thread; `asyncio.wrap_future` then cancels the concurrent future, the engine thread's
`future.set_result(...)` raised `InvalidStateError`, its `set_exception(...)` raised again, and the
thread died: the worker stayed registered and healthy but never produced another token (the gateway
saw "sent no token within 60.0s"). Fixed in workers/engine/async_engine.py (`_run` skips commands
whose caller already gave up).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from workers.engine.async_engine import AsyncEngine
from workers.engine.config import EngineConfig
from workers.engine.types import EngineRequest, SamplingParams


async def test_cancelled_call_leaves_the_engine_serving(tiny_model_dir: Path) -> None:
    engine = AsyncEngine.from_config(EngineConfig(tiny_model_dir, num_kv_blocks=64))
    await engine.start()
    try:
        gate = threading.Event()
        busy = engine._submit(gate.wait)  # internal: hold the engine thread so the next call queues
        queued = asyncio.create_task(engine.import_blocks([]))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.wrap_future(busy) is True
        request = EngineRequest("after-cancel", (1, 5, 6, 7), SamplingParams(max_tokens=3, ignore_eos=True))

        async def collect() -> list[int | None]:
            return [event.token_id async for event in engine.generate(request)]

        tokens = await asyncio.wait_for(collect(), timeout=30)  # a dead engine thread never answers
        assert len([t for t in tokens if t is not None]) == 3
    finally:
        await engine.stop()
