"""The one vocabulary and the one percentile: parsers name the field, the percentile matches numpy's
default definition (linear, type 7) and says None for no values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.registry import WorkerRecord
from common.stats import percentile
from common.vocab import ROLES, TIERS, parse_device, parse_role, parse_tier


def test_parsers_accept_the_vocabulary_and_name_the_field() -> None:
    assert [parse_role(r) for r in ROLES] == list(ROLES)
    assert parse_tier("device") == "device"
    with pytest.raises(ValueError, match=r"pools\[0\]\.device: must be one of cpu, cuda, csd; got 'tpu'"):
        parse_device("tpu", field="pools[0].device")
    assert TIERS.index("device") < TIERS.index("memory") < TIERS.index("redis") < TIERS.index("disk")


def test_worker_record_rejects_a_role_outside_the_vocabulary() -> None:
    fields = dict(worker_id="w", address="h:1", node_type="cpu", device="cpu", model="m", pool="p",
                  kv_blocks=1, max_num_seqs=1, block_size=16, started_at=0.0)
    with pytest.raises(ValueError, match="role: must be one of colocated, prefill, decode"):
        text = WorkerRecord(role="decode", **fields).to_json()  # type: ignore[arg-type]  # dict of mixed values
        WorkerRecord.from_json(text.replace('"decode"', '"leader"'))


def test_percentile_edges() -> None:
    assert percentile([], 0.99) is None
    assert percentile([3.0], 0.5) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0
    with pytest.raises(ValueError, match="q: must be in"):
        percentile([1.0], 99)  # q in percent is a caller bug, not p99


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0.0, 1.0))
def test_percentile_is_numpys_linear_definition(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q * 100)), abs=1e-6)
