"""CacheConfig from a YAML-shaped mapping (errors name the field); LocalIndex against a reference model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cache.config import CacheConfig
from cache.hashing import BlockHash
from cache.serde import SerdeOptions
from cache.tiers.policies import LocalIndex, LRUPolicy
from common.config import build
from common.errors import ConfigError


def test_cache_config_from_mapping() -> None:
    config = build(CacheConfig, {
        "memory": {"capacity_bytes": 1000},
        "redis": {"url": "rediss://cache:6380/0", "ttl_seconds": 5, "cluster": True},
        "disk": {"root": "/var/cache/hs", "capacity_bytes": 100},
        "disk_role": {"write": "back", "verify": False, "encoding": {"zlib_level": 3}},
    }, source="cache.yaml")
    assert config.disk is not None and config.disk.root == Path("/var/cache/hs")
    assert config.redis is not None and config.redis.cluster
    assert config.disk_role.encoding == SerdeOptions(zlib_level=3)


@pytest.mark.parametrize(("mapping", "field"), [
    ({"redis": {"url": "http://x"}}, "redis"),
    ({"disk_role": {"write": "sideways"}}, "disk_role.write"),
    ({"memory": {"policy": "mru"}}, "memory"),
    ({"disk": {"root": "/x", "capacity_bytes": -1}}, "disk"),
])
def test_bad_cache_config_names_the_field(mapping: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(CacheConfig, mapping, source="cache.yaml")
    assert info.value.field == field and "cache.yaml" in str(info.value)


KEYS = [BlockHash(bytes([i]) * 16) for i in range(6)]
OPS = st.lists(st.tuples(st.sampled_from(["add", "touch", "remove"]), st.integers(0, 5), st.integers(1, 40)),
               max_size=60)


@given(OPS)
def test_lru_local_index_matches_reference(ops: list[tuple[str, int, int]]) -> None:
    """Exact LRU order and byte accounting against a plain ordered-dict model."""
    index = LocalIndex(LRUPolicy(), capacity_bytes=64)
    model: dict[BlockHash, int] = {}  # insertion order = recency order (oldest first)
    for op, i, size in ops:
        key = KEYS[i]
        if op == "add":
            model.pop(key, None)
            index.remove(key)
            expected = []
            while model and sum(model.values()) + size > 64:
                oldest = next(iter(model))
                expected.append(oldest)
                del model[oldest]
            assert index.victims_for(size) == expected
            index.add(key, size)
            model[key] = size
        elif op == "touch" and key in model:
            index.touch(key)
            model[key] = model.pop(key)
        elif op == "remove":
            assert index.remove(key) == model.pop(key, None)
        assert index.total_bytes == sum(model.values())
        assert set(index) == set(model)
