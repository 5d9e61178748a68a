"""Measured profile files: round trip, the step-time fit, and compile turning them into ILP rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from common.errors import ConfigError
from placement.catalog import Catalog, NodeType
from placement.compile import CompileOptions, compile_problem
from placement.models import ModelSpec
from placement.perf.steps import MeasuredSteps
from placement.planning import make_plan
from placement.profile_file import (
    DecodePoint,
    NodeProfile,
    PrefillPoint,
    RoleProfile,
    TransferPoint,
    WakeCost,
    load_node_profile,
    save_node_profile,
)
from placement.profiles import ProfileOptions, colocated_capacity, decode_capacity
from placement.spec import load_spec
from placement.workload import Buckets, SLOClass, classes_from_distribution

MODEL = ModelSpec("tiny", num_layers=2, hidden_size=128, num_heads=4, num_kv_heads=2,
                  intermediate_size=352, vocab_size=2048, dtype="fp32")
NODE = NodeType("cpu-local", "cpu", 1, 4, 10, {"fp32": 0.1}, 10, 0.10)


def prefill_points(per_token: float, overhead: float) -> tuple[PrefillPoint, ...]:
    return tuple(PrefillPoint(i, b, overhead + per_token * i * b) for i in (64, 256, 1024) for b in (1, 4))


def decode_points(per_seq: float, overhead: float) -> tuple[DecodePoint, ...]:
    return tuple(DecodePoint(b, c, overhead + per_seq * b) for b in (1, 4, 8) for c in (128, 1024))


def profile(peer_bps: float = 50e6) -> NodeProfile:
    return NodeProfile(
        model="tiny", node_type="cpu-local", engine="native", device="cpu", fingerprint="abc123",
        kv_bytes_per_token=MODEL.kv_bytes_per_token, kv_capacity_tokens=8192,
        roles={"colocated": RoleProfile(prefill_points(1e-4, 0.004), decode_points(1e-3, 0.006)),
               "prefill": RoleProfile(prefill_points(5e-5, 0.003)),
               "decode": RoleProfile(decode=decode_points(5e-4, 0.005))},
        transfer=(TransferPoint("peer", 1 << 20, 0.03, peer_bps, 0.01),
                  TransferPoint("shared", 1 << 20, 0.05, 25e6, 0.008)),
        model_hash="m1", machine={"cpu": "test", "cores": 2}, measured_at="2026-12-07T00:00:00Z")


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    p = profile()
    path = tmp_path / "cpu-local.profile.json"
    save_node_profile(path, p)
    back = load_node_profile(path)
    assert back == p
    assert back.to_dict() == p.to_dict()
    assert json.loads(path.read_text())["schema"] == 1
    assert "idle" not in back.to_dict()  # optional: a profile without it reads as before
    woken = replace(p, idle=WakeCost(idle_seconds=0.1, seconds=0.0025, input_tokens=256))
    save_node_profile(path, woken)
    assert load_node_profile(path).idle == WakeCost(0.1, 0.0025, 256)


def test_newer_schema_and_bad_fields_name_the_field(tmp_path: Path) -> None:
    doc = profile().to_dict()
    with pytest.raises(ConfigError, match="schema"):
        NodeProfile.from_dict({**doc, "schema": 99})
    with pytest.raises(ConfigError, match="engine"):
        NodeProfile.from_dict({**doc, "engine": "trt"})
    broken = {k: v for k, v in doc.items() if k != "kv_capacity_tokens"}
    with pytest.raises(ConfigError, match="kv_capacity_tokens"):
        NodeProfile.from_dict(broken)


def test_fit_recovers_the_measured_step_times() -> None:
    steps = MeasuredSteps.fit(profile(), "prefill")
    assert steps is not None
    assert steps.prefill_seconds(512, 2) == pytest.approx(0.003 + 5e-5 * 1024, rel=1e-6)
    # the prefill worker measured no decode: its decode half comes from the colocated worker
    assert steps.decode_step_seconds(2, 500) == pytest.approx(0.006 + 2e-3, rel=1e-6)
    decode = MeasuredSteps.fit(profile(), "decode")
    assert decode is not None and decode.decode_step_seconds(4, 100) == pytest.approx(0.005 + 2e-3, rel=1e-6)
    assert decode.kv_capacity_tokens() == 8192


def compile_tiny(p: NodeProfile, rate: float = 4.0):  # type: ignore[no-untyped-def]
    slo = SLOClass("interactive", ttft_seconds=1.0, tpot_seconds=0.1)
    buckets = Buckets((0, 128, 512, 2048), (0, 64, 256))
    weights = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5))
    classes = classes_from_distribution("tiny", "interactive", rate, weights, buckets)
    problem = compile_problem(Catalog.of([NODE]), {"tiny": MODEL}, classes, {"interactive": slo},
                              {"cpu-local": 6}, CompileOptions(), profiles={("tiny", "cpu-local"): p})
    return problem, classes, slo


def test_compile_uses_every_role_and_the_measured_transfer() -> None:
    p = profile()
    problem, classes, slo = compile_tiny(p)
    opts = ProfileOptions()
    by_role = {pool.role: pool for pool in problem.pools}
    assert set(by_role) == {"colocated", "prefill", "decode"}
    # bandwidth rows: prefill / decode pools carry the measured peer bandwidth, not the 10 Gbit/s NIC
    assert by_role["prefill"].network_bytes_per_second == 50e6
    assert by_role["colocated"].network_bytes_per_second == NODE.network_bytes_per_second
    for option in problem.colocated:
        cls = classes[option.demand]
        want = colocated_capacity(MODEL, NODE, cls, slo, opts, MeasuredSteps.fit(p, "colocated")).rate
        assert option.load == pytest.approx(1 / want)
    for route in problem.disaggregated:
        cls = classes[route.demand]
        kv_bytes = cls.input_tokens * MODEL.kv_bytes_per_token
        assert route.transfer_seconds == pytest.approx(0.01 + kv_bytes / 50e6)  # TTFT includes it
        want = decode_capacity(MODEL, NODE, cls, slo, opts, MeasuredSteps.fit(p, "decode")).rate
        assert route.decode_load == pytest.approx(1 / want)
    plan = make_plan(problem, _classifier(), with_baselines=False)
    assert plan.cost_per_hour > 0
    assert all(sum(r.share for r in c.routes) == pytest.approx(1) for c in plan.classes)


def test_slow_transfer_removes_the_p_d_routes() -> None:
    problem, _, _ = compile_tiny(profile(peer_bps=1e3))  # 1 kB/s: no transfer fits the TTFT
    assert problem.disaggregated == ()
    assert any("prefill→" in r for rs in problem.exclusions.values() for r in rs)


def test_spec_loads_a_profile_file(tmp_path: Path) -> None:
    save_node_profile(tmp_path / "p.json", profile())
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({
        "node_types": [{"name": "cpu-local", "kind": "cpu", "accelerators": 1, "memory_gb": 4,
                        "mem_bandwidth_gbs": 10, "peak_tflops": {"fp32": 0.1}, "network_gbps": 10,
                        "price_per_hour": 0.1}],
        "models": [{"name": "tiny", "num_layers": 2, "hidden_size": 128, "num_heads": 4, "num_kv_heads": 2,
                    "intermediate_size": 352, "vocab_size": 2048, "dtype": "fp32"}],
        "fleet": ["cpu-local"],
        "slo_classes": [{"name": "interactive", "ttft_seconds": 1, "tpot_seconds": 0.1}],
        "traffic": [{"model": "tiny", "slo_class": "interactive", "rate": 2,
                     "distribution": {"weights": [[1, 0, 0, 0, 0, 0, 0]] + [[0] * 7] * 7}}],
        "profiles": [{"path": "p.json"}]}))
    loaded = load_spec(spec)
    assert set(loaded.profiles) == {("tiny", "cpu-local")}
    bad = json.loads(spec.read_text())
    bad["fleet"], bad["node_types"][0]["name"] = ["other"], "other"
    spec.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"profiles\[0\].node_types"):
        load_spec(spec)


def _classifier():  # type: ignore[no-untyped-def]
    from placement.plan import Classifier

    return Classifier((0, 128, 512, 2048), (0, 64, 256), ("interactive",), "interactive")
