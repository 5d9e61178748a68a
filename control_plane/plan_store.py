"""The versioned placement plan in Redis: the planner publishes it, gateways and the CLI read it.

Keys (prefix default `heteroserve:plan`):

    <prefix>:version   integer, INCR'd once per publish (0 / missing = no plan yet)
    <prefix>:current   JSON document {"version", "published_at", "leader", "reason", "plan"}
    <prefix>:history   list of the last `HISTORY_LENGTH` documents, newest first
    channel <prefix>:updates   receives the new version number (as text) after each publish

`plan` is `placement.Plan.to_dict()` (pools with name, node_type, role, count; routing weights per
class; cost; baselines); this module treats it as an opaque JSON mapping so that readers without
the placement package can still read it. The version and the document are written in one MULTI
transaction, so a reader never sees a version whose document is missing.

Readers either poll `version()` (one GET; cheap enough for every second) and call `read()` when it
changed — `PlanWatcher` does exactly that — or subscribe to the updates channel. Polling is the
contract; the channel is only a hint to poll now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "heteroserve:plan"
HISTORY_LENGTH = 20


@dataclass(frozen=True)
class PlanRecord:
    """One published plan. `plan` is `placement.Plan.to_dict()`; `published_at` is unix seconds."""

    version: int
    published_at: float
    leader: str
    reason: str
    plan: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "published_at": self.published_at,
                           "leader": self.leader, "reason": self.reason, "plan": self.plan})

    @staticmethod
    def from_json(text: str | bytes) -> PlanRecord:
        doc = json.loads(text)
        return PlanRecord(version=int(doc["version"]), published_at=float(doc["published_at"]),
                          leader=str(doc.get("leader", "")), reason=str(doc.get("reason", "")),
                          plan=doc["plan"])


class PlanStore:
    """Async access to the plan keys. The planner calls `publish`; everyone else `read`/`version`."""

    def __init__(self, client: aioredis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.prefix = prefix

    @property
    def channel(self) -> str:
        return f"{self.prefix}:updates"

    async def publish(self, plan: Mapping[str, Any], *, leader: str = "", reason: str = "") -> PlanRecord:
        """Store `plan` as the next version and notify subscribers. Returns the stored record."""
        version = int(await self._client.incr(f"{self.prefix}:version"))
        record = PlanRecord(version=version, published_at=time.time(), leader=leader, reason=reason,
                            plan=dict(plan))
        text = record.to_json()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}:current", text)
            pipe.lpush(f"{self.prefix}:history", text)
            pipe.ltrim(f"{self.prefix}:history", 0, HISTORY_LENGTH - 1)
            pipe.publish(self.channel, str(version))
            await pipe.execute()
        return record

    async def version(self) -> int:
        """Latest published version, 0 if none."""
        raw = await self._client.get(f"{self.prefix}:version")
        return int(raw) if raw else 0

    async def read(self) -> PlanRecord | None:
        """The current plan, or None if none was published yet."""
        raw = await self._client.get(f"{self.prefix}:current")
        return PlanRecord.from_json(raw) if raw else None

    async def history(self, limit: int = HISTORY_LENGTH) -> list[PlanRecord]:
        """Up to `limit` past plans, newest first."""
        raws = await self._client.lrange(f"{self.prefix}:history", 0, limit - 1)
        return [PlanRecord.from_json(r) for r in raws]


def read_plan_sync(redis_url: str, prefix: str = DEFAULT_PREFIX) -> PlanRecord | None:
    """Blocking one-shot read of the current plan, for CLIs (`heteroserve status`)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2.0)
    try:
        raw = client.get(f"{prefix}:current")
        return PlanRecord.from_json(raw) if raw else None
    finally:
        client.close()


class PlanWatcher:
    """Polls the version key every `poll_seconds` and calls `on_plan(record)` for each new version.

    Start with `start()` inside a running event loop; `stop()` cancels the task. `latest` always holds
    the newest record seen. Redis errors are logged and retried on the next poll.
    """

    def __init__(self, store: PlanStore, on_plan: Callable[[PlanRecord], Awaitable[None]] | None = None,
                 poll_seconds: float = 1.0) -> None:
        self._store = store
        self._on_plan = on_plan
        self.poll_seconds = poll_seconds
        self.latest: PlanRecord | None = None
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> PlanRecord | None:
        """Check for a new version now; returns the new record if there was one."""
        version = await self._store.version()
        if version == 0 or (self.latest is not None and version <= self.latest.version):
            return None
        record = await self._store.read()
        if record is None or (self.latest is not None and record.version <= self.latest.version):
            return None
        self.latest = record
        if self._on_plan is not None:
            await self._on_plan(record)
        return record

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except redis.RedisError as exc:
                log.warning("plan poll failed: %s", exc)
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="plan-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
