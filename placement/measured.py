"""Measured colocated rates (Mélange's profile format) used in place of the roofline's.

A Mélange profile gives, per GPU type, the highest request rate one instance sustains for requests of
input bucket i and output bucket j under the SLO it was profiled with. `MeasuredTable.capacity` looks a
class up by its mean lengths in the table's own bucket edges (clipped to the first / last bucket); a
node type absent from the table, or a zero entry, gives no colocated option ("measured" reason).
P/D options of such a model still come from the roofline: Mélange profiles only colocated serving.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from common.vocab import LENGTH_BUCKET_EDGES
from placement.melange import MelangeProfiles
from placement.profiles import Capacity
from placement.workload import RequestClass


@dataclass(frozen=True)
class MeasuredTable:
    """node type → rates[i][j] (req/s per instance) over `input_edges` × `output_edges` (tokens)."""

    rates: Mapping[str, tuple[tuple[float, ...], ...]]
    input_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES
    output_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES
    source: str = field(default="measured")

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))
        shape = (len(self.input_edges) - 1, len(self.output_edges) - 1)
        for name, table in self.rates.items():
            if len(table) != shape[0] or any(len(row) != shape[1] for row in table):
                raise ValueError(f"{name}: rates must be a {shape[0]}x{shape[1]} table matching the edges")

    @staticmethod
    def _index(edges: tuple[int, ...], tokens: float) -> int:
        return min(max(bisect.bisect_right(edges, tokens) - 1, 0), len(edges) - 2)

    def capacity(self, node_type: str, cls: RequestClass) -> Capacity:
        if node_type not in self.rates:
            return Capacity(0.0, "measured", f"{self.source} has no profile for {node_type}")
        i = self._index(self.input_edges, cls.input_tokens)
        j = self._index(self.output_edges, cls.output_tokens)
        rate = self.rates[node_type][i][j]
        if rate <= 0:
            return Capacity(
                0.0, "measured", f"{self.source}: {node_type} sustains 0 req/s in bucket ({i}, {j})"
            )
        return Capacity(rate)


def from_melange(
    profiles: MelangeProfiles,
    names: Mapping[str, str] | None = None,
    input_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES,
    output_edges: tuple[int, ...] = LENGTH_BUCKET_EDGES,
    source: str = "measured",
) -> MeasuredTable:
    """A table from Mélange profiles; `names` maps the file's GPU names to catalog node types."""
    names = names or {}
    return MeasuredTable(
        {names.get(gpu, gpu): table for gpu, table in profiles.tputs.items()},
        input_edges,
        output_edges,
        source,
    )
