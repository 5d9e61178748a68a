"""Shared fixtures: a real redis-server per test session, real tiny models in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.localredis import LocalRedis, RedisServerConfig

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A real redis-server on a free loopback port, for the whole session. Tests use their own keys
    or flush with the `redis_url` fixture."""
    server = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    """URL of the session's Redis, flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic tiny Llama model in Hugging Face format, generated once per session."""
    from heteroserve.modelgen import create_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    create_model(path, preset="tiny", seed=0)
    return path
