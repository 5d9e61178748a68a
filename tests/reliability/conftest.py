"""Fixtures of the reliability and security tests: one real cluster per session of this folder.

`cluster`: a private redis-server, one colocated tiny-model worker (`heteroserve worker`, shared Redis
tier on) and one gateway (`heteroserve gateway`, REST + gRPC, API keys of three tenants, admin token).
The processes come from the gateway engineer's helpers (tests/control_plane/gateway/gateway_procs.py),
so the tokens are theirs: `CLUSTER_TOKEN`, `ADMIN_TOKEN`, `API_KEY` (tenant acme), `OTHER_KEY` (globex).
The gateway's `max_tokens` bound is small (16) so that fuzzed requests that reach the model stay fast.
At teardown every process must exit cleanly, and no secret may appear in anything it wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.localredis import LocalRedis, RedisServerConfig
from tests.control_plane.gateway.gateway_procs import (
    ADMIN_TOKEN,
    API_KEY,
    CLUSTER_TOKEN,
    LIMITED_KEY,
    OTHER_KEY,
    Gateway,
    Worker,
    start_gateway,
    start_worker,
    wait_for_workers,
    write_api_keys,
)

SECRETS = (CLUSTER_TOKEN, ADMIN_TOKEN, API_KEY, OTHER_KEY, LIMITED_KEY)
MAX_TOKENS_LIMIT = 16  # the gateway default_max_tokens; it may not be lower


@dataclass
class Cluster:
    redis: LocalRedis
    worker: Worker
    gateway: Gateway

    def logs(self) -> str:
        """Everything the gateway and the worker wrote so far (stdout ready line + stderr log)."""
        return "\n".join([self.gateway.ready_line, self.gateway.stderr, self.worker.ready_line,
                          self.worker.stderr])


def leaked(text: str) -> list[str]:
    """The secrets (by position in `SECRETS`, never their value) that occur in `text`."""
    return [f"secret #{i}" for i, secret in enumerate(SECRETS) if secret in text]


@pytest.fixture(scope="session")
def cluster(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("rel-redis"))).start()
    worker: Worker | None = None
    gateway: Gateway | None = None
    try:
        worker = start_worker(tiny_model_dir, redis.url, "rel-co-0", shared_tier=True)
        keys = write_api_keys(tmp_path_factory.mktemp("rel-keys") / "keys.yaml")
        gateway = start_gateway(tiny_model_dir, redis.url, keys, "--max-tokens-limit",
                                str(MAX_TOKENS_LIMIT))
        wait_for_workers(gateway, 1)
        yield Cluster(redis, worker, gateway)
    finally:
        codes = [p.stop() for p in (gateway, worker) if p is not None]
        redis.stop()
    everything = "\n".join(p.stderr for p in (gateway, worker) if p is not None)
    assert codes == [0, 0], everything[-3000:]  # both drain and exit on SIGTERM (test_shutdown.py)
    assert leaked(everything) == [], "a secret reached a log"
