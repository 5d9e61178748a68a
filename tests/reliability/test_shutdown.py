"""A registered worker exits on SIGTERM within its drain grace (plus slack), with exit code 0.

Found by this suite: a registered worker used to hang after its drain, because a cancel of the
heartbeat task that raced with `mark_draining()` was swallowed by `asyncio.wait_for` (Python 3.11),
so `Registration.stop()` awaited a task that never ended. Fixed in workers/service/registration.py.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from common.localredis import LocalRedis, RedisServerConfig
from tests.control_plane.gateway.gateway_procs import start_worker

DRAIN_GRACE_SECONDS = 2.0  # what gateway_procs.start_worker passes
SLACK_SECONDS = 8.0


@pytest.mark.slow
def test_registered_worker_exits_on_sigterm(tiny_model_dir: Path, tmp_path: Path) -> None:
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path / "redis")).start()
    try:
        worker = start_worker(tiny_model_dir, redis.url, "rel-sigterm")
        worker.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = worker.proc.wait(timeout=DRAIN_GRACE_SECONDS + SLACK_SECONDS)
        except Exception:
            worker.kill()
            raise
        assert code == 0 and time.monotonic() - started < DRAIN_GRACE_SECONDS + SLACK_SECONDS
        import redis as redis_lib

        client = redis_lib.Redis.from_url(redis.url)
        assert not [k for k in client.scan_iter() if b"rel-sigterm" in k]  # deregistered
        client.close()
    finally:
        redis.stop()
