"""A whole cluster on mutual TLS, real processes: gateway → worker (Session, Prefill, Decode), worker →
worker PullKV on the P/D route, and certificate rotation mid-load that fails no request.

Prefill, decode and colocated `heteroserve worker`s and one `heteroserve gateway`, each with `--tls-dir`
(certificates of one throwaway CA, `common.certs`) and a plan sending long prompts P/D (pf → dc) and
short ones colocated. While four clients stream, the worker and gateway certificates are re-issued
three times (new keys, same CA), as cert-manager renews a Secret. Every request must finish with all its
tokens, with no retry and no migration; the workers must serve the newest certificate without a
restart; a worker started after the rotations (new channels, new files on both ends) must join.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from common.certs import ClusterCA
from common.localredis import LocalRedis, RedisServerConfig
from common.tls import WORKER_SERVER_NAME, TLSFiles
from heteroserve.client.client import AsyncClient
from heteroserve.client.retry import RetryPolicy
from heteroserve.client.types import Chunk
from tests.control_plane.gateway.gateway_procs import (
    API_KEY,
    Gateway,
    healthy_ids,
    publish_plan,
    start_gateway,
    write_api_keys,
)
from tests.control_plane.gateway.plans import PD_PLAN as PLAN
from tests.control_plane.gateway.plans import PD_POOLS as POOLS
from tests.workers.service.worker_procs import CLUSTER_TOKEN, WorkerProcess, start_worker

pytestmark = pytest.mark.slow
MAX_TOKENS = 24
ROTATIONS = 3


@dataclass
class TLSCluster:
    ca: ClusterCA
    certs: Path
    redis: LocalRedis
    workers: dict[str, WorkerProcess]
    gateway: Gateway

    def worker_tls(self) -> tuple[str, ...]:
        return ("--tls-dir", str(self.certs / "worker"))


def _wait_healthy(gateway: Gateway, ids: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ids <= healthy_ids(gateway):
        assert time.monotonic() < deadline, f"healthy: {healthy_ids(gateway)}, wanted {ids}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tls_cluster(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    certs = tmp_path_factory.mktemp("certs")
    ca = ClusterCA.create(certs / "ca")
    for name in ("worker", "gateway"):
        ca.issue(name, certs / name)
    redis = LocalRedis(RedisServerConfig(data_dir=tmp_path_factory.mktemp("mtls-redis"))).start()
    tls = ("--tls-dir", str(certs / "worker"))
    workers: dict[str, WorkerProcess] = {}
    gateway: Gateway | None = None
    try:
        for worker_id, pool in (("p", "pf"), ("d", "dc"), ("c", "co")):
            workers[worker_id] = start_worker(
                tiny_model_dir, role=POOLS[pool], redis_url=redis.url, worker_id=worker_id,
                extra=("--pool", pool, "--shared-tier-url", redis.url, *tls))
        publish_plan(redis.url, PLAN, "mtls test")
        keys = write_api_keys(tmp_path_factory.mktemp("keys") / "keys.yaml")
        gateway = start_gateway(tiny_model_dir, redis.url, keys, "--pd-min-uncached-tokens", "32",
                                "--tls-dir", str(certs / "gateway"), cluster_token=CLUSTER_TOKEN)
        _wait_healthy(gateway, set(workers))
        yield TLSCluster(ca, certs, redis, workers, gateway)
    finally:
        if gateway is not None:
            gateway.stop()
        for worker in workers.values():
            worker.stop()
        redis.stop()


def served_serial(address: str, client: TLSFiles) -> int:
    """Serial number of the certificate the worker at `address` presents to a new connection now."""
    context = ssl.create_default_context(cafile=str(client.ca_file))
    context.load_cert_chain(str(client.cert_file), str(client.key_file))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=WORKER_SERVER_NAME) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _prompt(i: int) -> str:
    if i % 3 == 2:
        return f"short prompt {i}"  # colocated route
    return " ".join(f"part {j} of request {i}, all new" for j in range(10))  # long: P/D


async def _load(target: str, stop: asyncio.Event, client_id: int) -> list[Chunk]:
    """Stream requests one after another until `stop`; the last chunk of each."""
    finals = []
    retry = RetryPolicy(max_retries=0)  # a failure must surface, not be retried away
    async with AsyncClient(target, api_key=API_KEY, transport="grpc", retry=retry) as client:
        i = client_id * 1000
        while not stop.is_set():
            chunks = [c async for c in client.stream(_prompt(i), model="tiny", max_tokens=MAX_TOKENS,
                                                      ignore_eos=True)]
            assert sum(len(c.token_ids) for c in chunks) == MAX_TOKENS, f"request {i} came up short"
            finals.append(chunks[-1])
            i += 1
    return finals


async def _rotate_under_load(cluster: TLSCluster) -> tuple[list[Chunk], list[int]]:
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load(cluster.gateway.grpc_target, stop, k)) for k in range(4)]
    serials = []
    for _ in range(ROTATIONS):
        await asyncio.sleep(1.5)
        worker_files = await asyncio.to_thread(cluster.ca.issue, "worker", cluster.certs / "worker")
        await asyncio.to_thread(cluster.ca.issue, "gateway", cluster.certs / "gateway")
        serials.append(x509.load_pem_x509_certificate(worker_files.cert_file.read_bytes()).serial_number)
    await asyncio.sleep(1.5)
    stop.set()
    results = await asyncio.gather(*clients)  # raises the first failed request
    return [final for finals in results for final in finals], serials


def test_rotation_mid_load_fails_no_request_and_pd_pulls_kv_over_mtls(tls_cluster: TLSCluster,
                                                                      tiny_model_dir: Path) -> None:
    workers = tls_cluster.workers
    pulled_before = workers["d"].metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="peer"')
    finals, serials = asyncio.run(_rotate_under_load(tls_cluster))

    routes = [f.route for f in finals]
    assert all(r is not None for r in routes)
    assert len(finals) >= 12, f"only {len(finals)} requests finished during the rotations"
    assert all(r.retries == 0 and r.migrations == 0 for r in routes if r), routes
    disaggregated = [r for r in routes if r and r.disaggregated]
    assert disaggregated and all((r.prefill_worker_id, r.worker_id) == ("p", "d") for r in disaggregated)
    assert any(r and r.worker_id == "c" for r in routes)
    # worker → worker PullKV carried the P/D KV, over mTLS (the workers serve nothing else)
    pulled = workers["d"].metric("heteroserve_worker_kv_transfer_bytes_total", 'tier="peer"') - pulled_before
    assert pulled > 0
    assert workers["d"].metric("heteroserve_worker_kv_transfer_failures_total", 'tier="peer"') == 0
    # every worker serves the newest certificate to new connections, without a restart
    gateway_files = TLSFiles.from_dir(tls_cluster.certs / "gateway")
    for worker in workers.values():
        assert worker.proc.poll() is None
        assert served_serial(worker.address, gateway_files) == serials[-1], worker.worker_id
        # (the reload happens at the first handshake after a change: maybe the one just made, whose log
        # line the stderr pump may not have read yet)
        deadline = time.monotonic() + 10
        while "TLS certificate reloaded" not in "".join(worker.stderr_lines):
            assert time.monotonic() < deadline, f"worker {worker.worker_id} never logged its reload"
            time.sleep(0.1)
        assert "heteroserve_worker_role_refusals_total{" not in worker.metrics_text()  # none refused
    # a worker started now: new channels with the rotated files on both ends
    late = start_worker(tiny_model_dir, role="colocated", redis_url=tls_cluster.redis.url, worker_id="late",
                        extra=("--pool", "co", *tls_cluster.worker_tls()))
    try:
        _wait_healthy(tls_cluster.gateway, {"late"})
    finally:
        late.stop()
