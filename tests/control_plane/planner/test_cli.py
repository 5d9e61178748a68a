"""`heteroserve planner` flag errors: one line naming the field, exit code 2, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroserve.cli import main


def test_planner_without_redis_url_names_the_field(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HETEROSERVE_REDIS_URL", raising=False)
    assert main(["planner"]) == 2
    assert "redis_url" in capsys.readouterr().err


def test_kubernetes_actuator_needs_its_config_file(capsys: pytest.CaptureFixture[str],
                                                  redis_url: str) -> None:
    assert main(["planner", "--redis-url", redis_url, "--actuator", "kubernetes"]) == 2
    assert "kubernetes_config" in capsys.readouterr().err


def test_a_bad_fleet_file_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               redis_url: str) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("pools:\n  - {name: a, node_type: cpu, role: leader, device: cpu, price_per_hour: 1}\n"
                   "classes: [{name: chat}]\n")
    assert main(["planner", "--redis-url", redis_url, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "fleet.yaml" in err and "pools[0]" in err and "role" in err
