"""Step times of one instance: from the roofline, or fitted to a measured profile.

`StepTimes` is what `placement.profiles` turns into sustainable rates: the time to prefill a batch,
the time of one decode step, and the KV the instance holds. `RooflineSteps(model, node)` answers from
`perf/roofline.py`; `MeasuredSteps.fit(profile, role)` from the points of a `NodeProfile`, with two
small least-squares fits (non-negative coefficients, so extrapolating beyond the grid never makes
longer prompts or bigger batches faster):

    prefill seconds(I, b) = a + c0 · b + c1 · b·I + c2 · b·I²   (overhead, per sequence, matmul per
                                                                  token, attention)
    decode  seconds(b, C) = a + c1 · b   + c2 · b·C             (overhead, per sequence, KV read)

The prefill's per-sequence term c0 (since 2026-12-07): a batch of b prompts costs the worker more than
one prompt of b·I tokens (each sequence is admitted, sampled and streamed on its own, and the engine's
token budget splits a large batch over several steps); without it the fit missed its own points by
16 % on the tiny model (4 × 64 tokens 13.8 ms vs 4.0 ms for one) and over-predicted lone short prompts.
With one point only, the fit is the proportional model through it (per token, resp. per sequence).
The fit's relative error on its own points is kept (`prefill_error`, `decode_error`) so a profile
with a bad fit can be spotted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from common.vocab import ROLES, Role
from placement.catalog import NodeType
from placement.models import ModelSpec
from placement.perf import roofline
from placement.profile_file import NodeProfile


class StepTimes(Protocol):
    """Seconds of one instance's work units (contract of `placement.profiles`)."""

    def prefill_seconds(self, prompt_tokens: float, num_seqs: int = 1) -> float: ...
    def decode_step_seconds(self, batch: int, context_tokens: float) -> float: ...
    def kv_capacity_tokens(self) -> int: ...


@dataclass(frozen=True)
class RooflineSteps:
    model: ModelSpec
    node: NodeType

    def prefill_seconds(self, prompt_tokens: float, num_seqs: int = 1) -> float:
        return roofline.prefill_seconds(self.model, self.node, prompt_tokens, num_seqs)

    def decode_step_seconds(self, batch: int, context_tokens: float) -> float:
        return roofline.decode_step_seconds(self.model, self.node, batch, context_tokens)

    def kv_capacity_tokens(self) -> int:
        return roofline.kv_capacity_tokens(self.model, self.node)


Features = Callable[[float, float], tuple[float, ...]]


def _prefill_features(input_tokens: float, batch: float) -> tuple[float, ...]:
    return 1.0, batch, batch * input_tokens, batch * input_tokens**2


def _decode_features(batch: float, context_tokens: float) -> tuple[float, ...]:
    return 1.0, batch, batch * context_tokens


PREFILL_PER_UNIT, DECODE_PER_UNIT = 2, 1  # the term a single point is fitted with (per token, per seq)


def _fit(points: Sequence[tuple[float, float, float]], features: Features,
         per_unit: int) -> tuple[np.ndarray, float]:
    """Non-negative least squares over (x, y, seconds) by active-set elimination; returns
    (coefficients, mean relative error on the points)."""
    x = np.array([features(a, b) for a, b, _ in points], dtype=float)
    y = np.array([s for _, _, s in points], dtype=float)
    n = x.shape[1]
    if len(points) == 1:  # proportional through the one point: keep the per-unit term only
        coef = np.zeros(n)
        coef[per_unit] = y[0] / x[0, per_unit]
        return coef, 0.0
    active = list(range(n))
    coef = np.zeros(n)
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        if (sol >= 0).all():
            coef = np.zeros(n)
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    error = float(np.mean(np.abs(x @ coef - y) / y))
    return coef, error


@dataclass(frozen=True)
class MeasuredSteps:
    """Step times fitted to one role's measurements (see the module docstring)."""

    prefill_coef: tuple[float, ...]  # (a, c0, c1, c2); a 3-tuple (a, c1, c2) is read as c0 = 0
    decode_coef: tuple[float, float, float]
    kv_tokens: int
    prefill_error: float = 0.0
    decode_error: float = 0.0

    @classmethod
    def fit(cls, profile: NodeProfile, role: Role) -> MeasuredSteps | None:
        """Step times of `role` from its own points; a half the role's own worker was not measured on
        comes from the node type's other roles (a colocated worker's decode points say what a decode
        step costs here too). None when a half the role needs is missing: colocated needs both,
        prefill its prefill points, decode its decode points (an unneeded missing half is zero)."""
        order: list[Role] = [role, *(r for r in ROLES if r != role)]
        prefill = next((p.prefill for r in order if (p := profile.role(r)) and p.prefill), ())
        decode = next((p.decode for r in order if (p := profile.role(r)) and p.decode), ())
        if (role != "decode" and not prefill) or (role != "prefill" and not decode):
            return None
        pc, pe = _fit([(p.input_tokens, p.batch, p.seconds) for p in prefill], _prefill_features,
                      PREFILL_PER_UNIT) if prefill else (np.zeros(4), 0.0)
        dc, de = _fit([(p.batch, p.context_tokens, p.seconds) for p in decode], _decode_features,
                      DECODE_PER_UNIT) if decode else (np.zeros(3), 0.0)
        coefs = (tuple(float(v) for v in pc), tuple(float(v) for v in dc))
        return cls(coefs[0], coefs[1], profile.kv_capacity_tokens, pe, de)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if len(self.prefill_coef) == 3:  # the fit before the per-sequence term
            a, c1, c2 = self.prefill_coef
            object.__setattr__(self, "prefill_coef", (a, 0.0, c1, c2))
        if len(self.prefill_coef) != 4 or len(self.decode_coef) != 3:
            raise ValueError(f"prefill_coef/decode_coef: need 4 and 3 coefficients, got "
                             f"{len(self.prefill_coef)} and {len(self.decode_coef)}")

    def prefill_seconds(self, prompt_tokens: float, num_seqs: int = 1) -> float:
        f = _prefill_features(prompt_tokens, num_seqs)
        return float(sum(c * v for c, v in zip(self.prefill_coef, f, strict=True)))

    def decode_step_seconds(self, batch: int, context_tokens: float) -> float:
        f = _decode_features(batch, context_tokens)
        return float(sum(c * v for c, v in zip(self.decode_coef, f, strict=True)))

    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens


@dataclass(frozen=True)
class ScaledSteps:
    """`base`'s step times × `prefill_scale` and × `decode_scale` (same KV capacity): an instance slower
    than where `base` was measured, e.g. on cores shared with other processes, with the factors measured
    by a probe of the instance where it runs (`bench fidelity`)."""

    base: StepTimes
    prefill_scale: float = 1.0
    decode_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("prefill_scale", "decode_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def prefill_seconds(self, prompt_tokens: float, num_seqs: int = 1) -> float:
        return self.prefill_scale * self.base.prefill_seconds(prompt_tokens, num_seqs)

    def decode_step_seconds(self, batch: int, context_tokens: float) -> float:
        return self.decode_scale * self.base.decode_step_seconds(batch, context_tokens)

    def kv_capacity_tokens(self) -> int:
        return self.base.kv_capacity_tokens()
