"""The demo's load derived from measured profiles (tests/e2e/data, measured on this machine): the plan
the planner's solver gives each phase changes as the demo promises (scale up, P/D, scale down)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroserve.embedded.config import load_embedded_config
from heteroserve.embedded.demo import BUNDLED_TRACE, demo_config
from heteroserve.embedded.demo_load import CHAT_FRACTIONS, demo_workload, derive, expected_plans
from heteroserve.embedded.workload import WorkloadConfig
from heteroserve.modelgen import create_model

PROFILES = sorted((Path(__file__).parents[1] / "e2e" / "data").glob("*.profile.json"))


def test_phases_follow_the_measured_capacity_and_change_the_plan(tmp_path: Path) -> None:
    config = load_embedded_config(demo_config(tmp_path))
    assert config.options.min_replicas == 1
    model_dir = tmp_path / "tiny"
    create_model(model_dir, preset="tiny", seed=0)
    load = derive(config, model_dir, PROFILES, demo_workload(WorkloadConfig(trace=BUNDLED_TRACE, phases=())))
    rates = {p.name: p.rate_per_s for p in load.phases}
    assert [p.name for p in load.phases] == ["base", "step", "long", "drop"]
    for name, fraction in CHAT_FRACTIONS.items():
        assert rates[name]["chat"] == pytest.approx(fraction * load.chat_capacity_per_worker, rel=1e-3)
    assert set(rates["long"]) == {"chat", "long"} and load.long_shape[0] >= 1536
    lines = [line.split("→") for line in expected_plans(config, model_dir, PROFILES, load)]
    plans = {name.strip(): pools.strip() for name, pools in lines}
    assert plans["base"] == plans["drop"] == "cpu-local-colocated 1"
    assert plans["step"] == "cpu-local-colocated 2"
    assert "prefill" in plans["long"] and "decode" in plans["long"], plans["long"]
    assert load.describe().startswith("measured capacity: one colocated worker sustains")
