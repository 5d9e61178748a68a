"""Per-class traffic statistics in Redis: gateways write them, the planner reads them.

Layout. One Redis hash per time bucket, key `<prefix>:<bucket_start>` (bucket_start = unix seconds
rounded down to a multiple of `bucket_seconds`), expiring `retention_seconds` after its last write.
Fields are `<request_class>|<stat>`, all integers, summed with HINCRBY by every gateway replica:

    n            requests finished          slo_met     requests that met their SLO
    in_tokens    sum of prompt tokens       out_tokens  sum of generated tokens
    ttft_ms      sum of TTFT (ms)           tpot_ms     sum of TPOT (ms)
    in_h<i>      prompt-length histogram    out_h<i>    output-length histogram

Histogram bucket i holds lengths in [LENGTH_BUCKET_EDGES[i], LENGTH_BUCKET_EDGES[i+1]) (the last one is
open; `common.vocab`); the edges are Mélange's, so the planner can hand the histogram to the placement
workload model as is.

Writer. `TrafficRecorder.record()` only adds to an in-memory dict under a lock (no I/O, microseconds).
A daemon thread flushes every `flush_interval_seconds` with one pipelined batch of HINCRBY + EXPIRE.
If Redis is unreachable the batch is merged back and retried on the next flush; at most
`max_pending_fields` fields are kept, beyond that new records are dropped and counted in
`dropped_records`, so a Redis outage never slows or fails a request.

Reader. `TrafficReader.snapshot(window_seconds)` sums every bucket that overlaps the window
[now - window, now] and divides counts by the covered time (now - start of the oldest bucket).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from common.vocab import LENGTH_BUCKET_EDGES

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "heteroserve:traffic"
_STATS = ("n", "slo_met", "in_tokens", "out_tokens", "ttft_ms", "tpot_ms")


def length_bucket(num_tokens: int) -> int:
    """Index of the histogram bucket holding `num_tokens` (0 .. len(LENGTH_BUCKET_EDGES) - 1)."""
    return max(0, bisect.bisect_right(LENGTH_BUCKET_EDGES, num_tokens) - 1)


@dataclass(frozen=True)
class TrafficConfig:
    redis_url: str
    prefix: str = DEFAULT_PREFIX
    bucket_seconds: int = 5
    retention_seconds: int = 3600
    flush_interval_seconds: float = 1.0
    max_pending_fields: int = 100_000

    def __post_init__(self) -> None:
        if self.bucket_seconds < 1:
            raise ValueError(f"bucket_seconds must be >= 1, got {self.bucket_seconds}")
        if self.retention_seconds < self.bucket_seconds:
            raise ValueError(f"retention_seconds must be >= bucket_seconds, got {self.retention_seconds}")
        if self.flush_interval_seconds <= 0:
            raise ValueError(f"flush_interval_seconds must be > 0, got {self.flush_interval_seconds}")
        if self.max_pending_fields < 1:
            raise ValueError(f"max_pending_fields must be >= 1, got {self.max_pending_fields}")


def bucket_key(config: TrafficConfig, bucket_start: int) -> str:
    return f"{config.prefix}:{bucket_start}"


class TrafficRecorder:
    """Buffered, non-blocking writer of per-class statistics. Thread-safe; `close()` flushes and stops."""

    def __init__(self, config: TrafficConfig) -> None:
        self.config = config
        self._client = redis.Redis.from_url(config.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._pending: dict[tuple[int, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dropped_records = 0
        self._thread = threading.Thread(target=self._run, name="traffic-flush", daemon=True)
        self._thread.start()

    def record(self, request_class: str, input_tokens: int, output_tokens: int,
               ttft_s: float | None, tpot_s: float | None, slo_met: bool) -> None:
        """Count one finished request of `request_class`. Never blocks on I/O, never raises on Redis."""
        bucket = int(time.time()) // self.config.bucket_seconds * self.config.bucket_seconds
        c = request_class
        values = {
            f"{c}|n": 1, f"{c}|slo_met": int(slo_met),
            f"{c}|in_tokens": int(input_tokens), f"{c}|out_tokens": int(output_tokens),
            f"{c}|ttft_ms": round((ttft_s or 0.0) * 1000), f"{c}|tpot_ms": round((tpot_s or 0.0) * 1000),
            f"{c}|in_h{length_bucket(input_tokens)}": 1, f"{c}|out_h{length_bucket(output_tokens)}": 1,
        }
        with self._lock:
            if len(self._pending) + len(values) > self.config.max_pending_fields:
                self.dropped_records += 1
                return
            for field, value in values.items():
                self._pending[(bucket, field)] += value

    def flush(self) -> bool:
        """Write the buffered counts to Redis now. Returns False (and keeps them) if Redis failed."""
        with self._lock:
            batch, self._pending = self._pending, defaultdict(int)
        if not batch:
            return True
        pipe = self._client.pipeline(transaction=False)
        for (bucket, field), value in batch.items():
            pipe.hincrby(bucket_key(self.config, bucket), field, value)
        for bucket in {b for b, _ in batch}:
            pipe.expire(bucket_key(self.config, bucket), self.config.retention_seconds)
        try:
            pipe.execute()
            return True
        except redis.RedisError as exc:
            log.warning("traffic flush failed, will retry: %s", exc)
            with self._lock:
                for key, value in batch.items():
                    if len(self._pending) < self.config.max_pending_fields or key in self._pending:
                        self._pending[key] += value
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_interval_seconds):
            self.flush()

    def close(self) -> None:
        """Stop the flush thread after a last flush. Idempotent."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=5)
            self.flush()
            self._client.close()


