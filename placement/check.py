"""Independent feasibility check of a Plan against its inputs, for tests and for a cautious planner.

It re-derives every constraint from the raw inputs (catalog, models, classes, SLOs) through the
profiles and roofline, without the ILP's code or coefficients:
- every class with traffic is fully routed (shares sum to 1) to pools of its own model;
- capacity: Σ rate·share / sustainable rate ≤ count for every pool;
- inventory: Σ counts per node type ≤ inventory;
- memory: each pool's node holds the model weights and one request's KV of every class it serves;
- KV transfer: bytes/s out of each prefill pool and into each decode pool ≤ count · NIC · utilisation;
- TTFT with transfer: prefill time + transfer ≤ TTFT budget on every P/D route;
- CSD: CSD pools are decode pools and serve only CSD-eligible classes.
Returns the list of violations (empty when the plan is feasible).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from placement.catalog import Catalog
from placement.compile import CompileOptions, csd_allowed
from placement.ilp.problem import MIN_RATE
from placement.measured import MeasuredTable
from placement.models import ModelSpec
from placement.perf.roofline import kv_capacity_tokens, kv_transfer_seconds
from placement.plan import Plan
from placement.profiles import colocated_capacity, decode_capacity, prefill_capacity, prefill_service
from placement.workload import RequestClass, SLOClass

TOLERANCE = 1e-6


def check_plan(
    plan: Plan,
    fleet: Catalog,
    models: Mapping[str, ModelSpec],
    classes: Sequence[RequestClass],
    slos: Mapping[str, SLOClass],
    inventory: Mapping[str, int],
    options: CompileOptions,
    transfer_utilization: float = 0.8,
    measured: Mapping[str, MeasuredTable] | None = None,
) -> list[str]:
    """All violated constraints of `plan` (empty list: feasible)."""
    bad: list[str] = []
    pools = {p.name: p for p in plan.pools}
    routing = {c.name: c for c in plan.classes}
    load: dict[str, float] = defaultdict(float)
    egress: dict[str, float] = defaultdict(float)
    ingress: dict[str, float] = defaultdict(float)
    for cls in classes:
        model, slo = models[cls.model], slos[cls.slo]
        routes = routing[cls.name].routes if cls.name in routing else ()
        total = sum(r.share for r in routes)
        if cls.rate > MIN_RATE and abs(total - 1) > 1e-4:
            bad.append(f"served: class {cls.name} routed {total:.4f} of its traffic")
        for r in routes:
            if any(pools[name].model != cls.model for name in r.pools if name in pools):
                bad.append(f"model: class {cls.name} routed to a pool of another model")
            missing = [name for name in r.pools if name not in pools]
            if missing:
                bad.append(f"pool: class {cls.name} routed to {missing[0]}, which has no instances")
                continue
            flow = cls.rate * r.share
            if not r.disaggregated:
                node = fleet[pools[str(r.pool)].node_type]
                table = (measured or {}).get(cls.model)
                cap = (
                    table.capacity(node.name, cls)
                    if table
                    else colocated_capacity(model, node, cls, slo, options.profile)
                ).rate
                load[str(r.pool)] += flow / cap if cap > 0 else float("inf")
                continue
            pnode, dnode = (
                fleet[pools[str(r.prefill_pool)].node_type],
                fleet[pools[str(r.decode_pool)].node_type],
            )
            transfer = kv_transfer_seconds(model, cls.input_tokens, pnode, dnode)
            t_batch, _ = prefill_service(model, pnode, cls.input_tokens, options.profile)
            if t_batch + transfer > slo.ttft_seconds * options.profile.ttft_headroom:
                bad.append(
                    f"ttft: class {cls.name}: prefill {t_batch:.3f} s + transfer {transfer:.3f} s on "
                    f"{r.prefill_pool} → {r.decode_pool} exceed the TTFT budget"
                )
            pcap = prefill_capacity(model, pnode, cls, slo, options.profile, transfer).rate
            dcap = decode_capacity(model, dnode, cls, slo, options.profile).rate
            load[str(r.prefill_pool)] += flow / pcap if pcap > 0 else float("inf")
            load[str(r.decode_pool)] += flow / dcap if dcap > 0 else float("inf")
            egress[str(r.prefill_pool)] += flow * cls.input_tokens * model.kv_bytes_per_token
            ingress[str(r.decode_pool)] += flow * cls.input_tokens * model.kv_bytes_per_token
            if dnode.kind == "csd" and not csd_allowed(cls, slo, options):
                bad.append(f"csd: class {cls.name} decodes on CSD pool {r.decode_pool} but is not eligible")
            if kv_capacity_tokens(model, dnode) < cls.max_input_tokens + cls.max_output_tokens:
                bad.append(f"memory: {r.decode_pool} cannot hold one request of {cls.name}")
    for name, pool in pools.items():
        node = fleet[pool.node_type]
        if load[name] > pool.count + TOLERANCE:
            bad.append(f"capacity: pool {name} needs {load[name]:.3f} instances, has {pool.count}")
        if kv_capacity_tokens(models[pool.model], node) <= 0:
            bad.append(f"memory: {pool.model} does not fit a {node.name}")
        if node.kind == "csd" and pool.role != "decode":
            bad.append(f"csd: pool {name} has role {pool.role}; CSD nodes only decode")
        limit = pool.count * node.network_bytes_per_second * transfer_utilization
        for kind, flows in (("egress", egress), ("ingress", ingress)):
            if flows[name] > limit * (1 + TOLERANCE) + TOLERANCE:
                bad.append(
                    f"transfer: {kind} of {name} {flows[name] / 1e9:.2f} GB/s > {limit / 1e9:.2f} GB/s"
                )
    per_type: dict[str, int] = defaultdict(int)
    for pool in pools.values():
        per_type[pool.node_type] += pool.count
    for node_type, used in per_type.items():
        if node_type in inventory and used > inventory[node_type]:
            bad.append(f"inventory: {used} {node_type} nodes used, {inventory[node_type]} available")
    return bad
