"""`VLLMEngine`: vLLM's AsyncLLM (v1) behind the interface the Worker servicer drives.

The servicer speaks heteroserve's engine vocabulary (`EngineRequest` in, `TokenEvent`s out,
`EngineStats`, block hashes); this class translates (workers/vllm/sampling.py) and owns the AsyncLLM,
whose engine core runs in a process vLLM spawns (so the program's entry point needs the
`if __name__ == "__main__"` guard). Building it (`from_config`) blocks for the model load, KV
profiling and warm-up (about 50 s on a small CPU host): call it in a thread.

Block vocabulary: everything this class reports is in cluster blocks of `hash_block_size` tokens
(`block_size`, `stats()`, `match_prefix`), so hashes computed by the gateway name the blocks vLLM
holds; vLLM's own pages hold `hashes_per_block` of them. Which blocks vLLM holds comes from its KV
events (`kv_events.py`), when configured; without them `match_prefix` is 0. With `cache` set, vLLM
reads and writes the KV tiers itself through the heteroserve KV connector (`connector.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from cache.hashing import BlockHash, HashKeys
from common.errors import InvalidRequestError, UnavailableError
from workers.engine.types import EngineRequest, EngineStats, KVBlock, TokenEvent
from workers.vllm.sampling import to_token_events, to_vllm_sampling
from workers.vllm.stats import EngineStatsRecorder

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from cache.events import KVEventPublisher
    from workers.engine.listeners import BlockListener
    from workers.vllm.config import VLLMEngineConfig
    from workers.vllm.kv_events import VLLMKVEventBridge
    from workers.vllm.reaper import Reaper

log = logging.getLogger(__name__)


class VLLMEngine:
    """One hosted vLLM engine. `start()` before use, `stop()` to shut the engine core down."""

    def __init__(self, llm: Any, config: VLLMEngineConfig, recorder: EngineStatsRecorder,
                 tokenizer: Tokenizer) -> None:
        self._llm = llm
        self.config = config
        self._recorder = recorder
        self.tokenizer = tokenizer
        self.model_id = config.resolved_model_id
        self.max_context_tokens = int(llm.model_config.max_model_len)
        self.max_num_seqs = config.max_num_seqs
        self.block_size = config.hash_block_size
        self._layout = config.kv_layout()
        self._running: set[str] = set()
        self._events: VLLMKVEventBridge | None = None
        self._publisher: KVEventPublisher | None = None
        self._reaper: Reaper | None = None

    @classmethod
    def from_config(cls, config: VLLMEngineConfig) -> VLLMEngine:
        """Build the AsyncLLM (blocking: loads, profiles and warms up the model)."""
        # vLLM logs to stdout by default; a worker's stdout carries only its "ready" line. Read when
        # vLLM is first imported, and inherited by the engine core it spawns.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        from tokenizers import Tokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        recorder = EngineStatsRecorder()
        args = AsyncEngineArgs(**engine_args(config))
        llm = AsyncLLM.from_engine_args(args, stat_loggers=[recorder.logger_factory()])
        return cls(llm, config, recorder, Tokenizer.from_file(str(config.model_dir / "tokenizer.json")))

    def publish_kv_events_to(self, publisher: KVEventPublisher | None) -> None:
        """Announce the named KV events through `publisher` (owned from now on: started by `start()`,
        closed by `stop()`). Call before `start()`; needs `kv_events_endpoint`."""
        if publisher is not None and self.config.kv_events_endpoint is None:
            raise ValueError("kv_events_endpoint must be set to publish vLLM's KV events")
        self._publisher = publisher

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start following vLLM's KV events (when configured) and the publisher, and a reaper of vLLM's
        engine processes (they end with this process however it ends). Idempotent."""
        if self._reaper is None:
            from workers.vllm.reaper import Reaper

            self._reaper = Reaper.for_children()
        if self.config.kv_events_endpoint is not None and self._events is None:
            from workers.vllm.kv_events import VLLMKVEventBridge

            sink = self._publisher.publish if self._publisher is not None else None
            if self._publisher is not None:
                self._publisher.start()
            self._events = VLLMKVEventBridge(self.config, self.hash_keys(), sink)
            await self._events.start()

    async def stop(self) -> None:
        """Stop the events bridge and the publisher (flushed), and shut the engine core down
        (requests in flight fail)."""
        if self._events is not None:
            await self._events.stop()
            self._events = None
        if self._publisher is not None:
            await self._publisher.aclose()
            await self._publisher.client.aclose()
            self._publisher = None
        await asyncio.to_thread(self._llm.shutdown)
        if self._reaper is not None:
            self._reaper.stop()
            self._reaper = None

    @property
    def kv_events(self) -> VLLMKVEventBridge | None:
        """The KV events bridge (None without `kv_events_endpoint`, or before `start()`)."""
        return self._events

    # ---- requests ---------------------------------------------------------------------------
    async def generate(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:
        """Stream the request's token events; the last has `finish_reason`. Raises
        `InvalidRequestError` (bad input, from the first iteration) or `UnavailableError` (the engine
        core died). Leaving early aborts the request in vLLM."""
        from vllm.inputs import TokensPrompt

        rid = request.request_id
        if rid in self._running:
            raise InvalidRequestError(f"request {rid!r} is already running", field="request_id")
        params = to_vllm_sampling(request, self.max_context_tokens)
        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        if request.tenant_salt:  # vLLM keeps tenants' prefixes apart too, and reports it in KV events
            prompt["cache_salt"] = request.tenant_salt
        self._running.add(rid)
        try:
            outputs = self._llm.generate(prompt, params, rid, priority=request.priority)
            async with contextlib.aclosing(outputs):
                first = True
                async for output in _translate_errors(outputs):
                    for event in to_token_events(rid, output, first=first):
                        first = False
                        yield event
        finally:
            self._running.discard(rid)

    async def abort(self, request_id: str) -> None:
        """Abort a request; its stream ends. Unknown ids are ignored."""
        await self._llm.abort(request_id)

    def stats(self) -> EngineStats:
        cached = self._events.num_cached_blocks if self._events is not None else 0
        return self._recorder.snapshot(self.kv_blocks_total, self.block_size, cached)

    @property
    def kv_blocks_total(self) -> int:
        """vLLM's KV pages, counted in cluster blocks."""
        pages = self._llm.vllm_config.cache_config.num_gpu_blocks or 0
        return int(pages) * self.config.hashes_per_block

    # ---- KV blocks --------------------------------------------------------------------------
    def hash_keys(self, adapter: str = "", tenant_salt: str = "") -> HashKeys:
        """The cluster's hash keys for this engine's blocks (as the native engine and the gateway)."""
        return HashKeys(self.model_id, adapter, tenant_salt, self._layout)

    def match_prefix(self, hashes: Sequence[BlockHash]) -> int:
        """Leading `hashes` vLLM holds now, per its KV events (a hint: it may change)."""
        return self._events.match_prefix(hashes) if self._events is not None else 0

    async def export_blocks(self, hashes: Sequence[BlockHash]) -> list[KVBlock]:
        """vLLM's pages cannot be read from outside its engine core: no blocks (peers then recompute
        or use the shared tier, which the KV connector fills)."""
        return []

    async def import_blocks(self, blocks: Sequence[KVBlock]) -> int:
        """Blocks reach vLLM only through its KV connector: none are imported here."""
        return 0

    def add_block_listener(self, listener: BlockListener) -> None:
        """Not supported: vLLM stores and evicts inside its engine core; what it stores reaches the
        cluster through its KV events (`publish_kv_events_to`), evicted KV through its KV connector."""
        raise NotImplementedError("the vllm engine has no block listeners; use its KV events")


async def _translate_errors(outputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """vLLM's outputs, with its errors as the domain's: validation → InvalidRequestError, a dead engine
    core → UnavailableError (retry elsewhere)."""
    from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

    try:
        async for output in outputs:
            yield output
    except EngineDeadError as exc:
        raise UnavailableError(f"vLLM engine core is dead: {exc}") from None
    except EngineGenerateError as exc:
        raise UnavailableError(f"vLLM failed the request: {exc.__cause__ or exc}") from None
    except ValueError as exc:  # vLLM's request validation (VLLMValidationError is a ValueError)
        raise InvalidRequestError(str(exc), field="prompt") from None


def engine_args(config: VLLMEngineConfig) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments for `config`. Prefix caching on (KV events and the
    connector key on it); priority scheduling (lower first, as the native engine)."""
    kwargs: dict[str, Any] = {
        "model": str(config.model_dir), "dtype": config.dtype, "block_size": config.block_size,
        "gpu_memory_utilization": config.memory_fraction, "enable_prefix_caching": True,
        "max_num_seqs": config.max_num_seqs, "max_num_batched_tokens": config.max_num_batched_tokens,
        "scheduling_policy": "priority", "disable_log_stats": False, "seed": 0,
    }
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    if config.kv_cache_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = config.kv_cache_bytes
    if config.kv_events_endpoint is not None:
        from vllm.config import KVEventsConfig

        kwargs["kv_events_config"] = KVEventsConfig(
            enable_kv_cache_events=True, publisher="zmq", endpoint=config.kv_events_endpoint,
            replay_endpoint=config.kv_events_replay_endpoint)
    if config.cache is not None:
        from vllm.config import KVTransferConfig

        from workers.vllm.connector import ConnectorSettings, connector_config

        settings = ConnectorSettings(config.resolved_model_id, config.kv_layout(), config.hash_block_size,
                                     config.cache)
        kwargs["kv_transfer_config"] = KVTransferConfig(**connector_config(settings))
    return kwargs
