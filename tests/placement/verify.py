"""`verify`: re-check an ILP Solution against its Problem by plain arithmetic (shared by the ILP tests)."""

from __future__ import annotations

from placement.ilp.problem import Problem
from placement.ilp.result import Solution


def verify(problem: Problem, s: Solution) -> list[str]:
    """Re-check a Solution against its Problem by plain arithmetic (no pulp)."""
    bad = []
    served = [0.0] * len(problem.demands)
    load = [0.0] * len(problem.pools)
    egress = [0.0] * len(problem.pools)
    for k, share in s.colocated_shares.items():
        o = problem.colocated[k]
        served[o.demand] += share
        load[o.pool] += problem.demands[o.demand].rate * share * o.load
    for k, share in s.disaggregated_shares.items():
        d = problem.disaggregated[k]
        demand = problem.demands[d.demand]
        served[d.demand] += share
        load[d.prefill_pool] += demand.rate * share * d.prefill_load
        load[d.decode_pool] += demand.rate * share * d.decode_load
        egress[d.prefill_pool] += demand.rate * share * demand.kv_transfer_bytes
    for c, total in enumerate(served):
        if abs(total - 1) > 1e-5:
            bad.append(f"served {c}: {total}")
    for p, pool in enumerate(problem.pools):
        if load[p] > s.counts[p] + 1e-5:
            bad.append(f"capacity {pool.name}: {load[p]} > {s.counts[p]}")
        if egress[p] > s.counts[p] * pool.network_bytes_per_second * 0.8 * (1 + 1e-6) + 1e-3:
            bad.append(f"egress {pool.name}")
    for node_type, limit in problem.inventory.items():
        used = sum(n for n, pool in zip(s.counts, problem.pools, strict=True) if pool.node_type == node_type)
        if used > limit:
            bad.append(f"inventory {node_type}: {used} > {limit}")
    return bad
