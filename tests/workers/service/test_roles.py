"""Roles enforced by the worker: each role refuses, with PERMISSION_DENIED naming its role and the RPC,
exactly the Worker RPCs its role does not serve (workers/service/roles.py), counts each refusal, and
serves the rest. Real `WorkerServer`s (tiny model, real gRPC on 127.0.0.1) in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import AuthenticationError, HeteroserveError, PermissionDeniedError
from common.vocab import ROLES, Role
from heteroserve.v1 import common_pb2, worker_pb2
from tests.workers.service.worker_procs import inprocess_server
from workerrpc.client import WorkerClient
from workers.service.roles import SERVES, WORKER_RPCS, serves
from workers.service.server import WorkerServer

TOKEN = "roles-cluster-token"
PROMPT = [(7 * i + 3) % 200 + 10 for i in range(40)]  # two full blocks and change
# What each role must refuse: the table of workers/README.md, written out (not derived from SERVES).
REFUSED: dict[Role, set[str]] = {
    "colocated": set(),
    "prefill": {"Session", "Generate", "Decode"},
    "decode": {"Prefill", "PullKV"},
}


def sampling() -> common_pb2.SamplingParams:
    return common_pb2.SamplingParams(max_tokens=3, ignore_eos=True)


async def _drain_list(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


def calls(client: WorkerClient) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One valid call of every Worker RPC but Drain (which would stop the worker taking work)."""
    generate = worker_pb2.GenerateRequest(request_id="g", prompt_token_ids=PROMPT, sampling=sampling())
    return {
        "Session": lambda: _drain_list(client.session_generate(generate)),
        "Generate": lambda: _drain_list(client.generate(generate)),
        "Prefill": lambda: client.prefill(worker_pb2.PrefillRequest(
            request_id="p", prompt_token_ids=PROMPT, sampling=sampling())),
        "Decode": lambda: _drain_list(client.decode(worker_pb2.DecodeRequest(
            request_id="d", prompt_token_ids=PROMPT, generated_token_ids=[11], sampling=sampling()))),
        "PullKV": lambda: _drain_list(client.pull_kv([b"\0" * 16])),
        "Stats": client.stats,
    }


def refusals(server: WorkerServer, method: str) -> float:
    value = server.registry.get_sample_value("heteroserve_worker_role_refusals_total", {"method": method})
    return value or 0.0


def test_table_places_every_worker_rpc_and_matches_the_readme_table() -> None:
    service = worker_pb2.DESCRIPTOR.services_by_name["Worker"]
    assert {m.name for m in service.methods} == WORKER_RPCS  # a new RPC must be placed in SERVES
    for role in ROLES:
        assert {m for m in WORKER_RPCS if not serves(role, m)} == REFUSED[role], role
        assert {"Stats", "Drain"} <= SERVES[role]  # the planner and gateway manage every role


@pytest.fixture(params=ROLES)
async def server(request: pytest.FixtureRequest, tiny_model_dir: Path) -> AsyncIterator[WorkerServer]:
    worker = inprocess_server(tiny_model_dir, f"roles-{request.param}", TOKEN, role=request.param)
    await worker.start()
    yield worker
    await worker.stop()


async def test_each_role_refuses_what_it_must_and_serves_the_rest(server: WorkerServer) -> None:
    role = server.config.role
    async with WorkerClient(server.address, TOKEN) as client:
        for method, call in calls(client).items():
            if method in REFUSED[role]:
                with pytest.raises(PermissionDeniedError) as refused:
                    await call()
                message = str(refused.value)
                assert f"worker {server.config.worker_id} has role {role!r}" in message
                assert f"does not serve {method}" in message
                assert refusals(server, method) == 1.0, method
            else:
                try:
                    await call()
                except HeteroserveError as exc:  # served: whatever it answers, it is not a refusal
                    assert not isinstance(exc, PermissionDeniedError), (method, exc)
                assert refusals(server, method) == 0.0, method
        # a refused call was never run: the engine saw no request of it
        stats = await client.stats()
    if role == "prefill":
        assert stats.generated_tokens_total == 1  # Prefill's first token only; Generate/Decode refused
    if role == "decode":
        assert stats.prompt_tokens_total > 0  # Generate and Decode ran


async def test_unauthenticated_callers_learn_nothing_about_roles(tiny_model_dir: Path) -> None:
    worker = inprocess_server(tiny_model_dir, "roles-auth", TOKEN, role="prefill")
    await worker.start()
    try:
        async with WorkerClient(worker.address, "wrong-token") as stranger:
            with pytest.raises(AuthenticationError):  # the token check comes before the role check
                await calls(stranger)["Generate"]()
        assert refusals(worker, "Generate") == 0.0
    finally:
        await worker.stop()
