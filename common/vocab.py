"""The words every component shares, each defined once: roles, devices, engines, cache tiers, node
kinds, KV-transfer paths and the request-length bucket edges.

Each is a `Literal` (so mypy checks every use) with a tuple of its values in a fixed order (for
validation, iteration and error messages). Parsers at the process edge turn strings into these with
`parse_*`, which raise `ValueError` naming the field. Nothing here imports anything of the project.
"""

from __future__ import annotations

from typing import Literal, TypeVar, get_args

# What a worker does with a request: both phases, only the prompt (and hands its KV on), or only the
# generated tokens (from KV it receives).
Role = Literal["colocated", "prefill", "decode"]
ROLES: tuple[Role, ...] = get_args(Role)

# Where a worker's engine runs. `csd` is a computational-storage drive: KV and decode attention on the
# drive (workers/devices/csd).
Device = Literal["cpu", "cuda", "csd"]
DEVICES: tuple[Device, ...] = get_args(Device)

# Which engine a worker hosts behind the Worker service: this project's PyTorch engine or vLLM.
Engine = Literal["native", "vllm"]
ENGINES: tuple[Engine, ...] = get_args(Engine)

# The kind of hardware a placement node type is (a GPU of any make, a CPU server, a CSD host).
NodeKind = Literal["gpu", "cpu", "csd"]
NODE_KINDS: tuple[NodeKind, ...] = get_args(NodeKind)

# Where a KV block lives, fastest first: the worker's own KV pool (`device`: GPU or host memory the
# engine attends over), the worker's host-memory tier, the shared Redis tier, the disk tier.
Tier = Literal["device", "memory", "redis", "disk"]
TIERS: tuple[Tier, ...] = get_args(Tier)
# Tiers every worker of the cluster reads (the others are private to the worker that holds them).
SHARED_TIERS: tuple[Tier, ...] = ("redis",)

# How KV moves from a prefill worker to a decode worker: a gRPC stream between the two (`peer`) or
# blocks written to and read from a shared tier (`shared`).
TransferPath = Literal["peer", "shared"]
TRANSFER_PATHS: tuple[TransferPath, ...] = get_args(TransferPath)

# Request-length bucket edges in tokens (Mélange's): bucket i holds [edges[i], edges[i+1]), the last is
# open. Placement's request classes and the gateways' traffic histograms use the same edges.
LENGTH_BUCKET_EDGES: tuple[int, ...] = (0, 25, 100, 250, 500, 1000, 2000)

_S = TypeVar("_S", bound=str)


def _parse(value: str, allowed: tuple[_S, ...], field: str) -> _S:
    for candidate in allowed:
        if value == candidate:
            return candidate
    raise ValueError(f"{field}: must be one of {', '.join(allowed)}; got {value!r}")


def parse_role(value: str, field: str = "role") -> Role:
    """`value` as a `Role`, or `ValueError` naming `field`."""
    return _parse(value, ROLES, field)


def parse_device(value: str, field: str = "device") -> Device:
    """`value` as a `Device`, or `ValueError` naming `field`."""
    return _parse(value, DEVICES, field)


def parse_engine(value: str, field: str = "engine") -> Engine:
    """`value` as an `Engine`, or `ValueError` naming `field`."""
    return _parse(value, ENGINES, field)


def parse_tier(value: str, field: str = "tier") -> Tier:
    """`value` as a `Tier`, or `ValueError` naming `field`."""
    return _parse(value, TIERS, field)
