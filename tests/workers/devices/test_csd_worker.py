"""`heteroserve worker --device csd` processes: the drive's counters on the worker's /metrics after real
requests (a corrupt flash page recomputed, a request too large for the drive refused); a killed drive
process ends the worker's requests with a clear UNAVAILABLE over gRPC (what the gateway retries
elsewhere), later ones too, and nothing hangs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from common.errors import InvalidRequestError, UnavailableError
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


def greedy(prompt: list[int], max_tokens: int) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(
        prompt_token_ids=prompt,
        sampling=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True))


async def tokens_of(client: WorkerClient, request: worker_pb2.GenerateRequest) -> list[int]:
    return [t for reply in [r async for r in client.generate(request)] for t in reply.token_ids]


async def test_drive_counters_on_the_worker_metrics_after_real_requests(tiny_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    drive_dir = tmp_path / "drive"
    DriveConfig(time_scale=1.0).save(drive_dir)
    # 1 MiB of KV = 64 blocks of 16 tokens (2 layers x 8 KiB pages): 1,024 tokens fit on the drive
    worker = start_worker(tiny_model_dir, extra=("--device", "csd", "--csd-path", str(drive_dir),
                                                 "--kv-cache-mb", "1"))
    try:
        assert worker.metric("heteroserve_csd_drive_up") == 1
        assert worker.metric("heteroserve_csd_attention_calls_total") == 0
        prompt = list(range(5, 205))
        async with WorkerClient(worker.address, CLUSTER_TOKEN) as client:
            first = await asyncio.wait_for(tokens_of(client, greedy(prompt, 8)), timeout=60)
            # 7 decode steps x 2 layers attend in storage; every step's bytes crossed the link
            assert worker.metric("heteroserve_csd_attention_calls_total") == 14
            assert worker.metric("heteroserve_csd_link_bytes_total", 'direction="to_drive"') > 200 * 1024
            assert worker.metric("heteroserve_csd_flash_read_bytes_total") > 0
            # Layer 0's page of block 1, a cached block of that prompt, corrupted on disk: the same prompt
            # again hits it, fails its checksum, is recomputed and gives the same tokens.
            with open(drive_dir / "slot-0" / "flash.bin", "r+b") as handle:
                handle.seek(1 * 8192 + 100)
                handle.write(b"\x00\x01\x02\x03")
            again = await asyncio.wait_for(tokens_of(client, greedy(prompt, 8)), timeout=60)
            assert again == first
            assert worker.metric("heteroserve_csd_checksum_failures_total") == 1
            with pytest.raises(InvalidRequestError, match="drive full"):
                await tokens_of(client, greedy(list(range(5, 205)) * 6, 4))  # 1,200 tokens
        assert worker.metric("heteroserve_csd_full_refusals_total") == 1
    finally:
        worker.stop()
