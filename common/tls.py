"""Mutual TLS for the cluster's east-west gRPC (gateway, planner, profiler and workers): certificate files
in, gRPC credentials out, re-read when the files change.

Every process holds one certificate directory in the layout of a Kubernetes TLS Secret (what
cert-manager writes): `tls.crt` (its certificate chain), `tls.key` (its private key), `ca.crt` (the
cluster CA bundle it trusts). Servers (workers) require a client certificate signed by that CA; clients
verify the worker's certificate against the same CA and the fixed name `WORKER_SERVER_NAME`, which every
worker certificate carries as a DNS SAN: peers dial workers by pod IP, which a certificate issued per
pool cannot name, so the name says "a worker of this cluster" rather than "this pod".

Rotation without downtime: `server_credentials` gives gRPC a fetcher it calls before every new TLS
handshake; the fetcher re-reads the files when their (inode, size, mtime) changed and hands gRPC the new
pair, so new connections get the new certificate while open ones carry on. `ClientTLS.credentials()`
does the same for channels: a channel built after a rotation uses the new files, an open one keeps its
connection until it reconnects. A half-written rotation (certificate and key that do not match, a file
that does not parse) is refused with a warning and the previous pair kept; the next handshake retries.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
WORKER_SERVER_NAME = "heteroserve-worker"  # DNS SAN of every worker certificate; clients verify it


@dataclass(frozen=True)
class TLSFiles:
    """Where one process's certificate, key and trusted CA bundle live (PEM files)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file", "ca_file"):
            if not str(getattr(self, name)):
                raise ValueError(f"{name} must name a PEM file")

    @classmethod
    def from_dir(cls, directory: Path | str) -> TLSFiles:
        """The files of a TLS Secret mounted (or written) at `directory`; they must exist."""
        root = Path(directory)
        files = cls(root / CERT_FILE, root / KEY_FILE, root / CA_FILE)
        for name in ("cert_file", "key_file", "ca_file"):
            if not getattr(files, name).is_file():
                raise ValueError(f"tls_dir: {getattr(files, name)} does not exist "
                                 f"(expected {CERT_FILE}, {KEY_FILE} and {CA_FILE} in {root})")
        return files


@dataclass(frozen=True)
class Material:
    """One consistent read of the files: PEM bytes of certificate chain, key and CA bundle."""

    cert: bytes
    key: bytes
    ca: bytes


class ReloadingMaterial:
    """The files' current contents, re-read only when a file changed. Thread-safe: gRPC calls the
    server's fetcher from its own threads."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._stamp = self._stat()  # before the read: a change during it is seen next time
        self.current = self._read()  # raises if the first read is unusable: a process must not start so
        self.reloads = 0

    def changed(self) -> Material | None:
        """The new material if the files changed since the last good read and now form a usable pair;
        None if unchanged or unusable (then the previous material stays current)."""
        with self._lock:
            try:
                stamp = self._stat()
            except OSError as exc:
                log.warning("TLS files unreadable (%s); keeping the current certificate", exc)
                return None
            if stamp == self._stamp:
                return None
            try:
                material = self._read()
            except (OSError, ValueError) as exc:
                log.warning("TLS files changed but are not usable yet (%s); keeping the current "
                            "certificate", exc)
                return None
            self._stamp, self.current = stamp, material
            self.reloads += 1
            log.info("TLS certificate reloaded from %s (%s)", self.files.cert_file, describe(material.cert))
            return material

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stats = [os.stat(p) for p in (self.files.cert_file, self.files.key_file, self.files.ca_file)]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _read(self) -> Material:
        material = Material(self.files.cert_file.read_bytes(), self.files.key_file.read_bytes(),
                            self.files.ca_file.read_bytes())
        check_pair(material)
        return material


def check_pair(material: Material) -> None:
    """Raises `ValueError` unless the key belongs to the certificate and the CA bundle parses."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(material.cert)
        key = serialization.load_pem_private_key(material.key, password=None)
        x509.load_pem_x509_certificates(material.ca)
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate, key and CA bundle: {exc}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if cert.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(encoding, public):
        raise ValueError("the private key does not belong to the certificate (a rotation half-written?)")


def describe(cert_pem: bytes) -> str:
    """`subject, serial, not after` of a PEM certificate, for log lines."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    return (f"{cert.subject.rfc4514_string()}, serial {cert.serial_number:x}, "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _server_config(material: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)],
                                                     root_certificates=material.ca)


def server_credentials(files: TLSFiles) -> tuple[grpc.ServerCredentials, ReloadingMaterial]:
    """Credentials of a server that requires client certificates signed by `files.ca_file`, re-read on
    every new handshake after a change (module docstring); also the material, for its counters."""
    material = ReloadingMaterial(files)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        fresh = material.changed()
        return _server_config(fresh) if fresh is not None else None

    credentials = grpc.dynamic_ssl_server_credentials(_server_config(material.current), fetch,
                                                      require_client_authentication=True)
    return credentials, material


class ClientTLS:
    """Channel credentials from `files`, rebuilt when the files change; `options()` pins the name
    checked on the worker's certificate."""

    def __init__(self, files: TLSFiles, server_name: str = WORKER_SERVER_NAME) -> None:
        self.server_name = server_name
        self._material = ReloadingMaterial(files)
        self._credentials = self._build(self._material.current)

    @property
    def files(self) -> TLSFiles:
        return self._material.files

    def credentials(self) -> grpc.ChannelCredentials:
        """Credentials for a new channel: from the files as they are now."""
        fresh = self._material.changed()
        if fresh is not None:
            self._credentials = self._build(fresh)
        return self._credentials

    def options(self) -> tuple[tuple[str, str], ...]:
        return (("grpc.ssl_target_name_override", self.server_name),)

    @staticmethod
    def _build(material: Material) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=material.ca, private_key=material.key,
                                            certificate_chain=material.cert)


def log_mode(component: str, files: TLSFiles | None) -> None:
    """Say loudly which transport `component` runs its east-west gRPC with."""
    if files is None:
        log.warning("%s: east-west gRPC is PLAINTEXT (no --tls-dir): cluster token only, no encryption; "
                    "for development only", component)
    else:
        log.info("%s: east-west gRPC uses mutual TLS (certificate %s, CA %s), plus the cluster token",
                 component, files.cert_file, files.ca_file)
