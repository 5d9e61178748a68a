"""A `heteroserve worker --device csd` process whose drive process is killed: its requests end with a
clear UNAVAILABLE over gRPC (what the gateway retries elsewhere), later ones too, and nothing hangs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from common.errors import UnavailableError
from heteroserve.v1 import common_pb2, worker_pb2
from tests.workers.service.worker_procs import CLUSTER_TOKEN, start_worker
from workerrpc.client import WorkerClient
from workers.devices.csd import DriveConfig

pytestmark = [pytest.mark.slow]


def drive_pid(worker_pid: int) -> int:
    children = psutil.Process(worker_pid).children(recursive=True)
    drives = [c.pid for c in children if "workers.devices.csd.drive" in " ".join(c.cmdline())]
    assert len(drives) == 1, f"expected one drive process under the worker, found {drives}"
    return drives[0]


async def test_killed_drive_ends_worker_requests_unavailable(tiny_model_dir: Path, tmp_path: Path) -> None:
    DriveConfig(time_scale=200.0).save(tmp_path / "drive")  # slow enough to be caught mid-decode
    worker = start_worker(tiny_model_dir, extra=("--device", "csd", "--csd-path", str(tmp_path / "drive")))
    try:
        request = worker_pb2.GenerateRequest(
            prompt_token_ids=list(range(5, 205)),
            sampling=common_pb2.SamplingParams(max_tokens=500, temperature=0.0, ignore_eos=True))
        async with WorkerClient(worker.address, CLUSTER_TOKEN) as client:
            stream = client.generate(request).__aiter__()
            first = await asyncio.wait_for(stream.__anext__(), timeout=60)
            assert first.token_ids
            os.kill(drive_pid(worker.proc.pid), signal.SIGKILL)

            async def drain() -> None:
                async for _ in stream:
                    pass

            with pytest.raises(UnavailableError, match="drive"):
                await asyncio.wait_for(drain(), timeout=30)
            with pytest.raises(UnavailableError, match="drive"):  # the dead drive refuses new work at once
                await asyncio.wait_for(drain_all(client, request), timeout=30)
        assert worker.proc.poll() is None  # the worker process itself stays up (and reports the failure)
    finally:
        worker.stop()


async def drain_all(client: WorkerClient, request: worker_pb2.GenerateRequest) -> None:
    async for _ in client.generate(request):
        pass
