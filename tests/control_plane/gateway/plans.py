"""Plan documents for the gateway tests: real `placement.plan.Plan`s, built small and by hand."""

from __future__ import annotations

from typing import Any

from placement.plan import Baseline, Classifier, ClassRouting, Plan, Pool, Route, SolveSummary

# One input bucket edge at 64 tokens: prompts under it are class i0, the rest i1.
CLASSIFIER = Classifier((0, 64, 1 << 20), (0, 1 << 20), ("interactive", "batch"), "interactive")


def plan(pools: dict[str, str], classes: dict[str, list[Route]], *, model: str = "tiny",
         version: int = 1) -> Plan:
    """`pools`: name → role; `classes`: class name (`model/slo/iNoM`) → its routes."""
    def routing(name: str, routes: list[Route]) -> ClassRouting:
        _, slo, bucket = name.split("/")
        i, o = int(bucket[1:bucket.index("o")]), int(bucket[bucket.index("o") + 1:])
        return ClassRouting(name, model, slo, (i, o), 1.0, tuple(routes))

    return Plan(pools=tuple(Pool(n, model, "cpu", role, 1, 0.1) for n, role in pools.items()),
                classes=tuple(routing(n, r) for n, r in classes.items()), classifier=CLASSIFIER,
                cost_per_hour=0.1 * len(pools),
                baselines=(Baseline("colocated-only", None, status="infeasible"),),
                solve=SolveSummary("highs", "optimal", True, 0.0, 0.01), version=version)


def document(pools: dict[str, str], classes: dict[str, list[Route]], **kw: Any) -> dict[str, Any]:
    return plan(pools, classes, **kw).to_dict()


# Long prompts (class i1) go P/D from pool pf to pool dc, short ones (i0) colocated on pool co.
PD_POOLS = {"co": "colocated", "pf": "prefill", "dc": "decode"}
PD_PLAN = document(PD_POOLS, {"tiny/interactive/i1o0": [Route(1.0, prefill_pool="pf", decode_pool="dc")],
                              "tiny/interactive/i0o0": [Route(1.0, pool="co")]})
