"""The one target check of the benchmarks (benchmarks/_report.py): verdicts, table, exit code."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from benchmarks._report import FAIL, PASS, check, finish, meets, passed, table

TARGETS = {"p99_ms": ("<=", 10.0), "ratio": (">=", 2.0), "recovered": ("==", True), "lost": ("==", 0)}


def test_meets_each_op_at_and_past_the_bound() -> None:
    assert meets(10.0, ("<=", 10.0)) and not meets(10.01, ("<=", 10.0))
    assert meets(2.0, (">=", 2.0)) and not meets(1.99, (">=", 2.0))
    assert meets(0, ("==", 0)) and not meets(1, ("==", 0))
    assert meets(True, ("==", True)) and not meets(False, ("==", True))


def test_missing_none_nan_and_text_never_pass() -> None:
    for value in (None, math.nan, "skipped", [1.0]):
        assert not meets(value, ("<=", 10.0)), value
    assert not meets(1, ("==", True)), "a count of 1 is not the bool True"
    with pytest.raises(ValueError, match="op"):
        meets(1.0, ("<", 2.0))


def test_check_gives_one_verdict_per_target_in_order() -> None:
    verdicts = check({"p99_ms": 12.5, "ratio": 2.5, "recovered": True}, TARGETS)
    assert [(v.name, v.measured, v.ok) for v in verdicts] == [
        ("p99_ms", 12.5, False), ("ratio", 2.5, True), ("recovered", True, True), ("lost", None, False)]
    assert not passed(verdicts)


def test_a_skipped_part_fails_even_when_every_target_is_met() -> None:
    verdicts = check({"p99_ms": 1.0, "ratio": 3.0, "recovered": True, "lost": 0}, TARGETS)
    assert passed(verdicts)
    assert not passed(verdicts, ["role prefill: no worker"])
    text = table(verdicts, ["role prefill: no worker"])
    assert "skipped: role prefill: no worker" in text
    assert text.splitlines()[-1].endswith(FAIL)


def test_table_shows_bound_measured_and_mark() -> None:
    lines = table(check({"p99_ms": 12.5}, {"p99_ms": ("<=", 10.0), "ratio": (">=", 2.0)})).splitlines()
    assert lines[1].split() == ["p99_ms", "<=", "10", "12.5", FAIL]
    assert lines[2].split() == ["ratio", ">=", "2", "missing", FAIL]
    assert lines[-1].startswith("targets: 0/2 met")


@pytest.mark.parametrize(("check_flag", "result", "skipped", "code"), [
    (False, {"p99_ms": 99.0}, (), 0),            # without --check: report only
    (True, {"p99_ms": 99.0}, (), 1),             # missed
    (True, {"p99_ms": 1.0}, (), 0),              # met
    (True, {"p99_ms": 1.0}, ("part b",), 1),     # met, but a part was skipped
])
def test_finish_exit_code_and_json_last_line(capsys: pytest.CaptureFixture[str], check_flag: bool,
                                             result: dict[str, float], skipped: tuple[str, ...],
                                             code: int) -> None:
    args = argparse.Namespace(json=True, check=check_flag)
    assert finish(result, {"p99_ms": ("<=", 10.0)}, args, skipped) == code
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["p99_ms"] == result["p99_ms"]
    assert last["passed"] is (result["p99_ms"] <= 10.0 and not skipped)
    assert last["skipped"] == list(skipped)
    assert last["targets"]["p99_ms"] == {"op": "<=", "bound": 10.0, "ok": result["p99_ms"] <= 10.0}
    assert PASS in table(check({"p99_ms": 1.0}, {"p99_ms": ("<=", 10.0)}))
