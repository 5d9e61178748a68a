"""Request traces: arrival times and lengths, read from the public trace formats.

Formats (detected by extension and header): Azure LLM inference CSV (`TIMESTAMP,ContextTokens,
GeneratedTokens`, timestamps as datetimes), Mooncake JSONL (`timestamp` ms, `input_length`,
`output_length`), and headerless `input_len,output_len` CSV (arrivals then come from a seeded Poisson
process at `rate`). Times are seconds from the first arrival. This module does file I/O: call it at the
edge and pass the `Trace` in.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common.errors import ConfigError


@dataclass(frozen=True)
class Trace:
    """Parallel tuples: arrival seconds (non-decreasing from 0), input tokens, output tokens."""

    arrivals: tuple[float, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.arrivals) == len(self.input_tokens) == len(self.output_tokens):
            raise ValueError("arrivals, input_tokens and output_tokens must have equal lengths")

    def __len__(self) -> int:
        return len(self.arrivals)

    @property
    def duration_seconds(self) -> float:
        return max(self.arrivals[-1] - self.arrivals[0], 1e-9) if self.arrivals else 0.0

    def head(self, num_requests: int) -> Trace:
        return Trace(
            self.arrivals[:num_requests], self.input_tokens[:num_requests], self.output_tokens[:num_requests]
        )

    def scaled(self, time_factor: float) -> Trace:
        """Arrivals compressed by `time_factor` (2.0 = twice the rate); lengths unchanged."""
        return Trace(tuple(a / time_factor for a in self.arrivals), self.input_tokens, self.output_tokens)


def _from_rows(rows: list[tuple[float, int, int]]) -> Trace:
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0] if rows else 0.0
    return Trace(
        tuple(r[0] - t0 for r in rows), tuple(max(r[1], 1) for r in rows), tuple(max(r[2], 1) for r in rows)
    )


def load_trace(path: str | Path, *, rate: float = 1.0, seed: int = 0) -> Trace:
    """Read a trace file; raises ConfigError naming the file on a format problem."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read trace ({exc.strerror})", source=source) from None
    try:
        if source.endswith(".jsonl"):
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
            return _from_rows(
                [
                    (float(d["timestamp"]) / 1e3, int(d["input_length"]), int(d["output_length"]))
                    for d in items
                ]
            )
        lines = list(csv.reader(text.splitlines()))
        if lines and lines[0] and lines[0][0].strip().upper() == "TIMESTAMP":
            return _from_rows([(_seconds(r[0]), int(r[1]), int(r[2])) for r in lines[1:] if r])
        rng = random.Random(seed)
        t, rows = 0.0, []
        for r in lines:
            if r:
                t += rng.expovariate(rate)
                rows.append((t, int(float(r[0])), int(float(r[1]))))
        return _from_rows(rows)
    except (KeyError, ValueError, IndexError) as exc:
        raise ConfigError(f"unrecognised trace format ({type(exc).__name__}: {exc})", source=source) from None


def _seconds(stamp: str) -> float:
    text = stamp.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if "." in text:  # Azure stamps carry 7 fractional digits; datetime takes at most 6
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).timestamp()


def with_poisson_arrivals(trace: Trace, rate: float, seed: int = 0) -> Trace:
    """The same lengths, with arrivals re-drawn from a seeded Poisson process at `rate` req/s."""
    if rate <= 0:
        raise ValueError(f"rate: must be > 0, got {rate}")
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(len(trace)):
        arrivals.append(t)
        t += rng.expovariate(rate)
    return Trace(tuple(arrivals), trace.input_tokens, trace.output_tokens)
