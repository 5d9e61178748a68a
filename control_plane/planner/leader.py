"""Leader election among planner replicas with a Redis lock.

Algorithm: the lock is one key holding the leader's id. A candidate acquires it with
`SET key id NX PX ttl`; the leader renews it every tick with a Lua compare-and-set (PEXPIRE only if
the value is still its own id) and releases it the same way (DEL only if its own). A leader that
fails to renew (it crashed, hung, or lost Redis for longer than `ttl_ms`) loses the lock when the key
expires, and the next candidate's SET NX succeeds. Callers must renew more often than `ttl_ms`
(the planner renews every tick and uses ttl = 3 ticks), and must stop acting as leader as soon as
`renew()` returns False.

Single Redis instance only (no Redlock): a replica that is partitioned from Redis may believe it leads
for up to `ttl_ms`; plan versions are INCR'd in Redis, so two writers can never publish the same
version, and the newest plan wins.
"""

from __future__ import annotations

import redis.asyncio as aioredis

DEFAULT_LOCK_KEY = "heteroserve:planner:leader"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLeaderLock:
    """A lease held by `holder_id` for `ttl_ms` milliseconds at a time."""

    def __init__(self, client: aioredis.Redis, holder_id: str, *, key: str = DEFAULT_LOCK_KEY,
                 ttl_ms: int = 3000) -> None:
        if not holder_id:
            raise ValueError("holder_id must be non-empty")
        if ttl_ms < 100:
            raise ValueError(f"ttl_ms must be >= 100, got {ttl_ms}")
        self._client = client
        self.holder_id = holder_id
        self.key = key
        self.ttl_ms = ttl_ms
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it. True if this holder now leads (or already led)."""
        if await self._client.set(self.key, self.holder_id, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease if this holder still owns it. False means: stop acting as leader."""
        return bool(await self._renew(keys=[self.key], args=[self.holder_id, self.ttl_ms]))

    async def release(self) -> bool:
        """Give the lock up if held (so a successor need not wait for the TTL)."""
        return bool(await self._release(keys=[self.key], args=[self.holder_id]))

    async def current_leader(self) -> str | None:
        raw = await self._client.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw
