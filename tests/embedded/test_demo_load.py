"""The demo's load derived from measured profiles (tests/e2e/data, measured on this machine): rates
from the measured capacity, capped by what the machine's client drives, and the plan the planner's
solver gives each phase (P/D for the long prompts on these profiles)."""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroserve.embedded.config import load_embedded_config
from heteroserve.embedded.demo import BUNDLED_TRACE, demo_config
from heteroserve.embedded.demo_load import (
    CHAT_FRACTIONS,
    STEP_BUDGET_REQ_S,
    demo_workload,
    derive,
    expected_plans,
)
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
    assert load.scale == pytest.approx(min(1.0, STEP_BUDGET_REQ_S / (1.6 * load.chat_capacity_per_worker)))
    for name, fraction in CHAT_FRACTIONS.items():
        assert rates[name]["chat"] == pytest.approx(load.scale * fraction * load.chat_capacity_per_worker,
                                                    rel=1e-3)
    assert rates["step"]["chat"] <= STEP_BUDGET_REQ_S + 1e-9
    assert set(rates["long"]) == {"chat", "long"} and load.long_shape[0] >= 1536
    lines = [line.split("→") for line in expected_plans(config, model_dir, PROFILES, load)]
    plans = {name.strip(): pools.strip() for name, pools in lines}
    assert plans["base"] == plans["drop"] == "cpu-local-colocated 1"
    # these profiles (a loaded machine's) give a colocated worker ~25 chat req/s: capped at the
    # client's budget, the step stays on one worker, and the demo says so
    assert load.scale < 1 and "may not scale up" in load.describe()
    assert plans["step"] == "cpu-local-colocated 1"
    assert "prefill" in plans["long"] and "decode" in plans["long"], plans["long"]
