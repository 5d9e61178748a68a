"""A registered worker exits on SIGTERM within its drain grace (plus slack), with exit code 0.

Found by this suite (not fixed here, see the xfail reason): `heteroserve worker --redis-url URL` run with
OMP_NUM_THREADS=1 (as every test helper and the embedded launcher run it) logs "signal received:
draining" and "draining: refusing new work, 0 calls in flight" and then never exits; the helpers'
`stop()` SIGKILLs it after 15 s. Without `--redis-url` it exits at once. Run in-process through
`heteroserve.cli.main` without OMP_NUM_THREADS it exits too. A task dump of the hung process was not
obtained in the time available.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from heteroserve.localredis import LocalRedis, RedisServerConfig
from tests.control_plane.gateway.gateway_procs import start_worker

DRAIN_GRACE_SECONDS = 2.0  # what gateway_procs.start_worker passes
SLACK_SECONDS = 8.0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="worker with --redis-url and OMP_NUM_THREADS=1 hangs after SIGTERM "
                   "drain (workers/service/server.py serve() / registration stop); owner: worker service")
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
