"""The OpenAPI document and the server agree exactly: schemathesis with every check, on every operation.

`st run --checks all` against the real gateway (the `cluster` fixture: a real worker, a real Redis):
schema-valid requests must be accepted (2xx, or the auth / not-found statuses), schema-violating ones
refused with 4xx, every response must match its declared status, content type and schema (streamed
events included), and no 5xx may occur. The /v1 and probe operations run with an API key, the /admin
ones with the admin token. The one stated exception is in tests/reliability/schemathesis.toml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.control_plane.gateway.gateway_procs import ADMIN_TOKEN, API_KEY
from tests.reliability.conftest import Cluster, leaked

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "20261207"  # fixed, so a failure reproduces


def _schemathesis(cluster: Cluster, token: str, paths: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "the schemathesis CLI (`st`) is not installed beside this Python"
    return subprocess.run(
        [st, "--config-file", str(CONFIG), "run", f"{cluster.gateway.http_url}/openapi.json",
         "--checks", "all", "--max-examples", "25", "--seed", SEED, "--continue-on-failure",
         "--workers", "1", "--include-path-regex", paths,
         "-H", f"Authorization: Bearer {token}", "--report-dir", str(tmp)],
        capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("token, paths", [(API_KEY, "^/(v1|health|ready|metrics)"), (ADMIN_TOKEN, "^/admin")],
                         ids=["api", "admin"])
def test_every_operation_passes_every_check(cluster: Cluster, token: str, paths: str,
                                            tmp_path: Path) -> None:
    result = _schemathesis(cluster, token, paths, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # Warnings may remain (e.g. /admin/plan answers 404 before a plan exists); failures may not.
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert summary and summary.group(1) == summary.group(2) and int(summary.group(1)) > 100, output[-3000:]
    assert leaked(output) == []
