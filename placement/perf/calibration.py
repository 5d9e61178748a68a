"""Calibration of the roofline's efficiency factors against measured latencies.

Data: Splitwise's `splitwise_perf_model.csv` (Llama2-70B and BLOOM-176B on A100-80GB and H100, TP 2/4/8,
prompt 128..8192, batch 1..64; power-capped H100 rows are left out) and DistServe's fitted latency
coefficients for OPT-13B/66B on A100-80GB (used as a held-out check, not fitted).

Fit (per hardware, numpy grid search, minimising mean |relative error|):
1. decode rows (`token_time`) → bandwidth_efficiency, layer_overhead_us, tp_overhead_us, with compute
   efficiency held at its current value;
2. prefill rows (`prompt_time`) → compute_efficiency, tp_compute_exponent, with the overheads of step 1.
Two rounds. The error reported is the mean absolute percentage error (MAPE) per phase.
DistServe formulas (ms): prefill = a + b·Σtokens + c·Σtokens²; decode = a + b·Σcontext + c·batch
(small-batch coefficients below the threshold, large-batch above).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from placement.catalog import NodeType
from placement.models import ModelSpec
from placement.perf.roofline import decode_step_seconds, decode_work, prefill_seconds, prefill_work

HARDWARE_NAMES = {"a100-80gb": "A100-80G", "h100-80gb": "H100"}


@dataclass(frozen=True)
class Measurement:
    """One measured configuration (repeats averaged). Times in seconds."""

    model: str
    hardware: str
    tensor_parallel: int
    prompt_tokens: int
    batch: int
    output_tokens: int
    prefill_seconds: float
    token_seconds: float


@dataclass(frozen=True)
class CalibrationResult:
    """Fitted node type and its error on the measurements (MAPE, fractions)."""

    node_type: NodeType
    num_points: int
    prefill_mape: float
    decode_mape: float


def load_splitwise(path: Path) -> list[Measurement]:
    """Read Splitwise's CSV, averaging repeats; keeps only hardware in HARDWARE_NAMES."""
    groups: dict[tuple[str, str, int, int, int, int], list[tuple[float, float]]] = defaultdict(list)
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if row["hardware"] not in HARDWARE_NAMES:
                continue
            key = (
                row["model"],
                HARDWARE_NAMES[row["hardware"]],
                int(row["tensor_parallel"]),
                int(row["prompt_size"]),
                int(row["batch_size"]),
                int(row["token_size"]),
            )
            groups[key].append((float(row["prompt_time"]) / 1e3, float(row["token_time"]) / 1e3))
    return [
        Measurement(*key, float(np.mean([p for p, _ in v])), float(np.mean([t for _, t in v])))
        for key, v in sorted(groups.items())
    ]


def _features(
    node: NodeType, models: dict[str, ModelSpec], rows: list[Measurement], phase: str
) -> tuple[np.ndarray, ...]:
    """Per row: compute s at efficiency 1, memory s at efficiency 1, log2(tp), tp, layers, measured."""
    cols: list[tuple[float, float, float, float, float, float]] = []
    for r in rows:
        model = models[r.model]
        peak = node.peak_tflops.get(model.dtype) or node.peak_tflops["fp16"]
        if phase == "prefill":
            flops, nbytes = prefill_work(model, r.prompt_tokens, r.batch)
            measured = r.prefill_seconds
        else:
            flops, nbytes = decode_work(model, r.batch, r.prompt_tokens + r.output_tokens / 2)
            measured = r.token_seconds
        tp = r.tensor_parallel
        cols.append(
            (
                flops / (peak * 1e12 * tp),
                nbytes / (node.mem_bandwidth_gbs * 1e9 * tp),
                math.log2(tp),
                float(tp),
                float(model.num_layers),
                measured,
            )
        )
    return tuple(np.array(c) for c in zip(*cols, strict=True))


def _mape(pred: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - measured) / measured))


def _predict(
    f: tuple[np.ndarray, ...], ce: float, gamma: float, be: float, so: float, to: float
) -> np.ndarray:
    ct, mt, l2, tp, layers, _ = f
    return np.maximum(ct / (ce * tp ** (-gamma)), mt / be) + (so + to * l2) * layers * 1e-6


