"""What `heteroserve profile` measures: the grid of prompt lengths, batches and contexts.

`ProfileGrid()` is the full grid of `heteroserve profile`; `FIRST_START_GRID` the small one the
embedded cluster measures on its first start (2 prompt lengths × 2 batches per prefill role,
2 contexts × 2 batches per decode role, 2 transfer sizes per path: 8 + 4 + 4 points and
4 transfers; each step point the median of 3 runs, implausible ones measured again (`points.py`),
each transfer the fastest of 3: about 45-70 s on a 2-core machine with the tiny model, about 15 s of
it starting the workers).
The compile step fits step times through these points (`placement.perf.steps`) and extrapolates
linearly beyond them, so the grid should span the lengths the cluster will serve.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.profiler.points import Robustness


@dataclass(frozen=True)
class ProfileGrid:
    """Token counts and batch sizes measured; `output_tokens` per decode measurement."""

    input_tokens: tuple[int, ...] = (64, 256, 1024)
    prefill_batches: tuple[int, ...] = (1, 4, 8)
    context_tokens: tuple[int, ...] = (128, 512, 1024)
    decode_batches: tuple[int, ...] = (1, 4, 8)
    output_tokens: int = 32
    transfer_tokens: tuple[int, ...] = (64, 1024)
    repeats: int = 3  # runs per point, the median kept (`points.py`)
    retries: int = 2  # rounds of re-measuring implausible points
    tolerance: float = 0.2  # noise the plausibility checks allow
    vocab_size: int = 256
    seed: int = 0
    # the cost of waking an idle worker (`measure.wake_cost`): lone requests of `wake_input_tokens`
    # and `output_tokens` after `wake_idle_seconds` idle against back to back, `wake_samples` pairs
    # (0: not measured)
    wake_input_tokens: int = 256
    wake_idle_seconds: float = 0.1
    wake_samples: int = 8

    def __post_init__(self) -> None:
        for name in ("input_tokens", "prefill_batches", "context_tokens", "decode_batches",
                     "transfer_tokens"):
            values = getattr(self, name)
            if not values or any(v < 1 for v in values):
                raise ValueError(f"{name}: needs at least one value, all >= 1, got {values}")
        if min(self.transfer_tokens) < 16:
            raise ValueError(f"transfer_tokens: each >= 16 (one KV block), got {self.transfer_tokens}")
        if self.output_tokens < 4:
            raise ValueError(f"output_tokens: must be >= 4 (TPOT needs tokens after the first), "
                             f"got {self.output_tokens}")
        Robustness(self.repeats, self.retries, self.tolerance)  # raises naming the field
        if self.wake_input_tokens < 1 or self.wake_idle_seconds <= 0 or self.wake_samples < 0:
            raise ValueError(f"wake_*: input tokens >= 1, idle seconds > 0, samples >= 0, got "
                             f"{self.wake_input_tokens}, {self.wake_idle_seconds}, {self.wake_samples}")
        if self.vocab_size <= 10:
            raise ValueError(f"vocab_size: must be > 10, got {self.vocab_size}")

    @property
    def robustness(self) -> Robustness:
        return Robustness(self.repeats, self.retries, self.tolerance)


FIRST_START_GRID = ProfileGrid(input_tokens=(64, 512), prefill_batches=(1, 4), context_tokens=(128, 512),
                               decode_batches=(1, 4), output_tokens=24, transfer_tokens=(64, 512), repeats=3)
