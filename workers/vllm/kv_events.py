"""vLLM's KV-cache events → heteroserve KV events, named by the cluster's block hashes.

vLLM (with `kv_events_config`) publishes batches of `BlockStored` / `BlockRemoved` /
`AllBlocksCleared` on a ZMQ PUB socket as multipart `(topic, seq: 8-byte big-endian, msgpack batch)`,
and replays missed batches from a ROUTER socket. Its block hashes are its own (a different hash
function, seed and block size), so the gateway's hashes could never match them. `BlockNamer` renames:
a stored vLLM block's token ids, cut into `hash_block_size` pieces and chained from the cluster hash
of its parent block (known from an earlier event, or the root for a first block), give the
`hashes_per_block` cluster hashes of that block; removing the vLLM block removes those. The tenant
salt, part of every cluster hash, reaches vLLM as the prompt's `cache_salt` (so vLLM keeps tenants
apart too) and comes back in the first block's `extra_keys`; later blocks inherit their parent's keys.

Ordering and replay: batches are applied in `seq` order. A gap (a batch lost by the PUB socket) is
filled from the replay endpoint; if that fails, the bridge announces `cleared` and starts over from
what vLLM stores next: the index then forgets blocks this worker still holds (a routing miss, never a
wrong token), as the native engine's stream after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cache.hashing import BlockHash, HashKeys, hash_block_tokens, root_hash
from common.errors import ConfigError

if TYPE_CHECKING:
    from workers.vllm.config import VLLMEngineConfig

log = logging.getLogger(__name__)

POOL_TIER = "device"
EventSink = Callable[[str, str, Sequence[BlockHash]], None]
"""`(kind, tier, hashes)`, as `cache.events.KVEventPublisher.publish`: must only enqueue."""
_END_SEQ = (-1).to_bytes(8, "big", signed=True)
REPLAY_TIMEOUT_MS = 2_000


class BlockNamer:
    """Maps vLLM block events to cluster block hashes and tracks which cluster blocks vLLM holds.

    Not thread-safe: one bridge task calls it. Each method returns the cluster hashes to announce.
    """

    def __init__(self, keys: HashKeys, block_size: int, hash_block_size: int) -> None:
        if block_size % hash_block_size:
            raise ValueError(f"block_size must be a multiple of hash_block_size={hash_block_size}, "
                             f"got {block_size}")
        self.keys = keys
        self.block_size = block_size
        self.hash_block_size = hash_block_size
        self._names: dict[Any, tuple[BlockHash, ...]] = {}  # vLLM hash -> its cluster hashes
        self._keys: dict[Any, HashKeys] = {}  # vLLM hash -> the keys its chain was hashed with
        self._held: set[BlockHash] = set()
        self.num_unnamed_blocks = 0  # stored blocks whose parent was never seen (cannot be named)

    def stored(self, block_hashes: Sequence[Any], parent: Any, token_ids: Sequence[int],
               block_size: int, first_extra_keys: Sequence[Any] | None = None) -> list[BlockHash]:
        """Name the vLLM blocks `block_hashes` (consecutive, holding `token_ids`, the first chained to
        `parent` or to nothing; `first_extra_keys`: vLLM's extra keys of the first block, whose string
        is the tenant salt when it starts a sequence). Raises `ConfigError` when vLLM's block size is
        not the configured one: its tokens would be cut at the wrong places, every name wrong."""
        if block_size != self.block_size:
            raise ConfigError(f"vLLM publishes blocks of {block_size} tokens but this worker was "
                              f"configured for {self.block_size}", field="block_size")
        if len(token_ids) != len(block_hashes) * block_size:
            raise ConfigError(f"BlockStored with {len(block_hashes)} blocks carries {len(token_ids)} "
                              f"token ids (expected {len(block_hashes) * block_size})", field="token_ids")
        if parent is None:
            keys = dataclasses.replace(self.keys, tenant_salt=_salt(first_extra_keys))
            chain = root_hash(keys)
        elif parent in self._names:
            keys, chain = self._keys[parent], self._names[parent][-1]
        else:
            self.num_unnamed_blocks += len(block_hashes)
            return []
        named: list[BlockHash] = []
        step = self.hash_block_size
        for i, vllm_hash in enumerate(block_hashes):
            tokens = token_ids[i * block_size:(i + 1) * block_size]
            names = []
            for start in range(0, block_size, step):
                chain = hash_block_tokens(chain, tokens[start:start + step], keys)
                names.append(chain)
            self._names[vllm_hash] = tuple(names)
            self._keys[vllm_hash] = keys
            named.extend(names)
        self._held.update(named)
        return named

    def removed(self, block_hashes: Sequence[Any]) -> list[BlockHash]:
        gone: list[BlockHash] = []
        for vllm_hash in block_hashes:
            names = self._names.pop(vllm_hash, ())
            self._keys.pop(vllm_hash, None)
            gone.extend(names)
        self._held.difference_update(gone)
        return gone

    def cleared(self) -> None:
        self._names.clear()
        self._keys.clear()
        self._held.clear()

    def match_prefix(self, hashes: Sequence[BlockHash]) -> int:
        """Leading `hashes` held now."""
        n = 0
        for h in hashes:
            if h not in self._held:
                break
            n += 1
        return n

    @property
    def num_cached_blocks(self) -> int:
        return len(self._held)


class VLLMKVEventBridge:
    """Follows one vLLM engine's ZMQ KV events, names them (`BlockNamer`) and hands them to `sink`.

    `start()` connects and announces `cleared` (a fresh engine holds nothing); `stop()` ends the task.
    """

    def __init__(self, config: VLLMEngineConfig, keys: HashKeys, sink: EventSink | None = None) -> None:
        assert config.kv_events_endpoint is not None, "bridge built without kv_events_endpoint"
        self.namer = BlockNamer(keys, config.block_size, config.hash_block_size)
        self._endpoint = connect_address(config.kv_events_endpoint)
        self._replay_endpoint = (connect_address(config.kv_events_replay_endpoint)
                                 if config.kv_events_replay_endpoint else None)
        self._sink = sink
        self._next_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._ctx: Any = None
        self.error: Exception | None = None  # the configuration error that stopped naming, if any
        self.num_batches = 0

    def match_prefix(self, hashes: Sequence[BlockHash]) -> int:
        return self.namer.match_prefix(hashes)

    @property
    def num_cached_blocks(self) -> int:
        return self.namer.num_cached_blocks

    async def start(self) -> None:
        import zmq
        import zmq.asyncio

        self._ctx = zmq.asyncio.Context()
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self._endpoint)
        self._emit("cleared", [])
        self._task = asyncio.create_task(self._follow(sub), name="vllm-kv-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    async def _follow(self, sub: Any) -> None:
        try:
            while True:
                _topic, seq_bytes, payload = await sub.recv_multipart()
                seq = int.from_bytes(seq_bytes, "big")
                if seq > self._next_seq and not await self._replay(self._next_seq, seq):
                    log.warning("vLLM KV events %d..%d lost: announcing cleared", self._next_seq, seq - 1)
                    self.namer.cleared()
                    self._emit("cleared", [])
                if seq >= self._next_seq:
                    self._apply(payload)
                    self._next_seq = seq + 1
        finally:
            sub.close(linger=0)

    async def _replay(self, start: int, stop: int) -> bool:
        """Apply the batches `start..stop-1` from the replay endpoint; False if it cannot."""
        if self._replay_endpoint is None:
            return False
        import zmq

        dealer = self._ctx.socket(zmq.DEALER)
        dealer.connect(self._replay_endpoint)
        try:
            await dealer.send_multipart((b"", start.to_bytes(8, "big")))
            while True:
                if not await dealer.poll(REPLAY_TIMEOUT_MS):
                    return False
                _empty, _topic, seq_bytes, payload = await dealer.recv_multipart()
                if seq_bytes == _END_SEQ:
                    return self._next_seq >= stop
                seq = int.from_bytes(seq_bytes, "big")
                if seq == self._next_seq and seq < stop:
                    self._apply(payload)
                    self._next_seq = seq + 1
        finally:
            dealer.close(linger=0)

    def _apply(self, payload: bytes) -> None:
        """Decode one batch and announce its events in order. A block-size mismatch stops naming
        (logged once as an error): announcing wrong names would send requests to the wrong worker."""
        import msgspec
        from vllm.distributed.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, KVEventBatch

        if self.error is not None:
            return
        try:
            batch = msgspec.msgpack.decode(payload, type=KVEventBatch)
        except msgspec.DecodeError as exc:  # a batch we cannot read names nothing; the next ones may
            log.warning("undecodable vLLM KV event batch skipped: %s", exc)
            return
        self.num_batches += 1
        for event in batch.events:
            if isinstance(event, BlockStored):
                try:
                    first_keys = event.extra_keys[0] if event.extra_keys else None
                    named = self.namer.stored(event.block_hashes, event.parent_block_hash,
                                              event.token_ids, event.block_size, first_keys)
                except ConfigError as exc:
                    self.error = exc
                    log.error("vLLM KV events refused, no longer announced: %s", exc)
                    self.namer.cleared()
                    self._emit("cleared", [])
                    return
                self._emit("stored", named)
            elif isinstance(event, BlockRemoved):
                self._emit("removed", self.namer.removed(event.block_hashes))
            elif isinstance(event, AllBlocksCleared):
                self.namer.cleared()
                self._emit("cleared", [])

    def _emit(self, kind: str, hashes: Sequence[BlockHash]) -> None:
        if self._sink is not None and (hashes or kind == "cleared"):
            self._sink(kind, POOL_TIER, hashes)


def _salt(extra_keys: Sequence[Any] | None) -> str:
    """The tenant salt among a first block's vLLM extra keys (its one string: this worker runs no LoRA
    adapters, and multimodal keys are tuples); "" when none."""
    return next((k for k in extra_keys or () if isinstance(k, str)), "")


def connect_address(endpoint: str) -> str:
    """The address a subscriber connects to for a bind `endpoint` (`tcp://*:P` → `tcp://127.0.0.1:P`)."""
    return endpoint.replace("//*:", "//127.0.0.1:")
