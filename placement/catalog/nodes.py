"""Hardware catalog: node types (GPU, CPU, CSD) with memory, bandwidth, FLOPs, network and price.

`NodeType` is one frozen, validated record; `Catalog` is an immutable name → NodeType mapping.
`load_catalog()` reads the shipped `catalog/nodes.yaml` (or a user's file of the same format) through
`common.config.build`, so a bad entry is a one-line `ConfigError` naming file and field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from common.config import build, load_mapping
from common.errors import ConfigError
from common.vocab import NODE_KINDS

CATALOG_DIR = Path(__file__).resolve().parent
SHIPPED_NODES = CATALOG_DIR / "nodes.yaml"

# Bytes per value of each numeric format: sizes weights and KV (`placement.models`) and names the
# dtypes a node's `peak_tflops` may list.
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class NodeType:
    """One purchasable node shape. Per-accelerator figures are multiplied by `accelerators`.

    Units: GB (1e9 bytes), GB/s, TFLOP/s, Gbit/s (network), USD per node-hour.
    """

    name: str
    kind: str
    accelerators: int
    memory_gb: float
    mem_bandwidth_gbs: float
    peak_tflops: dict[str, float]
    network_gbps: float
    price_per_hour: float
    storage_gbs: float = 1.0
    kv_memory_gb: float = 0.0
    kv_bandwidth_gbs: float = 0.0
    compute_efficiency: float = 0.7
    bandwidth_efficiency: float = 0.7
    layer_overhead_us: float = 100.0
    tp_overhead_us: float = 0.0
    tp_compute_exponent: float = 0.0
    memory_utilization: float = 0.9

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if self.kind not in NODE_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(NODE_KINDS)}, got {self.kind!r}")
        if self.accelerators < 1:
            raise ValueError(f"accelerators: must be >= 1, got {self.accelerators}")
        for name in ("memory_gb", "mem_bandwidth_gbs", "network_gbps", "price_per_hour"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in (
            "kv_memory_gb",
            "kv_bandwidth_gbs",
            "storage_gbs",
            "layer_overhead_us",
            "tp_overhead_us",
            "tp_compute_exponent",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("compute_efficiency", "bandwidth_efficiency", "memory_utilization"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in (0, 1], got {getattr(self, name)}")
        if not self.peak_tflops or any(v <= 0 for v in self.peak_tflops.values()):
            raise ValueError("peak_tflops: needs at least one dtype, all values > 0")
        unknown = sorted(set(self.peak_tflops) - set(DTYPE_BYTES))
        if unknown:
            raise ValueError(f"peak_tflops: unknown dtype {unknown[0]!r}")
        if self.kv_memory_gb > 0 and self.kv_bandwidth_gbs <= 0:
            raise ValueError("kv_bandwidth_gbs: must be > 0 when kv_memory_gb is set")

    def flops_per_second(self, dtype: str) -> float:
        """Peak dense FLOP/s of the whole node for `dtype`; falls back to fp16, then the slowest listed."""
        tflops = self.peak_tflops.get(dtype) or self.peak_tflops.get("fp16") or min(self.peak_tflops.values())
        return tflops * 1e12 * self.accelerators

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9 * self.accelerators

    @property
    def bandwidth_bytes_per_second(self) -> float:
        return self.mem_bandwidth_gbs * 1e9 * self.accelerators

    @property
    def network_bytes_per_second(self) -> float:
        return self.network_gbps * 1e9 / 8


@dataclass(frozen=True)
class NodeCatalogFile:
    """The on-disk shape of a node catalog file."""

    node_types: tuple[NodeType, ...]
    version: int = 1


@dataclass(frozen=True)
class Catalog:
    """Immutable name → `NodeType` mapping."""

    node_types: Mapping[str, NodeType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_types", MappingProxyType(dict(self.node_types)))

    @classmethod
    def of(cls, types: Iterable[NodeType]) -> Catalog:
        items: dict[str, NodeType] = {}
        for t in types:
            if t.name in items:
                raise ValueError(f"node_types: duplicate name {t.name!r}")
            items[t.name] = t
        return cls(items)

    def __getitem__(self, name: str) -> NodeType:
        try:
            return self.node_types[name]
        except KeyError:
            known = ", ".join(sorted(self.node_types))
            raise ConfigError(f"unknown node type {name!r} (known: {known})", field="node_type") from None

    def __contains__(self, name: object) -> bool:
        return name in self.node_types

    def __iter__(self) -> Iterator[NodeType]:
        return iter(self.node_types.values())

    def __len__(self) -> int:
        return len(self.node_types)

    def names(self) -> tuple[str, ...]:
        return tuple(self.node_types)

    def subset(self, names: Iterable[str]) -> Catalog:
        return Catalog.of(self[n] for n in names)

    def merged(self, extra: Iterable[NodeType]) -> Catalog:
        """A catalog where `extra` entries add to or replace entries of the same name."""
        items = dict(self.node_types)
        items.update({t.name: t for t in extra})
        return Catalog(items)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a node catalog file (default: the shipped one). Raises ConfigError naming file and field."""
    source = str(path or SHIPPED_NODES)
    parsed = build(NodeCatalogFile, load_mapping(source), source=source)
    try:
        return Catalog.of(parsed.node_types)
    except ValueError as exc:
        raise ConfigError(str(exc), source=source) from None
