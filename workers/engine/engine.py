"""The synchronous engine core: requests in, one scheduled step at a time, token events out.

Not thread-safe: exactly one thread (the `AsyncEngine` loop, or a test) calls it. A step = schedule
(scheduler.py) -> run the model on the scheduled chunks (runner.py) -> register newly computed full
blocks (block_manager.commit) -> sample (sampler.py) -> detokenize, check stops, emit `TokenEvent`s
(outputs.py). KV export/import and block listeners live here too because they touch the pool and the
block manager, which only this thread may touch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from pathlib import Path

import torch
from tokenizers import Tokenizer

from cache.hashing import BlockHash, HashKeys, kv_layout
from common.errors import ConfigError, InvalidRequestError, KVTransferError
from workers.devices import allocate_kv_storage, torch_device, torch_dtype
from workers.devices.csd import ChecksumError, DrivePool, open_drive_pool
from workers.engine.block_manager import BlockManager
from workers.engine.config import EngineConfig
from workers.engine.kv_pool import KVPool, KVStore, zeros_in_huge_pages
from workers.engine.listeners import BlockListener
from workers.engine.loader import load_weights, read_args
from workers.engine.model import LlamaModel
from workers.engine.outputs import RequestState
from workers.engine.runner import ModelRunner
from workers.engine.sampler import sample
from workers.engine.scheduler import ScheduledChunk, Scheduler, SchedulerConfig
from workers.engine.sequence import Sequence
from workers.engine.types import EngineRequest, EngineStats, KVBlock, TokenEvent

log = logging.getLogger(__name__)


def load_tokenizer(model_dir: Path) -> Tokenizer:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ConfigError("missing tokenizer.json", source=str(model_dir), field="model_dir")
    return Tokenizer.from_file(str(path))


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.args = read_args(config.model_dir)
        self.tokenizer = load_tokenizer(config.model_dir)
        self.device = torch_device(config.device)
        self.dtype = torch_dtype(config.device, config.dtype)
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.model = LlamaModel(self.args, load_weights(config.model_dir, self.args, self.dtype, self.device),
                                self.device)
        self.pool = self._allocate_pool()
        self.block_manager = BlockManager(self.pool.num_blocks, config.block_size,
                                          config.enable_prefix_caching, on_evict=self._on_evict)
        self.scheduler = Scheduler(SchedulerConfig(config.max_num_seqs, config.max_num_batched_tokens,
                                                   config.enable_chunked_prefill), self.block_manager)
        self.runner = ModelRunner(self.model, self.pool, self.device)
        self.model_id = config.resolved_model_id
        self._kv_layout = kv_layout(config.dtype, config.block_size, self.args.num_layers,
                                    self.args.num_kv_heads, self.args.head_dim)
        self.max_context_tokens = self.args.max_position_embeddings
        self.eos_token_ids = self.args.eos_token_ids
        self.listeners: list[BlockListener] = []
        self.requests: dict[str, RequestState] = {}
        self._arrivals = 0
        self._evicted: list[KVBlock] = []
        self._totals = {"prompt": 0, "generated": 0, "cached": 0}

    def _allocate_pool(self) -> KVStore:
        a, cfg = self.args, self.config
        per_block = KVPool.bytes_per_block(a.num_layers, a.num_kv_heads, cfg.block_size, a.head_dim,
                                           torch.empty((), dtype=self.dtype).element_size())
        num_blocks = cfg.num_kv_blocks or cfg.kv_cache_bytes // per_block
        if num_blocks < 2:
            raise ConfigError(f"{cfg.kv_cache_bytes} bytes hold {num_blocks} KV blocks of {per_block} bytes; "
                              "need at least 2", field="kv_cache_bytes")
        shape = (a.num_layers, 2, a.num_kv_heads, num_blocks, cfg.block_size, a.head_dim)
        if cfg.device == "csd":  # the pool lives on a drive process (workers/devices/csd)
            assert cfg.csd_path is not None, "EngineConfig lets device csd through without csd_path"
            return open_drive_pool(cfg.csd_path, shape, self.dtype)
        if cfg.device == "cpu":  # host RAM, in huge pages where the kernel allows (kv_pool.py says why)
            return KVPool(zeros_in_huge_pages(shape, self.dtype), cfg.block_size)
        return KVPool(allocate_kv_storage(cfg.device, shape, self.dtype, self.device), cfg.block_size)

    # ---- requests ---------------------------------------------------------------------------
    def hash_keys(self, adapter: str = "", tenant_salt: str = "") -> HashKeys:
        return HashKeys(self.model_id, adapter, tenant_salt, self._kv_layout)

    def add_request(self, request: EngineRequest) -> None:
        """Queue a request. Raises InvalidRequestError (naming the field) for what can never run."""
        prompt = request.prompt_token_ids
        if request.request_id in self.requests:
            raise InvalidRequestError(f"request {request.request_id!r} is already running",
                                      field="request_id")
        if len(prompt) >= self.max_context_tokens:
            raise InvalidRequestError(f"prompt has {len(prompt)} tokens; the context holds "
                                      f"{self.max_context_tokens} including at least one to generate",
                                      field="prompt")
        if min(prompt) < 0 or max(prompt) >= self.args.vocab_size:
            raise InvalidRequestError(f"token ids must be in [0, {self.args.vocab_size})", field="prompt")
        if len(request.block_hashes) > len(prompt) // self.config.block_size:
            raise InvalidRequestError(f"{len(request.block_hashes)} hashes for a prompt of "
                                      f"{len(prompt) // self.config.block_size} full blocks",
                                      field="block_hashes")
        needed = self.block_manager.blocks_needed(len(prompt) + 1)
        if needed > self.block_manager.num_blocks:
            if isinstance(self.pool, DrivePool):  # names the drive and counts the refusal
                raise self.pool.refuse_too_large(needed)
            raise InvalidRequestError(f"prompt needs more KV blocks than the pool's "
                                      f"{self.block_manager.num_blocks}", field="prompt")
        self._arrivals += 1
        seq = Sequence(request, self._arrivals, self.hash_keys(request.adapter, request.tenant_salt),
                       self.config.block_size)
        self.requests[request.request_id] = RequestState(seq, self.tokenizer, self.eos_token_ids,
                                                         self.max_context_tokens)
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> TokenEvent | None:
        """Stop a request now; returns its final event, or None if it is not (or no longer) known."""
        state = self.requests.pop(request_id, None)
        if state is None:
            return None
        self.scheduler.remove(state.seq)
        return TokenEvent(request_id, None, "", finish_reason="abort")

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[TokenEvent]:
        """Run one scheduled step; returns the token events it produced (at most one per request)."""
        chunks = self.scheduler.schedule()
        given_up = [self._finish_unservable(seq) for seq in self.scheduler.take_unservable()]
        if not chunks:
            return given_up
        try:
            sampled, logits = self.runner.execute(chunks)
        except ChecksumError as exc:  # nothing of the step is kept; the other sequences run again next step
            self._recompute_corrupt(exc)
            return given_up
        stored: list[BlockHash] = []
        for chunk in chunks:
            seq = chunk.seq
            if seq.num_computed_tokens < seq.num_prompt_tokens:
                self._totals["prompt"] += chunk.num_tokens
            seq.num_computed_tokens += chunk.num_tokens
            stored += self.block_manager.commit(seq)
        events = self._sample(sampled, logits) if sampled else []
        self._notify(stored)
        return given_up + events

    def _recompute_corrupt(self, error: ChecksumError) -> None:
        """A KV page on the drive failed its checksum: every running sequence holding one of its blocks is
        recomputed from its tokens, and the blocks leave the prefix cache and are erased on the drive. No
        request fails and no token is computed from the corrupt KV."""
        log.warning("KV blocks %s failed their checksum; recomputing the sequences that hold them",
                    error.block_ids)
        corrupt = set(error.block_ids)
        for seq in list(self.scheduler.running):
            if corrupt.intersection(seq.block_table):
                self.scheduler.recompute(seq)
        for block_id in corrupt:
            self.block_manager.invalidate(block_id)
        self._erase(error.block_ids)

    def _erase(self, block_ids: list[int]) -> None:
        assert isinstance(self.pool, DrivePool), "a checksum error from a KV pool that is not a drive"
        self.pool.discard(block_ids)

    def _finish_unservable(self, seq: Sequence) -> TokenEvent:
        state = self.requests.pop(seq.request_id)
        return TokenEvent(seq.request_id, None, state.detokenizer.take(final=True), finish_reason="length")

    def _sample(self, sampled: list[ScheduledChunk], logits: torch.Tensor) -> list[TokenEvent]:
        states = [self.requests[c.seq.request_id] for c in sampled]
        tokens, logprobs = sample(logits, [s.seq.request.sampling for s in states],
                                  [s.generator for s in states])
        events = []
        for row, state in enumerate(states):
            if not state.first_event_sent:
                self._totals["cached"] += state.seq.num_cached_tokens
            event = state.append(tokens[row], logprobs[row] if logprobs is not None else None)
            self._totals["generated"] += 1
            events.append(event)
            if event.finish_reason is not None:
                del self.requests[state.seq.request_id]
                self.scheduler.remove(state.seq)
        return events

    # ---- KV blocks --------------------------------------------------------------------------
    def add_block_listener(self, listener: BlockListener) -> None:
        self.listeners.append(listener)

    def _on_evict(self, block_id: int, block_hash: BlockHash, token_ids: tuple[int, ...]) -> None:
        if self.listeners:
            try:
                kv = self.pool.read_block(block_id)
            except ChecksumError as exc:  # corrupt: nothing to write back; the block is being reused
                self._erase(exc.block_ids)
                return
            self._evicted.append(KVBlock(block_hash, token_ids, kv))

    def _notify(self, stored: list[BlockHash]) -> None:
        evicted, self._evicted = self._evicted, []
        for listener in self.listeners:
            if evicted:
                listener.on_blocks_evicted(evicted)
            if stored:
                listener.on_blocks_stored(stored)

    def match_prefix(self, hashes: Seq[BlockHash]) -> int:
        return self.block_manager.match_hashes(hashes)

    def export_blocks(self, hashes: Seq[BlockHash]) -> list[KVBlock]:
        """CPU copies of the leading cached blocks of `hashes`; stops at the first one not cached."""
        out = []
        for block_hash in hashes:
            block_id = self.block_manager.lookup(block_hash)
            if block_id is None:
                break
            tokens = self.block_manager.blocks[block_id].token_ids
            try:
                kv = self.pool.read_block(block_id)
            except ChecksumError as exc:  # export what precedes it; the block is dropped and recomputed
                self._recompute_corrupt(exc)
                break
            out.append(KVBlock(block_hash, tokens, kv))
        return out

    def import_blocks(self, blocks: Seq[KVBlock]) -> int:
        """Insert blocks as cached, unreferenced prefix blocks (LRU-newest). Returns how many of the
        leading `blocks` are cached afterwards (already there or inserted); stops when the pool is full
        of referenced blocks. Raises KVTransferError for a block of the wrong shape or size."""
        count = 0
        inserted: list[BlockHash] = []
        for block in blocks:
            shape = tuple(block.kv.shape)
            if shape != self.pool.block_shape or len(block.token_ids) != self.config.block_size:
                raise KVTransferError(f"block shape {tuple(block.kv.shape)} / {len(block.token_ids)} tokens "
                                      f"does not match this pool's {self.pool.block_shape}", field="kv")
            block_id = self.block_manager.lookup(block.block_hash)
            if block_id is not None:  # already here: keep it from being evicted by the rest of the chain
                self.block_manager.touch(block_id)
            else:
                block_id = self.block_manager.insert_cached(block.block_hash, block.token_ids)
                if block_id is None:
                    break
                self.pool.write_block(block_id, block.kv)
                inserted.append(block.block_hash)
            count += 1
        self._notify(inserted)
        return count

    def stats(self) -> EngineStats:
        bm = self.block_manager
        return EngineStats(
            num_running=len(self.scheduler.running), num_waiting=len(self.scheduler.waiting),
            kv_blocks_total=bm.num_blocks, kv_blocks_free=bm.num_free_blocks,
            kv_blocks_cached=bm.num_cached_blocks, block_size=self.config.block_size,
            prompt_tokens_total=self._totals["prompt"], generated_tokens_total=self._totals["generated"],
            cached_tokens_total=self._totals["cached"], preemptions_total=self.scheduler.num_preemptions,
            held_admissions_total=self.scheduler.num_held)
