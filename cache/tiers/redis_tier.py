"""Redis tier: the shared, hot tier every worker of the cluster reads and writes.

Keys are `<key_prefix><namespace>:<block hash hex>`; values are the encoded blocks (binary), written with
SET ... EX ttl_seconds. Batched reads are one pipelined round trip of GETs (non-transactional, so it
works on Redis Cluster too, where redis-py splits the pipeline by hash slot). `rediss://` URLs give TLS;
the password comes from the URL or `password`.

Availability: a connection error or timeout marks the tier down (gauge `heteroserve_cache_redis_up` = 0),
and every call returns misses / drops writes without touching the network until `retry_interval_seconds`
have passed; the next call then tries again and marks the tier up if it succeeds. Calls never raise for
an unreachable Redis: the worker keeps serving and recomputes. Other Redis errors (e.g. OOM under a
noeviction policy) are logged and counted in `heteroserve_cache_errors_total{tier="redis"}`, and the call
returns misses / drops the writes, without marking the tier down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache.hashing import BlockHash
from cache.metrics import CacheMetrics
from cache.tiers.base import BlockTier, PutResult
from common.logs import register_secret

log = logging.getLogger(__name__)
T = TypeVar("T")
_DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError)


@dataclass(frozen=True)
class RedisTierConfig:
    url: str = "redis://127.0.0.1:6379/0"
    password: str | None = None
    namespace: str = "default"
    key_prefix: str = "hs:kv:"
    ttl_seconds: int = 3600
    cluster: bool = False
    ssl_ca_certs: str | None = None
    socket_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 0.5
    retry_interval_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            scheme = self.url.split(":")[0]
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {scheme!r}")
        if self.ttl_seconds < 0:
            raise ValueError(f"ttl_seconds must be >= 0 (0 = no expiry), got {self.ttl_seconds}")
        for name in ("socket_timeout_seconds", "connect_timeout_seconds", "retry_interval_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if ":" in self.namespace:
            raise ValueError(f"namespace must not contain ':', got {self.namespace!r}")


def connect(config: RedisTierConfig) -> Any:
    """A redis.asyncio client (or RedisCluster) for `config`, returning bytes."""
    if config.password:
        register_secret(config.password)
    kwargs: dict[str, Any] = dict(
        password=config.password, socket_timeout=config.socket_timeout_seconds,
        socket_connect_timeout=config.connect_timeout_seconds, decode_responses=False,
    )
    if config.ssl_ca_certs:
        kwargs["ssl_ca_certs"] = config.ssl_ca_certs
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if config.cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(config.url, **kwargs)
    return aioredis.Redis.from_url(config.url, **kwargs)


class RedisTier(BlockTier):
    """Blocks in Redis. Eviction is Redis's own (maxmemory policy, TTL): `put_many` returns no evictions."""

    name = "redis"

    def __init__(self, config: RedisTierConfig, metrics: CacheMetrics | None = None,
                 client: Any | None = None) -> None:
        self.config = config
        self._client = client if client is not None else connect(config)
        self._metrics = metrics
        self._prefix = f"{config.key_prefix}{config.namespace}:".encode()
        self._down_until = 0.0
        self.up = True
        if metrics:
            metrics.redis_up.set(1)

    def key(self, block_hash: BlockHash) -> bytes:
        return self._prefix + block_hash.hex().encode()

    def _mark(self, up: bool, exc: BaseException | None = None) -> None:
        if up and not self.up:
            log.info("redis tier reachable again")
        if not up:
            self._down_until = time.monotonic() + self.config.retry_interval_seconds
            if self.up:
                log.warning("redis tier unreachable (%s: %s); serving misses, retry in %.1fs",
                            type(exc).__name__, exc, self.config.retry_interval_seconds)
            if self._metrics:
                self._metrics.errors.labels(self.name).inc()
        self.up = up
        if self._metrics:
            self._metrics.redis_up.set(1 if up else 0)

    async def _call(self, fn: Callable[[], Awaitable[T]], fallback: T) -> T:
        if not self.up and time.monotonic() < self._down_until:
            return fallback
        try:
            result = await fn()
        except _DOWN_ERRORS as exc:
            self._mark(False, exc)
            return fallback
        except RedisError as exc:  # reachable but refused (e.g. OOM under noeviction): count, serve misses
            log.warning("redis tier call failed: %s: %s", type(exc).__name__, exc)
            if self._metrics:
                self._metrics.errors.labels(self.name).inc()
            return fallback
        if not self.up:
            self._mark(True)
        return result

    async def ping(self) -> bool:
        """True if Redis answers now (also updates the up/down state)."""
        async def _ping() -> bool:
            return bool(await self._client.ping())
        return await self._call(_ping, False)

    async def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Replies of one non-transactional pipeline; a command that failed on its own yields None."""
        pipe = self._client.pipeline(transaction=False)
        build(pipe)
        replies = list(await pipe.execute(raise_on_error=False))
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            down = next((r for r in failed if isinstance(r, _DOWN_ERRORS)), None)
            if down is not None:
                raise down
            log.warning("redis tier: %d of %d commands failed: %s", len(failed), len(replies), failed[0])
            if self._metrics:
                self._metrics.errors.labels(self.name).inc()
        return [None if isinstance(r, Exception) else r for r in replies]

    async def contains_many(self, keys: Sequence[BlockHash]) -> list[bool]:
        if not keys:
            return []
        def build(pipe: Any) -> None:
            for k in keys:
                pipe.exists(self.key(k))
        replies = await self._call(lambda: self._pipeline(build), [0] * len(keys))
        return [bool(r) for r in replies]

    async def get_many(self, keys: Sequence[BlockHash]) -> list[bytes | None]:
        if not keys:
            return []
        start = time.perf_counter()
        def build(pipe: Any) -> None:
            for k in keys:
                pipe.get(self.key(k))
        out: list[bytes | None] = await self._call(lambda: self._pipeline(build), [None] * len(keys))
        if self._metrics:
            hits = [v for v in out if v is not None]
            self._metrics.record_get(self.name, len(hits), len(out) - len(hits), sum(map(len, hits)),
                                     time.perf_counter() - start)
        return out

    async def put_many(self, items: Sequence[tuple[BlockHash, bytes]]) -> PutResult:
        if not items:
            return PutResult([], [])
        start = time.perf_counter()
        ttl = self.config.ttl_seconds or None
        def build(pipe: Any) -> None:
            for k, data in items:
                pipe.set(self.key(k), data, ex=ttl)
        replies: list[object] = await self._call(lambda: self._pipeline(build), [None] * len(items))
        stored = [(k, d) for (k, d), ok in zip(items, replies, strict=True) if ok]
        if self._metrics and stored:
            self._metrics.record_put(self.name, sum(len(d) for _, d in stored), time.perf_counter() - start)
        return PutResult([k for k, _ in stored], [])

    async def remove_many(self, keys: Sequence[BlockHash]) -> int:
        if not keys:
            return 0
        def build(pipe: Any) -> None:
            for k in keys:
                pipe.delete(self.key(k))
        replies = await self._call(lambda: self._pipeline(build), [0] * len(keys))
        return sum(int(r or 0) for r in replies)

    async def close(self) -> None:
        await self._client.aclose()
