"""Mutual TLS on the Worker service, both directions, with real certificates and real gRPC on 127.0.0.1.

The worker refuses a client without a certificate, with a certificate of another CA, or in plaintext;
the gateway side (`ClusterView`, the gateway's view of the workers) refuses a worker whose certificate
is of another CA, does not name `heteroserve-worker`, or that serves plaintext: such a worker never
becomes a routing candidate. The cluster token stays required on top of a valid certificate. Workers
are `WorkerServer`s in this process (tiny model); the certificates come from `common.certs`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from common.certs import ClusterCA
from common.errors import AuthenticationError, UnavailableError
from common.registry import WorkerRecord
from common.tls import WORKER_SERVER_NAME, ClientTLS, Material, TLSFiles, check_pair
from control_plane.orchestrator.cluster import ClusterView
from control_plane.router import InflightTracker
from heteroserve.v1 import worker_pb2, worker_pb2_grpc
from tests.workers.service.worker_procs import inprocess_server
from workerrpc.client import WorkerClient
from workers.service.server import WorkerServer

TOKEN = "mtls-cluster-token"


@dataclass
class PKI:
    ca: ClusterCA
    worker: TLSFiles
    gateway: TLSFiles
    other_ca: ClusterCA
    root: Path


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    ca = ClusterCA.create(tmp_path / "ca")
    return PKI(ca, ca.issue("worker", tmp_path / "worker"), ca.issue("gateway", tmp_path / "gateway"),
               ClusterCA.create(tmp_path / "other-ca"), tmp_path)


async def _serve(model_dir: Path, name: str, tls: TLSFiles | None) -> WorkerServer:
    server = inprocess_server(model_dir, name, TOKEN, tls=tls)
    await server.start()
    return server


@pytest.fixture
async def tls_worker(tiny_model_dir: Path, pki: PKI) -> AsyncIterator[WorkerServer]:
    server = await _serve(tiny_model_dir, "mtls-worker", pki.worker)
    yield server
    await server.stop()


async def test_no_plain_session_port_under_tls(tls_worker: WorkerServer, pki: PKI) -> None:
    """The worker's plain session port (workers/service/session_port.py) is unencrypted: a TLS worker
    binds none and names none, and a TLS client never uses one, so generations stay on mutual TLS."""
    assert tls_worker.session_port is None
    async with WorkerClient(tls_worker.address, TOKEN, tls=ClientTLS(pki.gateway)) as member:
        request = worker_pb2.GenerateRequest(request_id="tls-1", prompt_token_ids=[5, 6, 7])
        request.sampling.max_tokens = 3
        for _ in range(2):
            assert [c async for c in member.session_generate(request)][-1].finish_reason
        assert member._session.stream_port is None and member._fast is None
    tls_client = WorkerClient("127.0.0.1:1", TOKEN, tls=ClientTLS(pki.gateway))
    tls_client._session.stream_port = 4242  # even if a worker named a port
    assert tls_client._fast_session() is None
    await tls_client.close()


def test_certificate_files_are_private_and_consistent(pki: PKI) -> None:
    for files in (pki.worker, pki.gateway):
        assert files.key_file.stat().st_mode & 0o777 == 0o600
        check_pair(Material(files.cert_file.read_bytes(), files.key_file.read_bytes(),
                            files.ca_file.read_bytes()))
    assert (pki.root / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="does not belong to the certificate"):
        check_pair(Material(pki.worker.cert_file.read_bytes(), pki.gateway.key_file.read_bytes(),
                            pki.worker.ca_file.read_bytes()))
    with pytest.raises(ValueError, match=r"tls_dir: .*tls\.crt does not exist"):
        TLSFiles.from_dir(pki.root / "nowhere")


async def test_worker_refuses_clients_without_a_cluster_certificate(tls_worker: WorkerServer,
                                                                    pki: PKI) -> None:
    async with WorkerClient(tls_worker.address, TOKEN, tls=ClientTLS(pki.gateway)) as member:
        assert (await member.stats()).worker_id == "mtls-worker"
    async with WorkerClient(tls_worker.address, TOKEN, timeout_seconds=3) as plaintext:
        with pytest.raises(UnavailableError):
            await plaintext.stats()
    # a certificate of another CA, from a client that itself trusts the cluster CA: only its own
    # certificate is wrong
    stranger = pki.other_ca.issue("gateway", pki.root / "stranger", ca_bundle=pki.ca.cert_pem)
    async with WorkerClient(tls_worker.address, TOKEN, timeout_seconds=3, tls=ClientTLS(stranger)) as client:
        with pytest.raises(UnavailableError):
            await client.stats()
    # TLS that verifies the worker but presents no client certificate
    anonymous = grpc.ssl_channel_credentials(root_certificates=pki.worker.ca_file.read_bytes())
    async with aio.secure_channel(tls_worker.address, anonymous,
                                  options=[("grpc.ssl_target_name_override", WORKER_SERVER_NAME)]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            await worker_pb2_grpc.WorkerStub(channel).Stats(
                worker_pb2.StatsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # the cluster token stays a second factor: a valid certificate alone is not enough
    async with WorkerClient(tls_worker.address, "not-the-token", tls=ClientTLS(pki.gateway)) as client:
        with pytest.raises(AuthenticationError):
            await client.stats()
    assert tls_worker.tls_material is not None and tls_worker.tls_material.reloads == 0


def _record(server: WorkerServer) -> WorkerRecord:
    return WorkerRecord(worker_id=server.config.worker_id, address=server.address, node_type="cpu",
                        device="cpu", role=server.config.role, model="tiny", pool="default", kv_blocks=1,
                        max_num_seqs=1, block_size=16, started_at=time.time())


async def test_gateway_side_refuses_workers_without_a_cluster_worker_certificate(
        tiny_model_dir: Path, pki: PKI) -> None:
    cluster_ca = pki.ca.cert_pem  # every rogue trusts the cluster CA: only what it presents is wrong
    rogues: dict[str, TLSFiles | None] = {
        "other-ca": pki.other_ca.issue("worker", pki.root / "rogue-1", ca_bundle=cluster_ca),
        "not-a-worker-name": pki.ca.issue("planner", pki.root / "rogue-2"),  # cluster CA, no worker SAN
        "plaintext": None,
    }
    servers = [await _serve(tiny_model_dir, "good", pki.worker)]
    servers += [await _serve(tiny_model_dir, name, files) for name, files in rogues.items()]
    view = ClusterView(None, TOKEN, InflightTracker(), unary_timeout_seconds=3.0, tls=ClientTLS(pki.gateway))
    try:
        for server in servers:
            view.add_static(_record(server))
        await view.refresh()
        healthy = {w.worker_id: w.healthy for w in view.snapshot()}
    finally:
        await view.stop()
        for server in servers:
            await server.stop()
    assert healthy == {"good": True, "other-ca": False, "not-a-worker-name": False, "plaintext": False}


async def test_client_credentials_follow_the_files(pki: PKI) -> None:
    client = ClientTLS(pki.gateway)
    first: Any = client.credentials()
    assert client.credentials() is first  # unchanged files: the same credentials
    pki.ca.issue("gateway", pki.gateway.cert_file.parent)  # rotated
    assert client.credentials() is not first
    # a half-written rotation (key of another certificate) is refused; the last good pair stays
    current = client.credentials()
    pki.gateway.key_file.write_bytes(pki.worker.key_file.read_bytes())
    assert client.credentials() is current


async def test_health_port_serves_only_health_in_plaintext(tiny_model_dir: Path, pki: PKI) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from common.localredis import free_port

    port = free_port()
    server = inprocess_server(tiny_model_dir, "mtls-health", TOKEN, tls=pki.worker, health_port=port)
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:  # as the kubelet probes
            probe = health_pb2_grpc.HealthStub(channel)
            reply = await probe.Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as other:  # nothing else is served there
                await worker_pb2_grpc.WorkerStub(channel).Stats(
                    worker_pb2.StatsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=3)
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
            await server.servicer.start_draining()  # the same health state as the mTLS port
            reply = await probe.Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop()


def test_tls_dir_flag_refuses_missing_or_mismatched_files(pki: PKI) -> None:
    import argparse

    from common.errors import ConfigError
    from heteroserve.cli._tls import tls_files

    assert tls_files(argparse.Namespace(tls_dir=str(pki.worker.cert_file.parent))) == pki.worker
    assert tls_files(argparse.Namespace(tls_dir=None)) is None
    with pytest.raises(ConfigError, match=r"tls\.crt does not exist") as missing:
        tls_files(argparse.Namespace(tls_dir=str(pki.root / "nowhere")))
    assert missing.value.field == "--tls-dir"
    pki.worker.key_file.write_bytes(pki.gateway.key_file.read_bytes())  # a half-written rotation
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        tls_files(argparse.Namespace(tls_dir=str(pki.worker.cert_file.parent)))
