"""The demo's load derived from measured profiles (tests/e2e/data/demo: the demo model, measured on
this machine by the demo's first start): rates from the measured capacity, capped by what the
machine's client and gateway drive, and the plan the planner's solver gives each phase."""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroserve.embedded.config import load_embedded_config
from heteroserve.embedded.demo import BUNDLED_TRACE, DEMO_MODEL_PRESET, demo_config
from heteroserve.embedded.demo_load import (
    CHAT_FRACTIONS,
    LONG_MAX_INPUT,
    LONG_MIN_INPUT,
    STEP_BUDGET_REQ_S,
    demo_workload,
    derive,
    expected_plans,
)
from heteroserve.embedded.workload import WorkloadConfig
from heteroserve.modelgen import create_model

PROFILES = sorted((Path(__file__).parents[1] / "e2e" / "data" / "demo").glob("*.profile.json"))


def test_phases_follow_the_measured_capacity_and_change_the_plan(tmp_path: Path) -> None:
    config = load_embedded_config(demo_config(tmp_path))
    assert config.options.min_replicas == 1 and config.model.preset == DEMO_MODEL_PRESET
    assert [c.input_tokens for c in config.classes] == [150]  # no long warm class: no P/D at the start
    model_dir = tmp_path / "demo"
    create_model(model_dir, preset=DEMO_MODEL_PRESET, seed=0)
    load = derive(config, model_dir, PROFILES, demo_workload(WorkloadConfig(trace=BUNDLED_TRACE, phases=())))
    rates = {p.name: p.rate_per_s for p in load.phases}
    assert [p.name for p in load.phases] == ["base", "step", "long", "drop"]
    assert load.scale == pytest.approx(min(1.0, STEP_BUDGET_REQ_S / (1.6 * load.chat_capacity_per_worker)))
    for name, fraction in CHAT_FRACTIONS.items():
        assert rates[name]["chat"] == pytest.approx(load.scale * fraction * load.chat_capacity_per_worker,
                                                    rel=1e-3)
    assert rates["step"]["chat"] <= STEP_BUDGET_REQ_S + 1e-9
    assert set(rates["long"]) == {"chat", "long"}
    assert LONG_MIN_INPUT <= load.long_shape[0] <= LONG_MAX_INPUT
    # the seeded profile gives a colocated worker ~11 chat req/s: the step (1.6 workers' worth)
    # is within the budget, so the rates are not scaled down and the step needs a second worker
    assert load.scale == 1 and "may not scale up" not in load.describe()
    lines = [line.split("→") for line in expected_plans(config, model_dir, PROFILES, load)]
    plans = {name.strip(): pools.strip() for name, pools in lines}
    assert plans["base"] == plans["drop"] == "cpu-local-colocated 1"
    assert plans["step"] == "cpu-local-colocated 2"
    assert "prefill" in plans["long"] and "decode" in plans["long"], plans["long"]
