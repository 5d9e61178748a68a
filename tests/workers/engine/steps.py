"""Driving a `Scheduler` by hand in tests: apply a scheduled step the way the engine does."""

from __future__ import annotations

from workers.engine.scheduler import ScheduledChunk, Scheduler
from workers.engine.sequence import Sequence


def apply_step(sched: Scheduler, chunks: list[ScheduledChunk], *, finish: bool = True) -> list[Sequence]:
    """Advance each chunk's computed tokens, register its full blocks, 'sample' token 5 where the chunk
    samples; with `finish`, remove and return the sequences that reached their max_tokens."""
    finished = []
    for chunk in chunks:
        samples = chunk.samples
        chunk.seq.num_computed_tokens += chunk.num_tokens
        sched.block_manager.commit(chunk.seq)
        if samples:
            chunk.seq.token_ids.append(5)
            if finish and chunk.seq.num_generated >= chunk.seq.request.sampling.max_tokens:
                finished.append(chunk.seq)
    for seq in finished:
        sched.remove(seq)
    return finished
