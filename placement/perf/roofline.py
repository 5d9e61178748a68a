"""Roofline performance model of one instance (= one node, model tensor-parallel over all accelerators).

A step takes max(FLOPs / (peak · compute_efficiency), bytes / (bandwidth · bandwidth_efficiency)) plus a
per-step overhead of `layer_overhead_us` per layer (kernel launches, scheduling, sampling). Tensor
parallelism over n > 1 accelerators adds `tp_overhead_us` · log2(n) per layer (all-reduces) and scales compute
efficiency by n^(−tp_compute_exponent) (smaller GEMMs per device); both are fitted to Splitwise's
TP 2/4/8 measurements.
- Prefill of `num_seqs` prompts of `prompt_tokens`: matmul FLOPs per token + causal attention
  (each query attends to half the prompt on average); bytes = weights + KV written.
- Decode step of `batch` sequences at mean context `context_tokens`: matmul FLOPs per token · batch +
  attention; bytes = weights + KV read. On a CSD node (`kv_memory_gb` > 0) KV lives on the drives and
  attention runs there: KV bytes are read at `kv_bandwidth_gbs`, after the weight-bound part.
- KV capacity: (memory · memory_utilization − weights) / KV bytes per token, plus the KV-only tier.
- KV transfer: bytes / min(sender NIC, receiver NIC) + `TRANSFER_LATENCY_SECONDS`.
All times are seconds. Pure functions; the same model drives profiles, the ILP and the simulator.
"""

from __future__ import annotations

import math

from placement.catalog import NodeType
from placement.models import ModelSpec

TRANSFER_LATENCY_SECONDS = 2e-3
ACTIVATION_RESERVE_FRACTION = 0.02


def _overhead(model: ModelSpec, node: NodeType) -> float:
    per_layer = node.layer_overhead_us + node.tp_overhead_us * math.log2(node.accelerators)
    return per_layer * model.num_layers * 1e-6


def _compute_seconds(node: NodeType, model: ModelSpec, flops: float) -> float:
    efficiency = node.compute_efficiency * node.accelerators ** (-node.tp_compute_exponent)
    return flops / (node.flops_per_second(model.dtype) * efficiency)


def _memory_seconds(node: NodeType, num_bytes: float) -> float:
    return num_bytes / (node.bandwidth_bytes_per_second * node.bandwidth_efficiency)


def prefill_work(model: ModelSpec, prompt_tokens: float, num_seqs: int = 1) -> tuple[float, float]:
    """(FLOPs, bytes moved) of prefilling `num_seqs` prompts of `prompt_tokens` each in one batch."""
    tokens = prompt_tokens * num_seqs
    flops = model.matmul_flops_per_token * tokens + num_seqs * model.attention_flops(
        prompt_tokens, prompt_tokens / 2
    )
    return flops, model.weight_bytes + tokens * model.kv_bytes_per_token


def decode_work(model: ModelSpec, batch: int, context_tokens: float) -> tuple[float, float]:
    """(FLOPs, bytes moved) of one decode step of `batch` sequences at mean context `context_tokens`."""
    flops = model.matmul_flops_per_token * batch + model.attention_flops(batch, context_tokens)
    return flops, model.weight_bytes + batch * context_tokens * model.kv_bytes_per_token


def prefill_seconds(model: ModelSpec, node: NodeType, prompt_tokens: float, num_seqs: int = 1) -> float:
    """Time to prefill `num_seqs` prompts of `prompt_tokens` each in one batch."""
    flops, num_bytes = prefill_work(model, prompt_tokens, num_seqs)
    return max(_compute_seconds(node, model, flops), _memory_seconds(node, num_bytes)) + _overhead(
        model, node
    )


def decode_step_seconds(model: ModelSpec, node: NodeType, batch: int, context_tokens: float) -> float:
    """Time of one decode iteration producing one token for each of `batch` sequences."""
    if node.kv_memory_gb > 0:
        matmul = model.matmul_flops_per_token * batch
        kv_bytes = batch * context_tokens * model.kv_bytes_per_token
        dense = max(_compute_seconds(node, model, matmul), _memory_seconds(node, model.weight_bytes))
        in_drive = kv_bytes / (node.kv_bandwidth_gbs * 1e9 * node.bandwidth_efficiency)
        return dense + in_drive + _overhead(model, node)
    flops, num_bytes = decode_work(model, batch, context_tokens)
    return max(_compute_seconds(node, model, flops), _memory_seconds(node, num_bytes)) + _overhead(
        model, node
    )


def kv_capacity_tokens(model: ModelSpec, node: NodeType) -> int:
    """Tokens of KV one instance holds next to the weights (0 if the weights alone do not fit)."""
    usable = node.memory_bytes * (node.memory_utilization - ACTIVATION_RESERVE_FRACTION)
    free = usable - model.weight_bytes
    if free <= 0:
        return 0
    extra = node.kv_memory_gb * 1e9
    return int((free + extra) / model.kv_bytes_per_token)


def kv_transfer_seconds(model: ModelSpec, tokens: float, src: NodeType, dst: NodeType) -> float:
    """Time to move the KV of `tokens` prompt tokens from a `src` instance to a `dst` instance."""
    bandwidth = min(src.network_bytes_per_second, dst.network_bytes_per_second)
    return tokens * model.kv_bytes_per_token / bandwidth + TRANSFER_LATENCY_SECONDS


def kv_transfer_bytes(model: ModelSpec, tokens: float) -> float:
    return tokens * model.kv_bytes_per_token
