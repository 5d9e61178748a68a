"""What the hosted vLLM engine did, as the worker's `EngineStats`.

vLLM reports scheduler and iteration statistics to stat loggers in the front-end process after each
engine step. `EngineStatsRecorder` is one such logger (installed through AsyncLLM's `stat_loggers`):
it keeps the latest scheduler gauges and sums the token counters, and `snapshot()` turns them into
`EngineStats`. Token totals count what vLLM reports: `prompt_tokens_total` every prompt token,
`cached_tokens_total` those served from its prefix cache or a KV connector.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.engine.types import EngineStats

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class _Totals:
    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    preemptions: int = 0


class EngineStatsRecorder:
    """Collects vLLM's stats; thread-safe (vLLM records on the event loop, readers may be anywhere)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = _Totals()

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        with self._lock:
            t = self._totals
            if scheduler_stats is not None:
                t.num_running = int(scheduler_stats.num_running_reqs)
                t.num_waiting = int(scheduler_stats.num_waiting_reqs)
                t.kv_cache_usage = float(scheduler_stats.kv_cache_usage)
            if iteration_stats is not None:
                prompt = iteration_stats.prompt_token_stats
                t.prompt_tokens += int(prompt.total)
                t.cached_tokens += int(prompt.cached_tokens)
                t.generated_tokens += int(iteration_stats.num_generation_tokens)
                t.preemptions += int(iteration_stats.num_preempted_reqs)

    def snapshot(self, kv_blocks_total: int, block_size: int, kv_blocks_cached: int) -> EngineStats:
        """`EngineStats` now; blocks are vLLM's (`block_size` tokens each)."""
        with self._lock:
            t = self._totals
            used = round(t.kv_cache_usage * kv_blocks_total)
            return EngineStats(
                num_running=t.num_running, num_waiting=t.num_waiting, kv_blocks_total=kv_blocks_total,
                kv_blocks_free=max(0, kv_blocks_total - used), kv_blocks_cached=kv_blocks_cached,
                block_size=block_size, prompt_tokens_total=t.prompt_tokens,
                generated_tokens_total=t.generated_tokens, cached_tokens_total=t.cached_tokens,
                preemptions_total=t.preemptions)

    def logger_factory(self) -> Callable[[Any, int], Any]:
        """A vLLM `StatLoggerFactory` whose loggers feed this recorder."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        recorder = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
                       engine_idx: int = 0) -> None:
                recorder.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

        return _Logger
