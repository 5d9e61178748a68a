"""The demo's workload schedule (exact rates per phase) and report (percentiles, reactions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.stats import percentile
from heteroserve.client import Route
from heteroserve.embedded.demo import BUNDLED_TRACE, _changes
from heteroserve.embedded.report import RequestResult, TimelinePoint, _reactions
from heteroserve.embedded.workload import Phase, PromptMaker, WorkloadConfig, build_schedule, read_trace

ROOT = Path(__file__).resolve().parents[2]
PHASES = (Phase("base", 20.0, {"chat": 1.0, "long": 0.5}), Phase("step", 10.0, {"chat": 2.0, "long": 0.5}))


def test_schedule_has_exact_rates_per_phase_and_class(tiny_model_dir: Path) -> None:
    config = WorkloadConfig(trace=BUNDLED_TRACE, phases=PHASES)
    prompts = PromptMaker(tiny_model_dir / "tokenizer.json",
                          (ROOT / "heteroserve" / "modelgen" / "corpus.txt").read_text(), config)
    schedule = build_schedule(config, prompts)
    count = {(p, c): 0 for p in ("base", "step") for c in ("chat", "long")}
    for r in schedule:
        count[(r.phase, r.request_class)] += 1
    assert count == {("base", "chat"): 20, ("base", "long"): 10, ("step", "chat"): 20, ("step", "long"): 5}
    assert [r.at_seconds for r in schedule] == sorted(r.at_seconds for r in schedule)
    assert all(0 < r.at_seconds < 20 for r in schedule if r.phase == "base")
    assert all(20 <= r.at_seconds < 30 for r in schedule if r.phase == "step")
    assert all(r.input_tokens <= 256 for r in schedule if r.request_class == "chat")
    assert all(r.input_tokens > 256 for r in schedule if r.request_class == "long")
    assert all(4 <= r.max_tokens <= 32 for r in schedule)
    # prompts share one of four system prompts: the first 48 tokens repeat across requests
    heads = {r.prompt[:40] for r in schedule}
    assert len(heads) <= 4
    assert build_schedule(config, PromptMaker(tiny_model_dir / "tokenizer.json", (
        ROOT / "heteroserve" / "modelgen" / "corpus.txt").read_text(), config)) == schedule  # deterministic


def test_bundled_trace_is_the_head_of_the_shared_one(shared_data: Path) -> None:
    shared = read_trace(shared_data / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv", limit=1500)
    assert read_trace(BUNDLED_TRACE) == shared


def test_percentiles_and_planner_reactions() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([], 0.9) is None
    timeline = [TimelinePoint(t, 1, {"a": 2}, {"a": 2}) for t in (0.0, 10.0, 20.0)]
    timeline += [TimelinePoint(27.0, 2, {"a": 3}, {"a": 2}, "scale-up"),
                 TimelinePoint(35.0, 2, {"a": 3}, {"a": 3})]
    timeline += [TimelinePoint(60.0, 3, {"a": 2}, {"a": 2}, "scale-down")]
    reactions = _reactions(timeline, (Phase("base", 20, {}), Phase("step", 20, {}), Phase("drop", 30, {})))
    assert reactions == {"scale_up_after_step_s": 7.0, "scale_down_after_drop_s": 20.0}
    assert _changes(timeline[2], timeline[3]) == ["[bold]plan v2[/bold] (scale-up): a 2→3"]
    assert _changes(timeline[3], timeline[4]) == ["[green]worker added[/green] to a (2→3)"]
    r = RequestResult(0, "base", "chat", 0.0, 10, 5, 0.1, 0.5, True, route=Route(disaggregated=True))
    assert r.tpot_seconds == pytest.approx(0.1)


def test_chart_is_written_as_png(tmp_path: Path) -> None:
    from heteroserve.embedded.report import save_chart

    results = [RequestResult(i, "base", "chat" if i % 2 else "long", i * 0.5, 50, 8, 0.02, 0.1, True)
               for i in range(40)]
    timeline = [TimelinePoint(t, 1, {"a": 2}, {"a": 2}) for t in range(0, 20, 2)]
    path = tmp_path / "chart.png"
    save_chart(results, timeline, (Phase("base", 20, {}),), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_summary_lists_changed_plans_fleet_moves_shares_and_requests() -> None:
    from heteroserve.embedded.demo_summary import adopted_plans, fleet_changes, phase_at, summary_lines

    phases = (Phase("base", 20, {}), Phase("step", 20, {}), Phase("drop", 30, {}))
    timeline = [TimelinePoint(0.0, 1, {"co": 1}, {"co": 1}, "initial"),
                TimelinePoint(5.0, 2, {"co": 1, "x-prefill": 0}, {"co": 1}, "reweight"),  # same pools
                TimelinePoint(23.0, 3, {"co": 2, "x-prefill": 1}, {"co": 1}, "scale-up"),
                TimelinePoint(27.0, 3, {"co": 2, "x-prefill": 1}, {"co": 2, "x-prefill": 1}),
                TimelinePoint(61.0, 4, {"co": 1}, {"co": 1}, "scale-down")]
    plans = adopted_plans(timeline, phases)
    assert [(p.version, p.phase, p.pools) for p in plans] == [
        (1, "base", {"co": 1}), (3, "step", {"co": 2, "x-prefill": 1}), (4, "drop", {"co": 1})]
    assert fleet_changes(timeline) == (2, 2)
    assert phase_at(19.9, phases) == "base" and phase_at(70.0, phases) == "after"
    routing = {1: {"classes": [{"request_class": "m/i/i2o1", "route": "co", "planned_share": 1.0,
                                "served_share": 1.0, "requests": 4}]},
               2: {"classes": [{"request_class": "m/i/i2o1", "route": "co", "planned_share": 1.0,
                                "served_share": 1.0, "requests": 6}]},
               3: {"classes": [
        {"request_class": "m/i/i2o1", "route": "co", "planned_share": 0.5, "served_share": 0.52,
         "requests": 50},
        {"request_class": "m/i/i4o1", "route": "pf", "planned_share": 1.0, "served_share": 1.0,
         "requests": 3}]}}
    results = [RequestResult(i, "step", "chat", 0.0, 10, 5, 0.1, 0.5, i != 3) for i in range(4)]
    text = "\n".join(summary_lines(results, timeline, routing, phases))
    assert "1 at the start, 2 started, 2 drained" in text
    assert "  v3        co 25/26; pf 3/3" in text  # requests planned / sent per route under the adopted v3
    assert "  v1-v2     co 10/10" in text  # v2 reweighted v1's pools: their requests add up
    assert "largest |served − planned| share over 3 plan versions" in text
    assert "(≥ 10 requests): 0.020" in text  # pf's 3 requests are left out of the deviation
    assert "P/D: planned in v3, 0 handoffs" in text
    assert "requests: 4 (base: 0; step: chat 4; drop: 0), failed: 1" in text
