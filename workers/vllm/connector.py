"""`HeteroserveConnector`: a vLLM KV connector (v1 API) on heteroserve's tiered KV store.

vLLM loads it by module path (`VLLMEngineConfig.cache`, via `connector_config()`) in two roles. Only
the scheduler side owns a store (`StoreClient`: cache/ tiers memory, Redis, disk; serde blocks with
checksums), so one process holds the tiers' state (the disk tier's index is per process): loads travel
to the worker in the step's connector metadata, saved blocks come back in its worker metadata.

Scheduler (engine-core process), per new request:
1. `get_num_new_matched_tokens`: hash the prompt in cluster blocks (`hash_block_size` tokens, the
   gateway's keys incl. the tenant salt vLLM got as `cache_salt`), skip what vLLM's own prefix cache
   holds, and read the leading run of the rest from the store (`get_prefix`: verified, so a corrupt
   block ends the run). The hit is rounded down to whole vLLM pages and leaves the prompt's last
   token to compute. Nothing found (or the store down) → 0: vLLM computes the prompt.
2. `update_state_after_alloc`: the pages vLLM allocated for the hit → load items (block bytes, page,
   offset).
3. `build_connector_meta`: the step's loads, and, for each request whose prompt completes in this
   step, store items for the prompt's full cluster blocks it computed (not the loaded ones).
Worker (model process): `start_load_kv` decodes each loaded block (checked again: a failure marks
the page, and `get_block_ids_with_load_errors` makes vLLM recompute it) and writes it into the paged
cache; `wait_for_save`, after the forward pass, reads the stored blocks out of the paged cache and encodes
them; they return with the step's output (`build_connector_worker_meta`) and the scheduler side writes
them to the store (`update_connector_output`; a failure is logged: the KV is just not shared).

Loads are synchronous (the scheduler reads the bytes, the worker writes them before the forward pass):
simple and correct; overlapping them with compute is a later optimisation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    KVConnectorWorkerMetadata,
)

from cache import serde
from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from common.errors import CorruptDataError
from workers.vllm.kv_pages import read_block, write_block
from workers.vllm.store_client import StoreClient

if TYPE_CHECKING:
    import torch

    from cache.config import CacheConfig

log = logging.getLogger(__name__)
CONNECTOR_NAME = "HeteroserveConnector"


@dataclass(frozen=True)
class ConnectorSettings:
    """What the connector needs besides vLLM's config: the cluster's hash keys and block size, and the
    store. Travels as `kv_connector_extra_config` (`to_extra` / `from_extra`)."""

    model_id: str
    layout: str
    hash_block_size: int
    cache: CacheConfig
    timeout_seconds: float = 10.0

    def keys(self, tenant_salt: str) -> HashKeys:
        return HashKeys(self.model_id, "", tenant_salt, self.layout)

    def to_extra(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "layout": self.layout, "hash_block_size": self.hash_block_size,
                "cache": _plain(dataclasses.asdict(self.cache)), "timeout_seconds": self.timeout_seconds}

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> ConnectorSettings:
        from cache.config import CacheConfig
        from common.config import build

        return cls(model_id=str(extra["model_id"]), layout=str(extra["layout"]),
                   hash_block_size=int(extra["hash_block_size"]),
                   cache=build(CacheConfig, extra["cache"], prefix="kv_connector_extra_config.cache"),
                   timeout_seconds=float(extra.get("timeout_seconds", 10.0)))


def connector_config(settings: ConnectorSettings) -> dict[str, Any]:
    """`KVTransferConfig` fields that load this connector in both roles."""
    return {"kv_connector": CONNECTOR_NAME, "kv_connector_module_path": __name__, "kv_role": "kv_both",
            "kv_connector_extra_config": settings.to_extra()}


@dataclass(frozen=True)
class LoadItem:
    block_hash: BlockHash
    payload: bytes
    page: int
    offset: int


@dataclass(frozen=True)
class StoreItem:
    block_hash: BlockHash
    token_ids: tuple[int, ...]
    page: int
    offset: int


@dataclass
class HeteroserveConnectorMetadata(KVConnectorMetadata):
    loads: list[LoadItem] = field(default_factory=list)
    stores: list[StoreItem] = field(default_factory=list)


@dataclass
class SavedBlocks(KVConnectorWorkerMetadata):
    """Encoded blocks a worker read out of its paged cache this step, for the scheduler to store."""

    items: list[tuple[BlockHash, bytes]] = field(default_factory=list)

    def aggregate(self, other: KVConnectorWorkerMetadata) -> KVConnectorWorkerMetadata:
        assert isinstance(other, SavedBlocks), "worker metadata of another connector"
        return SavedBlocks(self.items + other.items)


@dataclass
class _Tracked:
    """A request the scheduler side follows until its prompt's blocks are stored."""

    tokens: list[int]
    keys: HashKeys
    store_from: int  # tokens before this were cached (vLLM's prefix cache) or loaded
    pages: list[int] = field(default_factory=list)
    stored: bool = False


