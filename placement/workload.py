"""Workload model: SLO classes, length buckets and request classes with an arrival rate.

A request class is (model, SLO class, input-length bucket, output-length bucket). Classes come from a
bucket distribution (a matrix of fractions × a total rate, as Mélange does) or from observed lengths
(a trace): rate = count / duration, representative lengths = the class's mean lengths. Lengths beyond
the last edge fall into the last bucket (`Buckets.index` clips), so every request has a class.
Class names are `"{model}/{slo}/i{i}o{j}"` — stable keys shared with the plan and the gateway.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SLOClass:
    """Latency objectives of a traffic class, in seconds. `latency_tolerant` admits CSD decode."""

    name: str
    ttft_seconds: float
    tpot_seconds: float
    latency_tolerant: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name: must be non-empty without '/', got {self.name!r}")
        if self.ttft_seconds <= 0:
            raise ValueError(f"ttft_seconds: must be > 0, got {self.ttft_seconds}")
        if self.tpot_seconds <= 0:
            raise ValueError(f"tpot_seconds: must be > 0, got {self.tpot_seconds}")


@dataclass(frozen=True)
class Buckets:
    """Input and output length bucket edges (tokens, strictly increasing, first edge usually 0)."""

    input_edges: tuple[int, ...]
    output_edges: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("input_edges", "output_edges"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)) or edges[0] < 0:
                raise ValueError(f"{name}: need >= 2 strictly increasing edges >= 0, got {list(edges)}")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.input_edges) - 1, len(self.output_edges) - 1

    @staticmethod
    def _index(edges: Sequence[int], tokens: float) -> int:
        return min(max(bisect.bisect_right(edges, tokens) - 1, 0), len(edges) - 2)

    def index(self, input_tokens: float, output_tokens: float) -> tuple[int, int]:
        """Bucket (i, j) of a request; out-of-range lengths clip to the first / last bucket."""
        return self._index(self.input_edges, input_tokens), self._index(self.output_edges, output_tokens)

    def midpoint(self, i: int, j: int) -> tuple[float, float]:
        ie, oe = self.input_edges, self.output_edges
        return (ie[i] + ie[i + 1]) / 2, max((oe[j] + oe[j + 1]) / 2, 1.0)


def class_name(model: str, slo: str, i: int, j: int) -> str:
    return f"{model}/{slo}/i{i}o{j}"


@dataclass(frozen=True)
class RequestClass:
    """Demand of one class: `rate` req/s with mean lengths `input_tokens`, `output_tokens`.

    `max_input_tokens` / `max_output_tokens` bound the KV one request of the class may hold.
    """

    name: str
    model: str
    slo: str
    bucket: tuple[int, int]
    rate: float
    input_tokens: float
    output_tokens: float
    max_input_tokens: float
    max_output_tokens: float

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate: must be >= 0, got {self.rate}")
        if self.input_tokens < 1 or self.output_tokens < 1:
            raise ValueError(f"{self.name}: mean input and output lengths must be >= 1 token")


def classes_from_distribution(
    model: str, slo: str, rate: float, weights: Sequence[Sequence[float]], buckets: Buckets
) -> tuple[RequestClass, ...]:
    """Classes of a bucket distribution (rows = input buckets).

    Mean lengths are the bucket midpoints, maximum lengths the upper edges."""
    rows, cols = buckets.shape
    if len(weights) != rows or any(len(r) != cols for r in weights):
        raise ValueError(f"weights: must be a {rows}x{cols} matrix matching the bucket edges")
    if any(w < 0 for r in weights for w in r) or sum(map(sum, weights)) <= 0:
        raise ValueError("weights: must be >= 0 with a positive sum")
    total = sum(map(sum, weights))
    out = []
    for i, j in ((i, j) for i in range(rows) for j in range(cols)):
        if weights[i][j] <= 0:
            continue
        mid_in, mid_out = buckets.midpoint(i, j)
        out.append(
            RequestClass(
                class_name(model, slo, i, j),
                model,
                slo,
                (i, j),
                rate * weights[i][j] / total,
                max(mid_in, 1.0),
                mid_out,
                buckets.input_edges[i + 1],
                buckets.output_edges[j + 1],
            )
        )
    return tuple(out)


def classes_from_lengths(
    model: str,
    slo: str,
    lengths: Iterable[tuple[int, int]],
    duration_seconds: float,
    buckets: Buckets,
    rate_scale: float = 1.0,
) -> tuple[RequestClass, ...]:
    """Classes of observed (input, output) lengths over `duration_seconds`, rate × `rate_scale`."""
    if duration_seconds <= 0:
        raise ValueError(f"duration_seconds: must be > 0, got {duration_seconds}")
    groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for inp, out in lengths:
        groups[buckets.index(inp, out)].append((inp, out))
    classes = []
    for (i, j), items in sorted(groups.items()):
        n = len(items)
        classes.append(
            RequestClass(
                class_name(model, slo, i, j),
                model,
                slo,
                (i, j),
                n / duration_seconds * rate_scale,
                max(sum(a for a, _ in items) / n, 1.0),
                max(sum(b for _, b in items) / n, 1.0),
                float(max(a for a, _ in items)),
                float(max(b for _, b in items)),
            )
        )
    return tuple(classes)
