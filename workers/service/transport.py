"""The worker's gRPC transport: mutual TLS when its config has `tls`, plaintext otherwise (dev).

`bind(server, config)` adds the listening port: with `config.tls`, a port whose credentials require a
client certificate signed by the cluster CA and re-read the certificate files before each new handshake
after they change (`common.tls.server_credentials`), so a rotated certificate is served without a
restart and open connections carry on; without it, a plaintext port, logged as such at WARNING. The
cluster token is checked on top in either mode (`AuthInterceptor`). `peer_tls(config)` is the same
certificate as a client, for the worker's own PullKV calls to other workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpc import aio

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
