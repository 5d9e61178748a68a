"""One simulated instance: continuous batching with the roofline's step times, or measured ones
(`steps`: a `placement.perf.steps.StepTimes`, e.g. `MeasuredSteps.fit(profile, role)`).

Scheduling per iteration (vLLM-style, prefill first, no preemption):
- if requests wait and their KV (input + output tokens, reserved up front) fits, prefill a batch of
  them up to `chunk_tokens` prompt tokens (at least one request): `prefill_seconds(mean input, k)`;
- otherwise run one decode step for all running sequences: `decode_step_seconds(B, mean context)`.
With `step_budget` > 0 (the engine's per-step token budget, `max_num_batched_tokens`; the native
engine's scheduler), an iteration is instead decode-first and mixed: every running sequence decodes one
token, and the rest of the budget goes to prompt chunks, first of prompts already being prefilled, then
of newly admitted ones (FCFS, KV reserved up front, the last chunk cut to the budget), a long prompt
spanning several iterations. Its time is `decode_step_seconds(B, mean context)` (when B > 0) plus
`prefill_seconds(mean chunk, k)` (when k chunks run). A waiting queue then never stalls the decodes for
more than one budget's worth of prompt tokens, where the prefill-first model runs up to `chunk_tokens`.
Roles: colocated does both; prefill does only prefill and hands finished prompts to `on_prefilled`;
decode admits handed-over sequences (already holding their first token, queue `waiting`) and decodes;
it prefills only the requests sent to it alone (queue `local`: a P/D route's prompt too short to be
worth a transfer, which the gateway serves on the decode worker by itself).
Running sequences live in a heap keyed by the step at which they finish, and the context sum is kept
incrementally, so a decode step costs O(log B), not O(B).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from placement.catalog import NodeType
from placement.models import ModelSpec
from placement.perf.roofline import decode_step_seconds, kv_capacity_tokens, prefill_seconds
from placement.perf.steps import StepTimes


@dataclass
class RequestState:
    """Mutable per-request state of one simulation run (times in seconds)."""

    rid: int
    arrival: float
    input_tokens: int
    output_tokens: int
    ttft_slo: float
    tpot_slo: float
    first_token: float | None = None
    finish: float | None = None
    route: str = ""
    prefilled: int = 0  # prompt tokens computed so far (step-budget mode)


@dataclass
class Instance:
    pool: str
    role: str
    node: NodeType
    model: ModelSpec
    chunk_tokens: int
    max_batch: int
    on_prefilled: Callable[[Instance, RequestState, float], None] | None = None
    waiting: deque[RequestState] = field(default_factory=deque)
    local: deque[RequestState] = field(default_factory=deque)  # decode role: prefilled here, alone
    # (end step, rid, base, request)
    running: list[tuple[int, int, int, RequestState]] = field(default_factory=list)
    busy: bool = False
    inflight: int = 0
    busy_seconds: float = 0.0
    steps: int = 0
    context_base: int = 0
    reserved_tokens: int = 0
    _batch: list[RequestState] = field(default_factory=list)
    _kind: str = ""
    steps_model: StepTimes | None = None  # measured step times; None = the roofline
    idle_since: float = float("-inf")  # when the instance last found nothing to do; inf = working
    warm_until: float = float("-inf")  # decode steps before this run slower (woken from idle)
    step_budget: int = 0  # tokens per mixed iteration; 0 = prefill-first (module docstring)
    _prefilling: list[RequestState] = field(default_factory=list)  # admitted, prompt not done
    _chunks: list[tuple[RequestState, int]] = field(default_factory=list)  # this iteration's
    _decoded: bool = False  # this mixed iteration decoded the running sequences

    def __post_init__(self) -> None:
        self.kv_tokens = (self.steps_model.kv_capacity_tokens() if self.steps_model is not None
                          else kv_capacity_tokens(self.model, self.node))

    def _prefill_seconds(self, prompt: float, batch: int) -> float:
        if self.steps_model is not None:
            return self.steps_model.prefill_seconds(prompt, batch)
        return prefill_seconds(self.model, self.node, prompt, batch)

    def _decode_seconds(self, batch: int, context: float) -> float:
        if self.steps_model is not None:
            return self.steps_model.decode_step_seconds(batch, context)
        return decode_step_seconds(self.model, self.node, batch, context)

    @property
    def decoding(self) -> bool:
        """The iteration under way (or last) is a decode step."""
        return self._kind == "decode"

    @property
    def load(self) -> int:
        return (len(self.waiting) + len(self.local) + len(self.running) + len(self._batch)
                + len(self._prefilling) + self.inflight)

    def start(self) -> float | None:
        """Begin the next iteration; returns its duration, or None when there is nothing to do."""
        if self.step_budget:
            return self._start_mixed()
        to_prefill = self.local if self.role == "decode" else self.waiting
        if to_prefill and self._admit_prefill(to_prefill):
            prompt = sum(r.input_tokens for r in self._batch) / len(self._batch)
            self._kind = "prefill"
            return self._run(self._prefill_seconds(prompt, len(self._batch)))
        if self.role == "decode":
            self._admit_decode()
        if self.running:
            batch = len(self.running)
            context = (self.context_base + batch * self.steps) / batch
            self._kind = "decode"
            return self._run(self._decode_seconds(batch, context))
        return None

    def _start_mixed(self) -> float | None:
        if self.role == "decode":
            self._admit_decode()
        left = self.step_budget - len(self.running)
        for r in self._prefilling:
            if left <= 0:
                break
            take = min(r.input_tokens - r.prefilled, left)
            self._chunks.append((r, take))
            left -= take
        queue = self.local if self.role == "decode" else self.waiting
        while (queue and left > 0 and self._fits(queue[0])
               and len(self.running) + len(self._prefilling) < self.max_batch):
            r = queue.popleft()
            self.reserved_tokens += r.input_tokens + r.output_tokens
            self._prefilling.append(r)
            take = min(r.input_tokens, left)
            self._chunks.append((r, take))
            left -= take
        seconds = 0.0
        self._decoded = bool(self.running)
        if self.running:
            batch = len(self.running)
            seconds += self._decode_seconds(batch, (self.context_base + batch * self.steps) / batch)
        if self._chunks:
            seconds += self._prefill_seconds(sum(t for _, t in self._chunks) / len(self._chunks),
                                             len(self._chunks))
        if not seconds:
            return None
        self._kind = "decode" if self._decoded else "prefill"
        return self._run(seconds)

    def _finish_mixed(self, now: float) -> list[RequestState]:
        done = self._finish_decode(now) if self._decoded else []
        chunks, self._chunks = self._chunks, []
        for r, take in chunks:
            r.prefilled += take
            if r.prefilled >= r.input_tokens:
                self._prefilling.remove(r)
                self._prefilled_one(r, now, done)
        return done

    def _prefilled_one(self, r: RequestState, now: float, done: list[RequestState]) -> None:
        """`r`'s prompt is computed: hand it off (prefill role) or give it its first token."""
        if self.role == "prefill":
            self._release(r)
            assert self.on_prefilled is not None, "prefill instance without a hand-off"
            self.on_prefilled(self, r, now)
            return
        r.first_token = now
        self._join(r, generated=1)
        if r.output_tokens <= 1:
            r.finish = now
            done.append(r)

    def _run(self, seconds: float) -> float:
        self.busy = True
        self.busy_seconds += seconds
        return seconds

    def _fits(self, r: RequestState) -> bool:
        return self.reserved_tokens + r.input_tokens + r.output_tokens <= self.kv_tokens

    def _admit_prefill(self, queue: deque[RequestState]) -> bool:
        tokens = 0
        while queue and len(self.running) + len(self._batch) < self.max_batch:
            r = queue[0]
            if (self._batch and tokens + r.input_tokens > self.chunk_tokens) or not self._fits(r):
                break
            queue.popleft()
            self._batch.append(r)
            tokens += r.input_tokens
            self.reserved_tokens += r.input_tokens + r.output_tokens
        return bool(self._batch)

    def _admit_decode(self) -> None:
        while self.waiting and len(self.running) < self.max_batch and self._fits(self.waiting[0]):
            r = self.waiting.popleft()
            self.reserved_tokens += r.input_tokens + r.output_tokens
            self._join(r, generated=1)

    def _join(self, r: RequestState, generated: int) -> None:
        remaining = r.output_tokens - generated
        if remaining <= 0:
            self._release(r)
            return
        # context at step k is input + generated + (k − join step): keep Σ(input + generated − join step)
        base = r.input_tokens + generated - self.steps
        heapq.heappush(self.running, (self.steps + remaining, r.rid, base, r))
        self.context_base += base

    def _release(self, r: RequestState) -> None:
        self.reserved_tokens -= r.input_tokens + r.output_tokens

    def finish(self, now: float) -> list[RequestState]:
        """End the current iteration at `now`; returns requests completed by it."""
        self.busy = False
        if self.step_budget:
            return self._finish_mixed(now)
        done: list[RequestState] = []
        if self._kind == "prefill":
            batch, self._batch = self._batch, []
            for r in batch:
                self._prefilled_one(r, now, done)
            return done
        return self._finish_decode(now)

    def _finish_decode(self, now: float) -> list[RequestState]:
        done: list[RequestState] = []
        self.steps += 1
        while self.running and self.running[0][0] <= self.steps:
            _, _, base, r = heapq.heappop(self.running)
            self.context_base -= base
            r.finish = now
            self._release(r)
            done.append(r)
        return done
