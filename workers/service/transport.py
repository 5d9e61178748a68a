"""The worker's gRPC transport: mutual TLS when its config has `tls`, plaintext otherwise (dev).

`bind(server, config)` adds the listening port: with `config.tls`, a port whose credentials require a
client certificate signed by the cluster CA and re-read the certificate files before each new handshake
after they change (`common.tls.server_credentials`), so a rotated certificate is served without a
restart and open connections carry on; without it, a plaintext port, logged as such at WARNING. The
cluster token is checked on top in either mode (`AuthInterceptor`). `peer_tls(config)` is the same
certificate as a client, for the worker's own PullKV calls to other workers. `start_health_port`
serves the standard health service alone, in plaintext, on `config.health_port`: the kubelet's gRPC
probe cannot do mutual TLS, and SERVING / NOT_SERVING is all that port tells anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc

from common.errors import UnavailableError
from common.tls import ClientTLS, ReloadingMaterial, log_mode, server_credentials

if TYPE_CHECKING:
    from workers.config import WorkerConfig


def bind(server: aio.Server, config: WorkerConfig) -> tuple[int, ReloadingMaterial | None]:
    """(bound port, the certificate material being served or None in plaintext). Raises
    `UnavailableError` when the address cannot be bound."""
    address = f"{config.host}:{config.port}"
    log_mode(f"worker {config.worker_id}", config.tls)
    try:
        if config.tls is None:
            return server.add_insecure_port(address), None
        credentials, material = server_credentials(config.tls)
        return server.add_secure_port(address, credentials), material
    except RuntimeError as exc:
        raise UnavailableError(f"cannot listen on {address}: {exc}") from None


def peer_tls(config: WorkerConfig) -> ClientTLS | None:
    """The worker's certificate as a client of its peers (PullKV); None in plaintext."""
    return ClientTLS(config.tls) if config.tls is not None else None


async def start_health_port(servicer: health.aio.HealthServicer, config: WorkerConfig) -> aio.Server | None:
    """A started server of `servicer` alone on `config.host:config.health_port` (plaintext), or None when
    `health_port` is None. Raises `UnavailableError` when the port cannot be bound."""
    if config.health_port is None:
        return None
    server = aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"{config.host}:{config.health_port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise UnavailableError(f"cannot listen on {address} (health port): {exc}") from None
    await server.start()
    return server
