"""`--tls-dir`, the one TLS flag of every cluster process (worker, gateway, planner, profile).

The directory holds a Kubernetes TLS Secret's files: `tls.crt`, `tls.key`, `ca.crt` (`common.tls`).
Given, the process's east-west gRPC is mutual TLS; absent, plaintext (dev), which the process logs at
WARNING. A flag, not an environment variable: a planner's environment reaches the workers it starts,
which must serve their own (worker) certificate, not the planner's.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from common.errors import ConfigError

if TYPE_CHECKING:
    from common.tls import TLSFiles

def add_tls_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-dir", default=None, metavar="DIR",
                        help="mutual TLS for cluster gRPC: DIR holds tls.crt, tls.key, ca.crt (re-read when "
                             "they change); default: plaintext (dev only)")


def tls_files(args: argparse.Namespace) -> TLSFiles | None:
    """The files under `--tls-dir`, or None; raises `ConfigError` naming the flag when one is missing,
    does not parse, or the key does not belong to the certificate."""
    from common.tls import ReloadingMaterial, TLSFiles

    if not args.tls_dir:
        return None
    try:
        files = TLSFiles.from_dir(args.tls_dir)
        ReloadingMaterial(files)  # parses them and checks the key belongs to the certificate
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc).removeprefix("tls_dir: "), field="--tls-dir") from None
    return files
