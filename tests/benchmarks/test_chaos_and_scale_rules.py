"""`bench chaos`'s every-role rule and `bench scale`'s synthetic state, on small inputs (fast)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import yaml

from benchmarks._chaos_cluster import SEEDED_PROFILES, chaos_document, kill_kind, pick_worker, seed_profiles
from benchmarks._report import check, passed
from benchmarks._scale_router import POOLS, GatewayDecision, SyntheticIndex, time_decisions, worker_states
from benchmarks.chaos import chaos_targets, skipped_parts
from control_plane.planner.solver import PlacementSolver
from control_plane.planner.spec import planner_spec_from_mapping
from heteroserve.modelgen import create_model


def test_kill_kind_is_csd_for_any_role_on_a_csd_device() -> None:
    assert kill_kind({"role": "decode", "device": "csd"}) == "csd"
    assert kill_kind({"role": "decode", "device": "cpu"}) == "decode"
    assert kill_kind({"role": "prefill"}) == "prefill"


def test_a_role_served_only_on_csd_is_killed_there() -> None:
    cpu_decode = {"pid": 1, "role": "decode", "device": "cpu"}
    csd_decode = {"pid": 2, "role": "decode", "device": "csd"}
    prefill = {"pid": 3, "role": "prefill", "device": "cpu"}
    assert pick_worker([csd_decode, cpu_decode, prefill], "decode") == cpu_decode
    assert pick_worker([csd_decode, prefill], "decode") == csd_decode
    assert pick_worker([csd_decode, cpu_decode], "csd") == csd_decode
    assert pick_worker([cpu_decode, prefill], "csd") is None
    assert pick_worker([prefill], "colocated") is None


def test_a_role_never_killed_fails_the_check_even_with_zero_losses() -> None:
    result = {"lost_requests": 0, "token_mismatches": 0, "failed_requests_redis_outage": 0,
              "corrupt_blocks_used": 0, "failed_requests_disk_full": 0, "secrets_in_logs": 0,
              "hit_rate_recovered": True, "planner_failover_seconds": 9.5,
              "planner_failover_bound_seconds": 20.0,
              "worker_kills": {"decode": {"role": "decode", "killed_pid": 11},
                               "csd": {"role": "csd", "skipped": "no csd worker ran within 90 s"}}}
    verdicts = check(result, chaos_targets(result))
    assert all(v.ok for v in verdicts)
    assert skipped_parts(result) == ["kill csd: no csd worker ran within 90 s"]
    assert not passed(verdicts, skipped_parts(result))
    del result["worker_kills"]["csd"]
    assert passed(verdicts, skipped_parts(result))


def test_planner_failover_is_checked_against_its_stated_bound() -> None:
    result = {"planner_failover_seconds": 21.0, "planner_failover_bound_seconds": 20.0}
    failover = [v for v in check(result, chaos_targets(result)) if v.name == "planner_failover_seconds"]
    assert [(v.bound, v.ok) for v in failover] == [(20.0, False)]
    result = {"planner_failover_seconds": None, "planner_failover_bound_seconds": 20.0}  # no takeover
    verdicts = check(result, chaos_targets(result))
    assert not next(v for v in verdicts if v.name == "planner_failover_seconds").ok


def test_synthetic_index_holds_the_blocks_asked_and_routes_through_the_real_pipeline() -> None:
    state = SyntheticIndex(num_workers=20, num_blocks=5_000)
    memory = state.fill()
    assert 5_000 <= memory["index_blocks"] < 5_000 + 20 * 64
    state.index.check_integrity()
    prompt = state.prompt(random.Random(1))
    assert len(prompt) == 8 + 32 + 8
    holders = state.index.longest_prefix_per_tier(prompt)
    assert max(holders.values()) == 40, "one worker holds the system prompt and its chain"
    timing = time_decisions(state, worker_states(20, random.Random(0)), requests=50)
    assert timing["workers"] == 20 and sum(timing["route_reasons"].values()) == 50
    assert 0 < timing["route_decision_p50_ms"] <= timing["route_decision_p99_ms"]
    assert timing["route_decision_unpreempted_p99_ms"] is None or \
        timing["route_decision_unpreempted_p99_ms"] <= timing["route_decision_p99_ms"]


def test_the_scale_decision_is_the_gateways_route_step_then_router_with_loads_in_place() -> None:
    state = SyntheticIndex(num_workers=16, num_blocks=2_000)
    state.fill()
    workers = worker_states(16, random.Random(0))
    decide = GatewayDecision(state, workers)
    base = int(decide.table.load.sum())
    rng = random.Random(2)
    pools = Counter(decide.decide(state.prompt(rng)).worker.pool for _ in range(80))
    assert set(pools) == set(POOLS) and max(pools.values()) - min(pools.values()) <= 4  # planned 1/8 each
    assert int(decide.table.load.sum()) == base + 80  # routed, not finished: counted in place
    for _ in range(GatewayDecision.IN_FLIGHT):
        decide.decide(state.prompt(rng))
    assert int(decide.table.load.sum()) == base + GatewayDecision.IN_FLIGHT  # the oldest finished


def test_the_chaos_config_plans_every_kind_of_worker_twice(tmp_path: Path) -> None:
    """On the profiles the chaos run seeds (measured on this machine), the chaos config's warm traffic alone
    plans a colocated pool, a prefill pool and a decode pool on CSD, each with >= 2 workers (the
    availability floor), so every kind `bench chaos` kills has a peer to retry on."""
    create_model(tmp_path / "tiny", preset="tiny", seed=0)
    spec = planner_spec_from_mapping(chaos_document(disk_tier_mb=2))  # skips the embedded-only keys
    seeded = sorted(SEEDED_PROFILES.glob("*.profile.json"))
    assert len(seeded) == 2
    inputs = spec.planning_inputs(model_dir=tmp_path / "tiny", extra_profiles=seeded)
    solved = PlacementSolver(replace(inputs, with_baselines=False))(list(inputs.warm_demand().values()), None)
    kinds = {("csd" if p.device == "csd" else p.role): p.count for p in solved.plan.pools if p.count}
    assert kinds == {"colocated": 2, "prefill": 2, "csd": 2}, solved.plan.pools


def test_the_chaos_run_finds_the_seeded_profiles_in_its_cache(tmp_path: Path) -> None:
    from heteroserve.embedded.config import load_embedded_config
    from heteroserve.embedded.profiling import cache_path, local_node_types

    path = tmp_path / "chaos.yaml"
    path.write_text(yaml.safe_dump(chaos_document(disk_tier_mb=2)))
    config = load_embedded_config(path)
    seed_profiles(config, tmp_path)
    nodes = local_node_types(config)
    found = [cache_path(config.profile_cache_dir(tmp_path), config.model_dir(tmp_path), n) for n in nodes]
    assert [n.name for n in nodes] == ["cpu-local", "csd-local"]
    assert sorted(p.read_text() for p in found) == \
        sorted(p.read_text() for p in SEEDED_PROFILES.glob("*.profile.json"))
