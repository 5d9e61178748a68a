"""Profiles: sustainable request rate of one instance per (model, node type, role, request class).

Derived from the roofline (`perf/roofline.py`) under the class's SLO, with queueing headroom:
- decode: the largest batch B with step time t_d(B, I + O/2) ≤ tpot·`tpot_headroom` and KV
  B·(I + O) ≤ KV capacity (tokens); rate = `max_utilization`·B / (O·t_d).
- prefill: prompts batched up to `prefill_chunk_tokens`, service s = t_p(I, k)/k per request; the
  queue is M/D/1, so mean TTFT = t_p + ρ·s / (2(1−ρ)) + transfer ≤ ttft·`ttft_headroom`, which bounds ρ in
  closed form; rate = min(ρ, max_utilization) / s.
- colocated: decode batch B interleaved with whole-prompt prefills (prefill-first scheduling). At rate
  λ = B / (O·t_d + B·s), prefill occupies ρ = λ·s of the time, stretching TPOT to t_d / (1 − ρ);
  TTFT = M/D/1 wait + t_p + one decode step. Largest feasible B by bisection (all terms grow with B).
  Prefill stalls hit short requests unevenly, so colocated TPOT gets the stricter
  `colocated_tpot_headroom` (0.8; the simulator misses ~1% of requests at 0.9).
Step times come from `StepTimes`: the roofline by default, or a measured profile's fit
(`placement.perf.steps.MeasuredSteps`) when `compile.py` has one for the (model, node type, role).
A zero rate comes with `binding`: "memory" (weights do not fit), "kv_capacity" (one request's KV does
not fit), "ttft" or "tpot" (even one request at a time misses the SLO).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from placement.catalog import NodeType
from placement.models import ModelSpec
from placement.perf.steps import RooflineSteps, StepTimes
from placement.workload import RequestClass, SLOClass


@dataclass(frozen=True)
class ProfileOptions:
    """Headroom applied when turning latencies into sustainable rates."""

    max_utilization: float = 0.8
    ttft_headroom: float = 0.5
    tpot_headroom: float = 0.9
    colocated_tpot_headroom: float = 0.8
    max_batch: int = 512
    prefill_chunk_tokens: int = 2048

    def __post_init__(self) -> None:
        for name in ("max_utilization", "ttft_headroom", "tpot_headroom", "colocated_tpot_headroom"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in (0, 1], got {getattr(self, name)}")
        if self.max_batch < 1 or self.prefill_chunk_tokens < 1:
            raise ValueError("max_batch and prefill_chunk_tokens must be >= 1")


@dataclass(frozen=True)
class Capacity:
    """Sustainable req/s of one instance; when 0, `binding` names why and `detail` says by how much."""

    rate: float
    binding: str = "ok"
    detail: str = ""


def _steps(model: ModelSpec, node: NodeType, steps: StepTimes | None) -> StepTimes:
    return steps if steps is not None else RooflineSteps(model, node)


def _fit_check(
    model: ModelSpec, node: NodeType, tokens_per_request: float, steps: StepTimes
) -> Capacity | None:
    kv_tokens = steps.kv_capacity_tokens()
    if kv_tokens <= 0:
        return Capacity(
            0.0,
            "memory",
            f"weights {model.weight_bytes / 1e9:.0f} GB do not fit "
            f"{node.memory_bytes / 1e9:.0f} GB on {node.name}",
        )
    if kv_tokens < tokens_per_request:
        return Capacity(
            0.0,
            "kv_capacity",
            f"{node.name} holds KV of {kv_tokens} tokens, one request needs {tokens_per_request:.0f}",
        )
    return None


def _largest(feasible: Callable[[int], bool], upper: int) -> int:
    """Largest b in [1, upper] with feasible(b), assuming monotone; 0 if none."""
    if upper < 1 or not feasible(1):
        return 0
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid - 1)
    return lo


def prefill_service(
    model: ModelSpec,
    node: NodeType,
    input_tokens: float,
    opts: ProfileOptions,
    steps: StepTimes | None = None,
) -> tuple[float, float]:
    """(batch seconds, seconds per request) of prefilling prompts of `input_tokens` in chunks."""
    per_batch = max(1, int(opts.prefill_chunk_tokens // max(input_tokens, 1.0)))
    t_batch = _steps(model, node, steps).prefill_seconds(input_tokens, per_batch)
    return t_batch, t_batch / per_batch


def prefill_capacity(
    model: ModelSpec,
    node: NodeType,
    cls: RequestClass,
    slo: SLOClass,
    opts: ProfileOptions,
    transfer_seconds: float = 0.0,
    steps: StepTimes | None = None,
) -> Capacity:
    """Rate of a prefill-only instance when the KV transfer after it takes `transfer_seconds`."""
    steps = _steps(model, node, steps)
    bad = _fit_check(model, node, cls.max_input_tokens, steps)
    if bad:
        return bad
    t_batch, s = prefill_service(model, node, cls.input_tokens, opts, steps)
    budget = slo.ttft_seconds * opts.ttft_headroom - t_batch - transfer_seconds
    if budget <= 0:
        return Capacity(
            0.0,
            "ttft",
            f"prefill {t_batch:.3f} s + transfer {transfer_seconds:.3f} s on "
            f"{node.name} exceed {opts.ttft_headroom:g}×TTFT {slo.ttft_seconds:g} s",
        )
    rho = min(opts.max_utilization, 2 * budget / (s + 2 * budget))
    return Capacity(rho / s)


def decode_capacity(
    model: ModelSpec,
    node: NodeType,
    cls: RequestClass,
    slo: SLOClass,
    opts: ProfileOptions,
    steps: StepTimes | None = None,
) -> Capacity:
    """Rate of a decode-only instance for `cls` under the TPOT SLO."""
    steps = _steps(model, node, steps)
    bad = _fit_check(model, node, cls.max_input_tokens + cls.max_output_tokens, steps)
    if bad:
        return bad
    ctx = cls.input_tokens + cls.output_tokens / 2
    kv_batch = int(steps.kv_capacity_tokens() // (cls.input_tokens + cls.output_tokens))
    budget = slo.tpot_seconds * opts.tpot_headroom
    batch = _largest(lambda b: steps.decode_step_seconds(b, ctx) <= budget, min(opts.max_batch, kv_batch))
    if batch == 0:
        step = steps.decode_step_seconds(1, ctx)
        return Capacity(
            0.0, "tpot", f"one decode step takes {step:.3f} s on {node.name}, budget {budget:.3f} s"
        )
    return Capacity(
        opts.max_utilization * batch / (cls.output_tokens * steps.decode_step_seconds(batch, ctx))
    )


def colocated_capacity(
    model: ModelSpec,
    node: NodeType,
    cls: RequestClass,
    slo: SLOClass,
    opts: ProfileOptions,
    steps: StepTimes | None = None,
) -> Capacity:
    """Rate of an instance doing both prefill and decode for `cls` (prefill-first batching)."""
    steps = _steps(model, node, steps)
    bad = _fit_check(model, node, cls.max_input_tokens + cls.max_output_tokens, steps)
    if bad:
        return bad
    ctx = cls.input_tokens + cls.output_tokens / 2
    t_batch, s = prefill_service(model, node, cls.input_tokens, opts, steps)
    kv_batch = int(steps.kv_capacity_tokens() // (cls.input_tokens + cls.output_tokens))

    def rate_at(b: int) -> tuple[float, float, float]:
        step = steps.decode_step_seconds(b, ctx)
        lam = opts.max_utilization * b / (cls.output_tokens * step + b * s)
        rho = lam * s
        tpot = step / (1 - rho)
        ttft = rho * s / (2 * (1 - rho)) + t_batch + step
        return lam, tpot, ttft

    def ok(b: int) -> bool:
        _, tpot, ttft = rate_at(b)
        return (
            tpot <= slo.tpot_seconds * opts.colocated_tpot_headroom
            and ttft <= slo.ttft_seconds * opts.ttft_headroom
        )

    batch = _largest(ok, min(opts.max_batch, kv_batch))
    if batch == 0:
        _, tpot, ttft = rate_at(1)
        which = "ttft" if ttft > slo.ttft_seconds * opts.ttft_headroom else "tpot"
        return Capacity(
            0.0,
            which,
            f"on {node.name} alone a request sees TTFT {ttft:.3f} s, TPOT {tpot:.3f} s "
            f"(SLO {slo.ttft_seconds:g} / {slo.tpot_seconds:g} s with headroom)",
        )
    return Capacity(rate_at(batch)[0])
