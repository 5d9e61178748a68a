"""A small measured fleet for planner tests: a CPU node type with a measured profile (every role,
peer and shared transfer) and a CSD node type on the roofline, as the embedded cluster has."""

from __future__ import annotations

from collections.abc import Mapping

from control_plane.planner.solver import PlacementSolver, PlanningInputs, WarmClass
from control_plane.planner.types import SolvedPlan
from placement.catalog import Catalog, NodeType
from placement.compile import CompileOptions
from placement.ilp.problem import SolverOptions
from placement.models import ModelSpec
from placement.plan import Classifier, ClassRouting, Plan, Pool, Route, SolveSummary
from placement.profile_file import DecodePoint, NodeProfile, PrefillPoint, RoleProfile, TransferPoint
from placement.workload import Buckets, SLOClass

TINY = ModelSpec("tiny", num_layers=2, hidden_size=128, num_heads=4, num_kv_heads=2, intermediate_size=352,
                 vocab_size=2048, dtype="fp32", max_context_tokens=4096)
CPU = NodeType("cpu-local", "cpu", 1, 4, 10, {"fp32": 0.05}, 10, 0.10)
CSD = NodeType("csd-local", "csd", 1, 4, 10, {"fp32": 0.05}, 10, 0.05, kv_memory_gb=1, kv_bandwidth_gbs=2)
SLOS = {"interactive": SLOClass("interactive", 1.0, 0.1), "batch": SLOClass("batch", 4.0, 0.2, True)}


def cpu_profile() -> NodeProfile:
    """Step times of a slow CPU worker: prefill 10 ms + 0.2 ms per prompt token, decode step 20 ms +
    5 ms per sequence (+ 2 µs per sequence-token of context); peer KV 50 MB/s + 5 ms."""
    prefill = tuple(PrefillPoint(i, b, 0.01 + 2e-4 * i * b) for i in (64, 256, 1024) for b in (1, 4))
    decode = tuple(DecodePoint(b, c, 0.02 + 0.005 * b + 2e-6 * b * c) for b in (1, 4, 8) for c in (128, 1024))
    return NodeProfile(
        model="tiny", node_type="cpu-local", engine="native", device="cpu", fingerprint="test",
        kv_bytes_per_token=TINY.kv_bytes_per_token, kv_capacity_tokens=32768,
        roles={"colocated": RoleProfile(prefill, decode), "prefill": RoleProfile(prefill),
               "decode": RoleProfile(decode=decode)},
        transfer=(TransferPoint("peer", 1 << 20, 0.026, 50e6, 0.005),
                  TransferPoint("shared", 1 << 20, 0.011, 100e6, 0.001)))


def planning_inputs(inventory: Mapping[str, int] | None = None, min_rate: float = 0.5) -> PlanningInputs:
    return PlanningInputs(
        fleet=Catalog.of([CPU, CSD]), models={"tiny": TINY}, slos=SLOS,
        buckets=Buckets((0, 25, 100, 250, 500, 1000, 2000), (0, 25, 100, 250, 500, 1000, 2000)),
        inventory=dict(inventory if inventory is not None else {"cpu-local": 8, "csd-local": 1}),
        profiles={("tiny", "cpu-local"): cpu_profile()},
        compile_options=CompileOptions(csd_min_context_tokens=250, churn_penalty=0.03),
        solver_options=SolverOptions(time_limit_seconds=5),
        warm=(WarmClass("interactive", 150, 20, min_rate, "tiny"),), default_slo="interactive")


def solver(inventory: Mapping[str, int] | None = None, min_rate: float = 0.5) -> PlacementSolver:
    return PlacementSolver(planning_inputs(inventory, min_rate))


def plan_of(counts: Mapping[str, int], shares: Mapping[str, float] | None = None) -> SolvedPlan:
    """A plan with colocated pools of these counts; `shares` routes class "tiny/interactive/i2o0"."""
    pools = tuple(Pool(name, "tiny", "cpu-local", "colocated", n, 0.1, "cpu") for name, n in counts.items())
    shares = shares or {name: 1 / len(counts) for name in counts}
    routes = tuple(Route(s, pool=name) for name, s in shares.items() if s > 0)
    cls = ClassRouting("tiny/interactive/i2o0", "tiny", "interactive", (2, 0), 1.0, routes)
    classifier = Classifier((0, 25, 100, 250), (0, 25, 100), ("interactive",), "interactive")
    return SolvedPlan(Plan(pools, (cls,), classifier, sum(0.1 * n for n in counts.values()), (),
                           SolveSummary("test", "optimal", True, 0.0, 0.0)))
