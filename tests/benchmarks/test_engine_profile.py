"""The engine step profiler (benchmarks/_engine_profile.py) on a real tiny engine."""

from __future__ import annotations

from pathlib import Path

import pytest

import workers.engine.model as model_module
from benchmarks._engine_profile import StepTimes, drive, instrument, patched_modules, table
from benchmarks.engine import engine_config, run_engine
from workers.engine.engine import LLMEngine


def test_profiled_steps_split_into_phases_that_add_up(tiny_model_dir: Path) -> None:
    engine = LLMEngine(engine_config(tiny_model_dir))
    prompt = [1, *range(10, 60)]
    expected = run_engine(LLMEngine(engine_config(tiny_model_dir)), [(prompt, 6)])["tokens"]
    times = StepTimes()
    instrument(engine, times)
    original = model_module.paged_attention
    with patched_modules(times):
        wall = drive(engine, times, [(prompt, 6)], "one")
    assert model_module.paged_attention is original, "the module globals are restored"
    steps = times.steps["one decode"] + times.steps["one prefill+decode"]
    assert len(times.steps["one prefill+decode"]) == 1 and len(times.steps["one decode"]) == 5
    for step in steps:
        parts = sum(step[p] for p in ("schedule", "prepare", "forward", "logits", "engine_sample", "commit"))
        assert step["attention"] > 0 and step["forward_rest"] > 0 and step["sample"] > 0
        assert step["other"] == pytest.approx(step["step"] - parts)
        assert step["other"] >= 0, "the timed parts never exceed the step"
    assert sum(s["step"] for s in steps) <= wall
    assert "| attention |" in table(times)
    again = run_engine(engine, [(prompt, 6)])["tokens"]
    assert again == expected, "timing wrappers do not change what the engine computes"
