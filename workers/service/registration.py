"""Keeps this worker's record in the Redis registry (`common.registry`) while it serves.

A background task rewrites the record every `heartbeat_seconds` with a TTL of `ttl_seconds`, so a
worker that dies vanishes from the registry within one TTL. When Redis is unreachable the worker keeps
serving and keeps retrying at the same pace; it logs one warning when Redis goes away and one line when
it comes back, not one per heartbeat. `stop()` ends the task and deletes the record (clean shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from common.registry import DEFAULT_TTL_SECONDS, WorkerRecord, delete_worker, write_worker

log = logging.getLogger(__name__)


class Registration:
    """The heartbeat of one worker record. Create, `start()`, then `stop()` exactly once."""

    def __init__(self, redis_url: str, record: WorkerRecord, *, heartbeat_seconds: float = 1.0,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._record = record
        self._heartbeat = heartbeat_seconds
        self._ttl = ttl_seconds
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def record(self) -> WorkerRecord:
        return self._record

    async def start(self) -> None:
        """Write the record once (best effort) and start the heartbeat task."""
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name="worker-heartbeat")

    def mark_draining(self) -> None:
        """Publish `draining=True` at the next beat, which happens at once."""
        self._record = dataclasses.replace(self._record, draining=True)
        self._wake.set()

    async def stop(self) -> None:
        """Stop the heartbeat and delete the record (best effort when Redis is down)."""
        # The flag, not only the cancel, ends the loop: on Python 3.11 a cancel that arrives just as
        # `mark_draining()` wakes the loop can be swallowed by `asyncio.wait_for`, and the loop would
        # then beat forever while this method awaited it.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await delete_worker(self._redis, self._record.worker_id)
        except (RedisError, OSError) as exc:
            log.warning("could not deregister worker %s (its record expires in %.0f s): %s",
                        self._record.worker_id, self._ttl, exc)
        await self._redis.aclose()

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._wake.wait()
            self._wake.clear()
            if not self._stopping:
                await self._beat()

    async def _beat(self) -> None:
        try:
            await write_worker(self._redis, self._record, self._ttl)
        except (RedisError, OSError) as exc:
            if self._healthy:
                log.warning("registry unreachable, serving on and retrying every %.1f s: %s",
                            self._heartbeat, exc)
            self._healthy = False
            return
        if not self._healthy:
            log.info("registry reachable again; worker %s re-registered", self._record.worker_id)
        self._healthy = True
