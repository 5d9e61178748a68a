"""A `WorkerServer` in this process (real engine, real gRPC on 127.0.0.1): the Drain RPC and the CLI's
flag errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.errors import UnavailableError
from heteroserve.cli import main as cli_main
from heteroserve.v1 import common_pb2, worker_pb2
from tests.workers.service.worker_procs import inprocess_server
from workerrpc.client import WorkerClient
from workers.service.server import WorkerServer

TOKEN = "in-process-cluster-token"


def requests(server: WorkerServer, method: str, status: str) -> float | None:
    """The worker's count of finished `method` calls with `status`."""
    return server.registry.get_sample_value("heteroserve_worker_requests_total",
                                            {"method": method, "status": status})


@pytest.fixture
async def server(tiny_model_dir: Path) -> AsyncIterator[WorkerServer]:
    worker = inprocess_server(tiny_model_dir, "inproc", TOKEN)
    await worker.start()
    yield worker
    await worker.stop()


async def test_drain_rpc_waits_for_running_stream_then_refuses_work(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        stream = client.generate(worker_pb2.GenerateRequest(
            request_id="long", prompt_token_ids=[5, 6, 7],
            sampling=common_pb2.SamplingParams(max_tokens=200, ignore_eos=True)))
        first = await anext(stream)
        drain = asyncio.create_task(client.drain(timeout_seconds=30))
        rest = [chunk async for chunk in stream]
        reply = await drain
        assert (reply.drained, reply.remaining) == (True, 0)
        assert len(first.token_ids) + sum(len(c.token_ids) for c in rest) == 200
        with pytest.raises(UnavailableError, match="draining"):
            async for _ in client.generate(worker_pb2.GenerateRequest(
                    prompt_token_ids=[5], sampling=common_pb2.SamplingParams(max_tokens=2))):
                pass
        assert not await client.health()
        stats = await client.stats()  # still answered while draining
        assert stats.draining and stats.num_running == 0
    assert server.registry.get_sample_value("heteroserve_worker_draining") == 1
    assert requests(server, "Generate", "unavailable") == 1


async def test_cancelled_stream_aborts_its_engine_request(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        stream = client.generate(worker_pb2.GenerateRequest(
            request_id="abandoned", prompt_token_ids=[5, 6, 7],
            sampling=common_pb2.SamplingParams(max_tokens=3000, ignore_eos=True)))
        await anext(stream)
        await stream.aclose()  # cancels the call
        for _ in range(100):
            stats = await client.stats()
            if stats.num_running == 0 and stats.num_waiting == 0:
                break
            await asyncio.sleep(0.05)
        assert (stats.num_running, stats.num_waiting) == (0, 0)
        assert stats.generated_tokens_total < 3000
    for _ in range(50):  # the outcome is recorded when the server notices the cancellation
        if requests(server, "Generate", "cancelled"):
            break
        await asyncio.sleep(0.05)
    assert requests(server, "Generate", "cancelled") == 1


async def test_port_in_use_is_unavailable_error(server: WorkerServer, tiny_model_dir: Path) -> None:
    second = inprocess_server(tiny_model_dir, "second", TOKEN, port=server.port)
    with pytest.raises(UnavailableError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        await second.start()
    await second.stop()


async def test_decode_with_all_tokens_already_generated_just_finishes(server: WorkerServer) -> None:
    async with WorkerClient(server.address, TOKEN) as client:
        chunks = [c async for c in client.decode(worker_pb2.DecodeRequest(
            request_id="done", prompt_token_ids=[5, 6, 7], generated_token_ids=[8, 9],
            sampling=common_pb2.SamplingParams(max_tokens=2)))]
    assert [(list(c.token_ids), c.finish_reason) for c in chunks] == [([], "length")]


@pytest.mark.parametrize(("argv", "flag"), [
    (["--port", "70000"], "--port"),
    (["--port", "1", "--metrics-port", "-2"], "--metrics-port"),
    (["--port", "1", "--device", "csd"], "--csd-path"),
    (["--port", "1", "--kv-cache-mb", "0"], "--kv-cache-mb"),
    (["--port", "1", "--redis-url", "http://x"], "--redis-url"),
    (["--port", "1", "--cluster-token-env", "HETEROSERVE_TEST_UNSET_TOKEN"], "--cluster-token-env"),
])
def test_bad_flags_give_one_line_naming_the_flag(tiny_model_dir: Path, argv: list[str], flag: str,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSERVE_CLUSTER_TOKEN", TOKEN)
    monkeypatch.delenv("HETEROSERVE_TEST_UNSET_TOKEN", raising=False)
    assert cli_main(["worker", "--model", str(tiny_model_dir), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"heteroserve worker: error: {flag}: "), err


@pytest.mark.parametrize(("argv", "flag"), [(["--port", "x"], "--port"), ([], "--port"),
                                            (["--port", "1", "--role", "both"], "--role")])
def test_argparse_errors_are_one_line(tiny_model_dir: Path, argv: list[str], flag: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["worker", "--model", str(tiny_model_dir), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("heteroserve worker: error: ") and flag in err[0], err


def test_model_dir_without_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROSERVE_CLUSTER_TOKEN", TOKEN)
    assert cli_main(["worker", "--model", str(tmp_path), "--port", "0"]) == 2
    assert "error: --model: " in capsys.readouterr().err


def test_cache_flags_build_the_tiers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from heteroserve.cli import worker as worker_cli

    parser = argparse.ArgumentParser()
    worker_cli.configure(parser)
    monkeypatch.setenv("HETEROSERVE_CLUSTER_TOKEN", TOKEN)
    args = parser.parse_args(["--model", str(tmp_path), "--port", "0", "--shared-tier-url", "redis://h:1/0",
                              "--disk-tier", str(tmp_path / "kv"), "--disk-tier-mb", "64"])
    cache = worker_cli.cache_config(args)
    assert cache is not None and cache.memory is None
    assert cache.redis is not None and cache.redis.url == "redis://h:1/0"
    assert cache.disk is not None and cache.disk.capacity_bytes == 64 * 2**20
    assert cache.disk_role.write == "through"
    assert worker_cli.cache_config(parser.parse_args(["--model", str(tmp_path), "--port", "0"])) is None

