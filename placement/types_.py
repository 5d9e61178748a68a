"""Shared small types of the placement library: roles, node kinds, dtype sizes, length-bucket edges."""

from __future__ import annotations

from typing import Literal

Role = Literal["colocated", "prefill", "decode"]
ROLES: tuple[Role, ...] = ("colocated", "prefill", "decode")
NodeKind = Literal["gpu", "cpu", "csd"]
NODE_KINDS: tuple[str, ...] = ("gpu", "cpu", "csd")

DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}

# Mélange's request-length bucket edges (tokens): bucket i is [edges[i], edges[i+1]), the last is open.
# The gateways' traffic histograms (control_plane.traffic) use the same edges.
DEFAULT_EDGES: tuple[int, ...] = (0, 25, 100, 250, 500, 1000, 2000)