@dataclass(frozen=True)
class ClassTraffic:
    """Observed traffic of one request class over a window. Rates in requests per second."""

    request_class: str
    num_requests: int
    arrival_rate_per_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    input_histogram: tuple[int, ...]
    output_histogram: tuple[int, ...]
    slo_attainment: float | None
    mean_ttft_s: float | None
    mean_tpot_s: float | None


@dataclass(frozen=True)
class TrafficSnapshot:
    window_seconds: float
    covered_seconds: float
    classes: dict[str, ClassTraffic]

    @property
    def total_rate_per_s(self) -> float:
        return sum(c.arrival_rate_per_s for c in self.classes.values())


class TrafficReader:
    """Async reader of the statistics that `TrafficRecorder`s wrote."""

    def __init__(self, config: TrafficConfig, client: aioredis.Redis | None = None) -> None:
        self.config = config
        self._client = client or aioredis.Redis.from_url(config.redis_url)
        self._owns_client = client is None

    async def snapshot(self, window_seconds: float, now: float | None = None) -> TrafficSnapshot:
        """Per-class rates and histograms over the last `window_seconds` (read-only)."""
        now = time.time() if now is None else now
        size = self.config.bucket_seconds
        first = int((now - window_seconds) // size * size)
        starts = list(range(first, int(now // size * size) + 1, size))
        pipe = self._client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(bucket_key(self.config, start))
        totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for fields in await pipe.execute():
            for raw_field, raw_value in fields.items():
                request_class, _, stat = raw_field.decode().rpartition("|")
                totals[request_class][stat] += int(raw_value)
        covered = max(now - first, 1e-9)
        classes = {name: _class_traffic(name, stats, covered) for name, stats in totals.items()
                   if stats.get("n", 0) > 0}
        return TrafficSnapshot(window_seconds=window_seconds, covered_seconds=covered, classes=classes)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _class_traffic(name: str, stats: dict[str, int], covered_seconds: float) -> ClassTraffic:
    n = stats["n"]
    nbuckets = len(LENGTH_BUCKET_EDGES)
    return ClassTraffic(
        request_class=name,
        num_requests=n,
        arrival_rate_per_s=n / covered_seconds,
        mean_input_tokens=stats.get("in_tokens", 0) / n,
        mean_output_tokens=stats.get("out_tokens", 0) / n,
        input_histogram=tuple(stats.get(f"in_h{i}", 0) for i in range(nbuckets)),
        output_histogram=tuple(stats.get(f"out_h{i}", 0) for i in range(nbuckets)),
        slo_attainment=stats.get("slo_met", 0) / n,
        mean_ttft_s=stats.get("ttft_ms", 0) / 1000 / n,
        mean_tpot_s=stats.get("tpot_ms", 0) / 1000 / n,
    )


DEFAULT_TTFT_SLO_SECONDS = 2.0
DEFAULT_TPOT_SLO_SECONDS = 0.2


def slo_met(plan_document: Mapping[str, Any] | None, request_class: str, ttft_s: float | None,
            tpot_s: float | None) -> bool:
    """Whether one request met its class's SLO: the plan's `classes[].ttft_seconds / tpot_seconds`
    (defaults DEFAULT_TTFT_SLO_SECONDS / DEFAULT_TPOT_SLO_SECONDS). A missing measurement counts as met."""
    ttft_slo, tpot_slo = DEFAULT_TTFT_SLO_SECONDS, DEFAULT_TPOT_SLO_SECONDS
    for c in (plan_document or {}).get("classes", ()):
        if c.get("name") == request_class:
            ttft_slo = float(c.get("ttft_seconds") or ttft_slo)
            tpot_slo = float(c.get("tpot_seconds") or tpot_slo)
    return (ttft_s is None or ttft_s <= ttft_slo) and (tpot_s is None or tpot_s <= tpot_slo)
