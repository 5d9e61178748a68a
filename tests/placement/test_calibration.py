"""Roofline calibration against Splitwise (fitted) and DistServe (held out); shipped factors match."""

from __future__ import annotations

from pathlib import Path

from placement.catalog import Catalog
from placement.models import ModelSpec
from placement.perf.calibration import calibrate, distserve_check, evaluate, load_splitwise
from placement.perf.roofline import kv_capacity_tokens, kv_transfer_seconds


def test_fit_errors_and_shipped_factors(
    shared_data: Path, catalog: Catalog, models: dict[str, ModelSpec]
) -> None:
    csv_path = shared_data / "latency" / "splitwise_perf_model.csv"
    results = calibrate({n.name: n for n in catalog}, models, csv_path)
    assert set(results) == {"A100-80G", "H100"}
    rows = load_splitwise(csv_path)
    for name, result in results.items():
        assert result.num_points == 76
        assert result.decode_mape < 0.10 and result.prefill_mape < 0.35
        shipped_prefill, shipped_decode = evaluate(
            catalog[name], models, [r for r in rows if r.hardware == name]
        )
        assert shipped_decode <= result.decode_mape + 0.01 and shipped_prefill <= result.prefill_mape + 0.01
    prefill, decode, points = distserve_check(
        catalog["A100-80G"], models, shared_data / "latency" / "profiler-a100-80g.distserve.json"
    )
    assert points > 100 and prefill < 0.2 and decode < 0.35


def test_capacity_and_transfer(catalog: Catalog, models: dict[str, ModelSpec]) -> None:
    llama70 = models["llama2-70b"]
    assert kv_capacity_tokens(llama70, catalog["A100-80G"]) == 0  # 138 GB of weights on one 80 GB GPU
    assert kv_capacity_tokens(llama70, catalog["H100x8"]) > 1_000_000
    assert kv_capacity_tokens(llama70, catalog["csd-8x"]) > 50 * kv_capacity_tokens(
        llama70, catalog["H100x8"]
    )
    fast = kv_transfer_seconds(llama70, 1000, catalog["H100x8"], catalog["H100x8"])
    slow = kv_transfer_seconds(llama70, 1000, catalog["H100x8"], catalog["L4"])
    assert 0 < fast < slow
