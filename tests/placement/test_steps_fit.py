"""The step-time fits of a measured profile (`placement.perf.steps.MeasuredSteps`)."""

from __future__ import annotations

import pytest

from placement.perf.steps import MeasuredSteps
from placement.profile_file import DecodePoint, NodeProfile, PrefillPoint, RoleProfile


def _profile(prefill: tuple[PrefillPoint, ...]) -> NodeProfile:
    decode = tuple(DecodePoint(b, c, 0.002 + 1e-4 * b + 1e-7 * b * c) for c in (128, 512) for b in (1, 4))
    return NodeProfile(model="tiny", node_type="cpu-local", engine="native", device="cpu", fingerprint="f",
                       kv_bytes_per_token=1024.0, kv_capacity_tokens=8192,
                       roles={"colocated": RoleProfile(prefill, decode)})


def test_prefill_fit_has_a_per_sequence_term() -> None:
    # a worker paying 2.5 ms per sequence on top of 1 ms per step and 50 us per token (the tiny model's
    # shape: 4 x 64 tokens cost far more than one prompt of 256)
    def seconds(i: int, b: int) -> float:
        return 0.001 + 0.0025 * b + 5e-5 * b * i

    points = tuple(PrefillPoint(i, b, seconds(i, b)) for i in (64, 512) for b in (1, 4))
    steps = MeasuredSteps.fit(_profile(points), "colocated")
    assert steps is not None and steps.prefill_error < 1e-6  # the grid's own points, exactly
    assert steps.prefill_seconds(222, 1) == pytest.approx(seconds(222, 1), rel=1e-6)
    assert steps.prefill_seconds(64, 8) == pytest.approx(seconds(64, 8), rel=1e-6)
    assert steps.prefill_coef[1] == pytest.approx(0.0025, rel=1e-6)


def test_prefill_fit_coefficients_stay_non_negative() -> None:
    # noise that would want a negative per-token cost: the fit drops that term instead
    points = (PrefillPoint(64, 1, 0.015), PrefillPoint(64, 4, 0.035), PrefillPoint(512, 1, 0.012),
              PrefillPoint(512, 4, 0.04))
    steps = MeasuredSteps.fit(_profile(points), "colocated")
    assert steps is not None and min(steps.prefill_coef) >= 0.0
    assert steps.prefill_seconds(2048, 4) >= steps.prefill_seconds(64, 4)


def test_one_point_is_proportional_and_old_coefficients_read() -> None:
    steps = MeasuredSteps.fit(_profile((PrefillPoint(100, 2, 0.02),)), "colocated")
    assert steps is not None and steps.prefill_seconds(50, 1) == pytest.approx(0.005)
    old = MeasuredSteps((0.001, 1e-4, 0.0), (0.002, 1e-4, 0.0), 4096)  # (a, c1, c2): before c0 existed
    assert old.prefill_coef == (0.001, 0.0, 1e-4, 0.0)
    assert old.prefill_seconds(100, 2) == pytest.approx(0.001 + 1e-4 * 200)
    with pytest.raises(ValueError, match="prefill_coef"):
        MeasuredSteps((0.001, 1e-4), (0.002, 1e-4, 0.0), 4096)
