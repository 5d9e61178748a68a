"""Profile one worker over a grid of (input, output) length buckets and write a Mélange-format file.

The file is `{"gpu_info": {NODE_TYPE: {"cost": $/h, "tputs": [[req/s per output bucket] per input
bucket]}}, ...metadata}`: exactly what `placement.melange.load_profiles` reads, so a measured profile
replaces a modelled one with no conversion. Each bucket is measured at its representative lengths
(the geometric mean of its edges, at least 1 token).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

from control_plane.profiler.load import LoadSpec, run_load
from control_plane.profiler.search import PERCENTILE, SLO, Probe, SearchOptions, max_rate_within_slo
from workerrpc.client import WorkerClient


@dataclass(frozen=True)
class ProfileConfig:
    node_type: str
    cost_per_hour: float
    slo: SLO
    input_edges: tuple[int, ...] = (0, 64, 256, 1024)
    output_edges: tuple[int, ...] = (0, 32, 128)
    probe_seconds: float = 5.0
    search: SearchOptions = field(default_factory=SearchOptions)
    vocab_size: int = 256

    def __post_init__(self) -> None:
        if self.cost_per_hour <= 0:
            raise ValueError(f"cost_per_hour must be > 0, got {self.cost_per_hour}")
        for name in ("input_edges", "output_edges"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)) or edges[0] < 0:
                raise ValueError(f"{name} must be >= 2 increasing non-negative edges, got {edges}")


def representative(low: int, high: int) -> int:
    """The length that stands for bucket (low, high]: geometric mean, at least 1 token."""
    return max(1, round(math.sqrt(max(low, 1) * high)))


@dataclass(frozen=True)
class BucketResult:
    input_tokens: int
    output_tokens: int
    rate: float
    probes: tuple[Probe, ...]


ProgressFn = Callable[[str], None]


async def profile_worker(client: WorkerClient, config: ProfileConfig,
                         progress: ProgressFn | None = None) -> list[list[BucketResult]]:
    """Measure every bucket; rows are input buckets, columns output buckets."""
    grid: list[list[BucketResult]] = []
    for i_low, i_high in pairwise(config.input_edges):
        row = []
        for o_low, o_high in pairwise(config.output_edges):
            in_tokens, out_tokens = representative(i_low, i_high), representative(o_low, o_high)

            async def probe(rate: float, in_tokens: int = in_tokens, out_tokens: int = out_tokens) -> Probe:
                spec = LoadSpec(rate=rate, input_tokens=in_tokens, output_tokens=out_tokens,
                                duration_seconds=config.probe_seconds, vocab_size=config.vocab_size)
                result = await run_load(client, spec)
                ttft, tpot = result.percentile("ttft", PERCENTILE), result.percentile("tpot", PERCENTILE)
                met = (result.failed == 0 and ttft <= config.slo.ttft_seconds
                       and tpot <= config.slo.tpot_seconds)
                if progress:
                    progress(f"in={in_tokens} out={out_tokens} rate={rate:.3g}/s "
                             f"ttft_p90={ttft * 1e3:.0f}ms tpot_p90={tpot * 1e3:.1f}ms "
                             f"{'meets' if met else 'misses'} the SLO")
                return Probe(rate, met, ttft, tpot, result.failed)

            rate, probes = await max_rate_within_slo(probe, config.search)
            row.append(BucketResult(in_tokens, out_tokens, rate, tuple(probes)))
        grid.append(row)
    return grid


def profile_document(config: ProfileConfig, grid: Sequence[Sequence[BucketResult]],
                     model: str, worker: str) -> dict[str, object]:
    return {
        "gpu_info": {config.node_type: {
            "cost": config.cost_per_hour,
            "tputs": [[round(cell.rate, 4) for cell in row] for row in grid],
        }},
        "input_edges": list(config.input_edges),
        "output_edges": list(config.output_edges),
        "slo": asdict(config.slo),
        "percentile": round(PERCENTILE * 100, 6),  # in percent, as the files have always stated it
        "model": model,
        "worker": worker,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_profile(path: Path, document: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
