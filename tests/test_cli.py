"""The CLI as a user meets it: --help everywhere, --version, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from heteroserve import __version__
from heteroserve.cli import COMMANDS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heteroserve.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"heteroserve {__version__}"


def test_top_level_help_lists_every_command() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for name in ("up", "down", "demo", "status", "plan", "profile", "bench", "generate"):
        assert name in COMMANDS and name in out.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    out = run_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: heteroserve " + command)


def test_unknown_benchmark_names_the_field() -> None:
    out = run_cli("bench", "no-such-bench")
    assert out.returncode == 2
    assert "name: unknown benchmark 'no-such-bench'; available:" in out.stderr


def test_no_command_prints_help_and_fails() -> None:
    out = run_cli()
    assert out.returncode == 2 and "usage: heteroserve" in out.stdout