def fit_node(node: NodeType, models: dict[str, ModelSpec], rows: list[Measurement]) -> CalibrationResult:
    """Fit the efficiency factors of `node` to `rows` (all of one hardware). Pure; returns a new NodeType."""
    pre, dec = _features(node, models, rows, "prefill"), _features(node, models, rows, "decode")
    ce, gamma, be, so, to = node.compute_efficiency, node.tp_compute_exponent, 0.7, 50.0, 0.0
    for _ in range(2):
        grid = itertools.product(np.linspace(0.3, 1.0, 36), np.arange(0, 301, 10.0), np.arange(0, 301, 10.0))
        be, so, to = min(grid, key=lambda p: _mape(_predict(dec, ce, gamma, *p), dec[5]))
        grid2 = itertools.product(np.linspace(0.2, 1.0, 41), np.linspace(0, 1.0, 21))
        ce, gamma = min(grid2, key=lambda p: _mape(_predict(pre, p[0], p[1], be, so, to), pre[5]))
    fitted = replace(
        node,
        compute_efficiency=round(float(ce), 3),
        tp_compute_exponent=round(float(gamma), 3),
        bandwidth_efficiency=round(float(be), 3),
        layer_overhead_us=float(so),
        tp_overhead_us=float(to),
    )
    prefill_err, decode_err = evaluate(fitted, models, rows)
    return CalibrationResult(fitted, len(rows), prefill_err, decode_err)


def evaluate(node: NodeType, models: dict[str, ModelSpec], rows: list[Measurement]) -> tuple[float, float]:
    """(prefill MAPE, decode MAPE) of the roofline with `node`'s factors against `rows`."""
    pre_err, dec_err = [], []
    for r in rows:
        shaped = replace(node, accelerators=r.tensor_parallel)
        model = models[r.model]
        p = prefill_seconds(model, shaped, r.prompt_tokens, r.batch)
        d = decode_step_seconds(model, shaped, r.batch, r.prompt_tokens + r.output_tokens / 2)
        pre_err.append(abs(p - r.prefill_seconds) / r.prefill_seconds)
        dec_err.append(abs(d - r.token_seconds) / r.token_seconds)
    return float(np.mean(pre_err)), float(np.mean(dec_err))


def distserve_check(node: NodeType, models: dict[str, ModelSpec], path: Path) -> tuple[float, float, int]:
    """Held-out check against DistServe's fitted A100 coefficients: (prefill MAPE, decode MAPE, points).

    Grid: prompt 128..2048 tokens × batch 1..8 (prefill); context 256..2048 × batch 1..128 (decode).
    """
    data = json.loads(path.read_text())
    pre_err, dec_err = [], []
    for model_name, per_tp in data.items():
        model = models[model_name.split("/")[-1]]
        for tp_text, coeffs in per_tp.items():
            shaped = replace(node, accelerators=int(tp_text))
            if model.weight_bytes > shaped.memory_bytes * 0.9:
                continue
            a, b, c = coeffs["prefill"]
            for prompt, batch in itertools.product((128, 512, 1024, 2048), (1, 2, 4, 8)):
                ref = (a + b * prompt * batch + c * batch * prompt**2) / 1e3
                pre_err.append(abs(prefill_seconds(model, shaped, prompt, batch) - ref) / ref)
            for context, batch in itertools.product((256, 512, 1024, 2048), (1, 8, 32, 128)):
                key = (
                    "decoding_smallbs"
                    if batch < coeffs["decoding_large_small_bs_threshold"]
                    else "decoding_largebs"
                )
                a, b, c = coeffs[key]
                ref = (a + b * context * batch + c * batch) / 1e3
                dec_err.append(abs(decode_step_seconds(model, shaped, batch, context) - ref) / ref)
    return float(np.mean(pre_err)), float(np.mean(dec_err)), len(pre_err) + len(dec_err)


def calibrate(
    nodes: dict[str, NodeType], models: dict[str, ModelSpec], splitwise_csv: Path
) -> dict[str, CalibrationResult]:
    """Fit every hardware present in Splitwise's data; keys are catalog node-type names."""
    rows = load_splitwise(splitwise_csv)
    return {
        name: fit_node(nodes[name], models, [r for r in rows if r.hardware == name])
        for name in sorted({r.hardware for r in rows})
    }