class HeteroserveConnector(KVConnectorBase_V1):
    def __init__(self, vllm_config: Any, role: KVConnectorRole, kv_cache_config: Any = None) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        self._settings = ConnectorSettings.from_extra(self._kv_transfer_config.kv_connector_extra_config)
        self._page_size = int(vllm_config.cache_config.block_size)
        if self._page_size % self._settings.hash_block_size:
            raise ValueError(f"block_size must be a multiple of hash_block_size="
                             f"{self._settings.hash_block_size}, got {self._page_size}")
        self._store = (StoreClient(self._settings.cache, self._settings.timeout_seconds)
                       if role == KVConnectorRole.SCHEDULER else None)
        self._found: dict[str, tuple[int, list[tuple[BlockHash, bytes]]]] = {}
        self._loads: list[LoadItem] = []
        self._tracked: dict[str, _Tracked] = {}
        self._layers: list[torch.Tensor] = []
        self._load_errors: set[int] = set()
        self._saved: list[tuple[BlockHash, bytes]] = []

    # ---- scheduler side -----------------------------------------------------------------------
    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int, bool]:
        hb, rid = self._settings.hash_block_size, request.request_id
        tokens = list(request.prompt_token_ids or ())
        keys = self._settings.keys(request.cache_salt or "")
        limit = (len(tokens) - 1) // self._page_size * self._page_size  # one token left to compute
        first = num_computed_tokens // hb
        assert self._store is not None, "scheduler-side call on a worker-side connector"
        payloads = self._store.get_prefix(hash_prompt_blocks(tokens[:limit], keys, hb)[first:])
        end = (first + len(payloads)) * hb // self._page_size * self._page_size
        external = max(0, end - num_computed_tokens)
        self._tracked[rid] = _Tracked(tokens, keys, store_from=num_computed_tokens + external)
        if not external:
            self._found.pop(rid, None)
            return 0, False
        hashes = hash_prompt_blocks(tokens[:end], keys, hb)[first:]
        self._found[rid] = (num_computed_tokens, list(zip(hashes, payloads, strict=False)))
        return external, False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        found = self._found.pop(request.request_id, None)
        if not num_external_tokens or found is None:
            return
        pages = blocks.get_block_ids()[0]
        start, items = found
        hb = self._settings.hash_block_size
        for i, (block_hash, payload) in enumerate(items):
            token = start + i * hb
            self._loads.append(LoadItem(block_hash, payload, pages[token // self._page_size],
                                        token % self._page_size))

    def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata:
        meta = HeteroserveConnectorMetadata(loads=self._loads)
        self._loads = []
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            tracked = self._tracked.get(new.req_id)
            if tracked is not None:
                tracked.pages = list(new.block_ids[0])
                self._store_if_done(tracked, new.num_computed_tokens + scheduled[new.req_id], meta)
        cached = scheduler_output.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            tracked = self._tracked.get(rid)
            if tracked is None or tracked.stored:
                continue
            new_pages = cached.new_block_ids[i]
            if new_pages is not None:
                resumed = rid in cached.resumed_req_ids  # after preemption: the whole list again
                tracked.pages = list(new_pages[0]) if resumed else tracked.pages + list(new_pages[0])
            self._store_if_done(tracked, cached.num_computed_tokens[i] + scheduled[rid], meta)
        for rid in scheduler_output.finished_req_ids:
            self._tracked.pop(rid, None)
        return meta

    def _store_if_done(self, tracked: _Tracked, computed: int, meta: HeteroserveConnectorMetadata) -> None:
        """Once the prompt is computed, store its full cluster blocks from `store_from` on."""
        if tracked.stored or computed < len(tracked.tokens):
            return
        tracked.stored = True
        hb = self._settings.hash_block_size
        hashes = hash_prompt_blocks(tracked.tokens, tracked.keys, hb)
        for j in range(tracked.store_from // hb, len(hashes)):
            token = j * hb
            meta.stores.append(StoreItem(hashes[j], tuple(tracked.tokens[token:token + hb]),
                                         tracked.pages[token // self._page_size], token % self._page_size))

    def update_connector_output(self, connector_output: Any) -> None:
        saved = connector_output.kv_connector_worker_meta
        if isinstance(saved, SavedBlocks) and saved.items and self._store is not None:
            self._store.put_many(saved.items)

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        self._tracked.pop(request.request_id, None)
        self._found.pop(request.request_id, None)
        return False, None

    # ---- worker side --------------------------------------------------------------------------
    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        from vllm.model_executor.models.utils import extract_layer_index

        self._layers = [kv_caches[name] for name in sorted(kv_caches, key=extract_layer_index)]

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, HeteroserveConnectorMetadata), "metadata of another connector"
        for item in meta.loads:
            try:
                block = serde.decode_block(item.payload, item.block_hash, self._settings.model_id)
                write_block(self._layers, item.page, item.offset, block.to_torch())
            except (CorruptDataError, ValueError, RuntimeError) as exc:
                log.warning("KV block not loaded (vLLM recomputes page %d): %s", item.page, exc)
                self._load_errors.add(item.page)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        return  # saved in wait_for_save, from the registered caches, once every layer is written

    def wait_for_save(self) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, HeteroserveConnectorMetadata), "metadata of another connector"
        if not meta.stores:
            return
        hb, model_id = self._settings.hash_block_size, self._settings.model_id
        self._saved += [(s.block_hash, serde.encode_block(s.block_hash, s.token_ids,
                                                          read_block(self._layers, s.page, s.offset, hb),
                                                          model_id))
                        for s in meta.stores]

    def build_connector_worker_meta(self) -> KVConnectorWorkerMetadata | None:
        if not self._saved:
            return None
        saved, self._saved = SavedBlocks(self._saved), []
        return saved

    def get_block_ids_with_load_errors(self) -> set[int]:
        errors, self._load_errors = self._load_errors, set()
        return errors

    def shutdown(self) -> None:
        if self._store is not None:
            self._store.close()


def _plain(value: Any) -> Any:
    """`value` with Paths as strings (the extra config crosses process boundaries as JSON-like data)."""
    from pathlib import Path

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
