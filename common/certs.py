"""A throwaway cluster CA and the certificates it signs, for embedded mode and tests (`cryptography`).

`ClusterCA.create(directory)` makes a CA (ECDSA P-256, self-signed, `ca_days` valid) and keeps its key
in `directory/ca.key`; `ca.issue(name, directory)` writes a TLS Secret layout (`tls.crt`, `tls.key`,
`ca.crt`: see `common.tls`) for one component class. Every leaf certificate carries both server and
client authentication (workers are servers to the gateway and clients of each other for PullKV) and the
DNS SANs given, plus `name`; worker certificates add `common.tls.WORKER_SERVER_NAME`.

Files are written atomically (a temporary file renamed over the old one), keys with mode 0600, so a
server re-reading them during a rotation sees either the old or the new file, never a torn one.
Production clusters get their certificates from cert-manager or their own PKI (docs/operations.md).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.tls import CA_FILE, CERT_FILE, KEY_FILE, WORKER_SERVER_NAME, TLSFiles

CA_KEY_FILE = "ca.key"
COMPONENTS = ("gateway", "planner", "worker", "profiler")  # one certificate per component class


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically (temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # the umask may have narrowed or (for a reused name) an old mode remained
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "heteroserve"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class ClusterCA:
    """A CA that signs the cluster's certificates. `cert_pem` is what every process trusts."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, directory: Path | None = None, *, common_name: str = "heteroserve throwaway CA",
               ca_days: float = 365.0) -> ClusterCA:
        """A new CA; written to `directory` (`ca.crt`, `ca.key` 0600) when given."""
        if ca_days <= 0:
            raise ValueError(f"ca_days must be positive, got {ca_days}")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=ca_days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        ca = cls(key, cert)
        if directory is not None:
            write_private(Path(directory) / CA_KEY_FILE, _key_pem(key))
            write_private(Path(directory) / CA_FILE, ca.cert_pem, mode=0o644)
        return ca

    @classmethod
    def load(cls, directory: Path) -> ClusterCA:
        """The CA written by `create(directory)`."""
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / CA_KEY_FILE}: not an EC private key")
        return cls(key, x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes()))

    def issue(self, name: str, directory: Path, *, dns_names: tuple[str, ...] = (),
              days: float = 30.0, ca_bundle: bytes | None = None) -> TLSFiles:
        """Sign a certificate for `name` and write `tls.crt`, `tls.key` (0600) and `ca.crt` (this CA,
        or `ca_bundle` during a CA rotation) to `directory`; returns the files. A `name` of
        `worker` (or one starting `worker-`) also gets the SAN `WORKER_SERVER_NAME`."""
        if days <= 0:
            raise ValueError(f"days must be positive, got {days}")
        if not name:
            raise ValueError("name must not be empty")
        sans = [name, *dns_names]
        if name == "worker" or name.startswith("worker-"):
            sans.append(WORKER_SERVER_NAME)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in dict.fromkeys(sans)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        directory = Path(directory)
        # The key first: a reader that sees the new key with the old certificate refuses the pair
        # (common.tls.check_pair) and retries at its next handshake.
        write_private(directory / KEY_FILE, _key_pem(key))
        write_private(directory / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        write_private(directory / CA_FILE, ca_bundle or self.cert_pem, mode=0o644)
        return TLSFiles.from_dir(directory)


def create_cluster_certs(root: Path, components: tuple[str, ...] = COMPONENTS) -> dict[str, TLSFiles]:
    """A new CA under `root/ca` and one certificate directory per component under `root/<component>`
    (embedded mode: `heteroserve up`); returns component → files."""
    root = Path(root)
    ca = ClusterCA.create(root / "ca")
    return {name: ca.issue(name, root / name) for name in components}
