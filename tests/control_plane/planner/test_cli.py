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
    bad.write_text("model: {name: tiny}\nfleet: [H100]\n"
                   "slo_classes: [{name: chat, ttft_seconds: 1, tpot_seconds: -0.1}]\n")
    assert main(["planner", "--redis-url", redis_url, "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "fleet.yaml" in err and "slo_classes[0]" in err and "tpot_seconds" in err
