"""Continuous batching with chunked prefill under a per-step token budget; priorities, then FCFS.

Each step, with a budget of `max_num_batched_tokens` tokens:
1. Running sequences, best first by (priority, arrival), each get what they still need: one token for
   a decode, the next chunk (up to the remaining budget) for a prefill in progress. Decodes therefore
   never wait behind a long prompt. A sequence that needs a new block when none is free preempts the
   worst running sequence not yet scheduled this step (lowest priority, newest), or itself if it is
   the worst: its blocks are freed and it goes back to the waiting queue to be recomputed (its
   registered blocks usually survive in the prefix cache, so recompute is cheap).
2. Then waiting sequences, best first, while budget, `max_num_seqs` and free blocks allow: the cached
   prefix is reused and the rest is scheduled, chunked to the budget (or whole when chunked prefill is
   off: a prompt larger than the budget then runs alone). Nothing is admitted in a step that preempted.
   Hold-back (in-flight prefix awareness, inflight.py): a waiting sequence whose next uncached block is
   still being computed by a running prefill (its holder, possibly admitted earlier in this same round)
   is skipped this step and keeps its place; the sequences behind it are considered in order as usual.
   Invariant: a held sequence waits at most ceil(R / max_num_batched_tokens) + 1 steps from its first
   hold, R = its holder's prompt tokens still to compute then; after that it is admitted like any other
   (recomputing what is still missing). It is released earlier as soon as no running prefill holds its
   next block: the holder registered it, or finished, was aborted, preempted or failed (all of which
   take it out of `running`). A holder is always scheduled before any waiting sequence, so it advances.
3. A sequence that cannot fit in the whole pool even alone (it would preempt itself forever) is taken
   out and listed in `unservable`; the engine ends it with finish reason "length".
The scheduler decides; it never touches block internals (it calls the block manager's paired verbs).
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

from workers.engine.block_manager import BlockManager, ReusablePrefix
from workers.engine.inflight import InFlightPrefixes
from workers.engine.sequence import Sequence, SequenceStatus

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    enable_chunked_prefill: bool = True


@dataclass(frozen=True)
class ScheduledChunk:
    """Compute KV for tokens [seq.num_computed_tokens, + num_tokens) of `seq` this step."""

    seq: Sequence
    num_tokens: int

    @property
    def samples(self) -> bool:
        """True when the chunk reaches the sequence's last token (its logits give the next token)."""
        return self.seq.num_computed_tokens + self.num_tokens == self.seq.num_tokens


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.waiting: list[tuple[tuple[int, int], Sequence]] = []
        self.running: list[Sequence] = []
        self.unservable: list[Sequence] = []
        self.num_preemptions = 0
        self.num_held = 0  # sequences held back at least once for an in-flight prefix (one per hold-back)
        self._num_steps = 0
        self._hold_deadlines: dict[Sequence, int] = {}  # held sequence → last step it may still be held

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        heapq.heappush(self.waiting, (seq.priority_key, seq))

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Drop a finished or aborted sequence wherever it is, freeing its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            self.waiting = [(key, s) for key, s in self.waiting if s is not seq]
            heapq.heapify(self.waiting)
        self._hold_deadlines.pop(seq, None)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED

    def schedule(self) -> list[ScheduledChunk]:
        self._num_steps += 1
        budget = self.config.max_num_batched_tokens
        scheduled: list[ScheduledChunk] = []
        preemptions_before = self.num_preemptions
        self.running.sort(key=lambda s: s.priority_key)
        for seq in list(self.running):
            if seq.status is not SequenceStatus.RUNNING or budget == 0:
                continue
            num_tokens = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if not self._make_room(seq, num_tokens, scheduled):
                continue
            self.block_manager.append_slots(seq, num_tokens)
            scheduled.append(ScheduledChunk(seq, num_tokens))
            budget -= num_tokens
        if self.num_preemptions == preemptions_before:
            self._admit(budget, scheduled)
        return scheduled

    def _make_room(self, seq: Sequence, num_tokens: int, scheduled: list[ScheduledChunk]) -> bool:
        """Preempt until `seq` can grow by `num_tokens`; False if `seq` itself was preempted."""
        done = {id(c.seq) for c in scheduled}
        while not self.block_manager.can_append(seq, num_tokens):
            candidates = [s for s in self.running if id(s) not in done]
            victim = max(candidates, key=lambda s: s.priority_key)
            if victim is seq and len(self.running) == 1:
                self._give_up(seq)
                return False
            self._preempt(victim)
            if victim is seq:
                return False
        return True

    def _give_up(self, seq: Sequence) -> None:
        self.remove(seq)
        self.unservable.append(seq)

    def take_unservable(self) -> list[Sequence]:
        """Sequences removed because they cannot fit in the pool (the caller finishes them)."""
        taken, self.unservable = self.unservable, []
        return taken

    def recompute(self, seq: Sequence) -> None:
        """Send a running sequence back to be recomputed from its tokens (its blocks are freed), e.g.
        because some of its KV was found corrupt. Counts as a preemption."""
        self._preempt(seq)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.num_computed_tokens = 0
        self.num_preemptions += 1
        self.add(seq)

    def _admit(self, budget: int, scheduled: list[ScheduledChunk]) -> None:
        bm, cfg = self.block_manager, self.config
        if not self.waiting:
            return
        inflight = InFlightPrefixes(bm.block_size)
        if bm.enable_prefix_caching:
            for running in self.running:
                inflight.add(running)
        held: list[tuple[tuple[int, int], Sequence]] = []
        while self.waiting and budget > 0 and len(self.running) < cfg.max_num_seqs:
            seq = self.waiting[0][1]
            match = bm.match(seq)
            if self._holds(seq, match, inflight):
                held.append(heapq.heappop(self.waiting))
                continue
            remaining = seq.num_tokens - match.num_tokens
            if cfg.enable_chunked_prefill:
                num_tokens = min(remaining, budget)
            elif remaining <= budget or not scheduled:
                num_tokens = remaining
            else:
                break
            if not bm.can_allocate(match, num_tokens):
                if not self.running and not scheduled and bm.num_free_blocks == bm.num_blocks:
                    heapq.heappop(self.waiting)
                    self._give_up(seq)
                    continue
                break
            heapq.heappop(self.waiting)
            self._hold_deadlines.pop(seq, None)
            bm.allocate(seq, match, num_tokens)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            scheduled.append(ScheduledChunk(seq, num_tokens))
            budget -= num_tokens
            if bm.enable_prefix_caching:
                inflight.add(seq)
        for entry in held:  # they keep their place in the queue
            heapq.heappush(self.waiting, entry)

    def _holds(self, seq: Sequence, match: ReusablePrefix, inflight: InFlightPrefixes) -> bool:
        """Whether to hold `seq` back this step because a running prefill is computing its next block
        (see the module docstring for the bound). The first hold starts the sequence's deadline."""
        holder = inflight.holder(seq, len(match.block_ids))
        if holder is None:
            return False
        deadline = self._hold_deadlines.get(seq)
        if deadline is None:
            remaining = holder.num_prompt_tokens - holder.num_computed_tokens
            deadline = self._num_steps + -(-remaining // self.config.max_num_batched_tokens)
            self._hold_deadlines[seq] = deadline
            self.num_held += 1
            log.debug("holding %s until %s's prefix blocks are registered (at most until step %d)",
                      seq.request_id, holder.request_id, deadline)
        return self._num_steps <= deadline
