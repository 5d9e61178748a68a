"""Helpers for cache tests: deterministic blocks and hashes."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from cache.metrics import CacheMetrics
from cache.serde import encode_block

KEYS = HashKeys(model_id="tiny", layout="f32")


def make_blocks(n: int, seed: int = 0,
                shape: tuple[int, ...] = (2, 2, 2, 16, 8)) -> list[tuple[BlockHash, bytes]]:
    """n chained (hash, encoded block) pairs with deterministic contents."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 2048, size=16 * n).tolist()
    hashes = hash_prompt_blocks(tokens, KEYS)
    out = []
    for i, h in enumerate(hashes):
        kv = rng.standard_normal(shape).astype(np.float32)
        out.append((h, encode_block(h, tokens[16 * i:16 * (i + 1)], kv, "tiny")))
    return out


@pytest.fixture
def metrics() -> CacheMetrics:
    return CacheMetrics(CollectorRegistry())


def sample(metrics: CacheMetrics, name: str, **labels: str) -> float:
    for family in (metrics.hits, metrics.misses, metrics.checksum_failures, metrics.evictions, metrics.errors,
                   metrics.redis_up, metrics.read_bytes, metrics.written_bytes, metrics.index_gaps,
                   metrics.events_published):
        for metric in family.collect():
            for s in metric.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
    return 0.0
