"""Prometheus names of the cache component. Every metric the cache exports is created here.

Labels are bounded: `tier` is one of memory / redis / disk (and device for engine-pool events), `op`
one of get / put / remove. The registry is passed in (never the global one), so tests build isolated
registries. Recording methods only update metrics; they have no other side effects.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class CacheMetrics:
    """hits, misses, bytes and latency per tier; evictions; checksum failures; errors; Redis up."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter("heteroserve_cache_hits_total", "Blocks found, per tier.", ["tier"],
                            registry=registry)
        self.misses = Counter("heteroserve_cache_misses_total", "Blocks looked up and not found, per tier.",
                              ["tier"], registry=registry)
        self.read_bytes = Counter("heteroserve_cache_read_bytes_total", "Bytes read from a tier.", ["tier"],
                                  registry=registry)
        self.written_bytes = Counter("heteroserve_cache_written_bytes_total", "Bytes written to a tier.",
                                     ["tier"], registry=registry)
        self.op_seconds = Histogram("heteroserve_cache_op_seconds", "Latency of one batched tier call.",
                                    ["tier", "op"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.evictions = Counter("heteroserve_cache_evictions_total", "Blocks evicted by a tier's policy.",
                                 ["tier"], registry=registry)
        self.checksum_failures = Counter(
            "heteroserve_cache_checksum_failures_total",
            "Blocks that failed their header or checksum check and were dropped.", ["tier"],
            registry=registry)
        self.errors = Counter("heteroserve_cache_errors_total",
                              "Tier calls that failed (connection, I/O); served as misses.", ["tier"],
                              registry=registry)
        self.stored_bytes = Gauge("heteroserve_cache_stored_bytes", "Bytes held by a local tier.", ["tier"],
                                  registry=registry)
        self.redis_up = Gauge("heteroserve_cache_redis_up", "1 if the Redis tier is reachable, else 0.",
                              registry=registry)
        self.events_published = Counter("heteroserve_cache_kv_events_published_total",
                                        "KV events appended to the Redis stream.", registry=registry)
        self.index_gaps = Counter("heteroserve_cache_index_gaps_total",
                                  "Times the prefix index found the event stream trimmed past its position "
                                  "and rebuilt from the snapshot.", registry=registry)

    def record_get(self, tier: str, hits: int, misses: int, nbytes: int, seconds: float) -> None:
        self.hits.labels(tier).inc(hits)
        self.misses.labels(tier).inc(misses)
        self.read_bytes.labels(tier).inc(nbytes)
        self.op_seconds.labels(tier, "get").observe(seconds)

    def record_put(self, tier: str, nbytes: int, seconds: float) -> None:
        self.written_bytes.labels(tier).inc(nbytes)
        self.op_seconds.labels(tier, "put").observe(seconds)
