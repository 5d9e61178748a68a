"""`fetch_prefix`: the one way KV enters a worker's pool from outside it.

Algorithm, for a request's prompt blocks `hashes` (hashed once per request by the caller):
1. Skip the leading blocks the pool already holds (`engine.match_prefix`).
2. Ask `source` for the rest, in order (`workers.kv.sources`: a peer's PullKV stream or the tiered
   store); it returns the leading run that decodes and verifies.
3. Keep the longest run whose blocks carry exactly the prompt's tokens for their position (a block
   under the right hash but with other tokens is never imported).
4. Import that run (`engine.import_blocks`) as cached, unreferenced prefix blocks.

Never raises for a transfer failure (source down, timeout, corrupt or missing block, import refused):
it logs, records the failure in the result's `error`, and the engine computes whatever is missing,
so the client receives the same tokens either way, only later. Metrics are the caller's: the result
says what moved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache.hashing import BlockHash
from common.vocab import TransferPath
from workers.engine.types import KVBlock
from workers.kv.bridge import KVEngine
from workers.kv.sources import BlockSource
from workers.kv.wire import tensor_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixFetch:
    """What one `fetch_prefix` did.

    `num_blocks_missing`: leading blocks the pool lacked before the fetch (0 = nothing was asked).
    `num_blocks_imported`: of those, how many are in the pool now. `num_tokens_cached`: prompt tokens
    whose KV the pool holds after the fetch (a hint: the pool may evict before the request runs).
    `num_bytes`: KV tensor bytes received (`workers.kv.wire.tensor_bytes`). `seconds`: fetch + import.
    `error`: why the fetch failed, or None.
    """

    path: TransferPath
    num_blocks_missing: int
    num_blocks_imported: int
    num_tokens_cached: int
    num_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def attempted(self) -> bool:
        """Whether anything was asked of the source."""
        return self.num_blocks_missing > 0

    @property
    def complete(self) -> bool:
        """Whether every missing block arrived and was imported."""
        return self.error is None and self.num_blocks_imported == self.num_blocks_missing


async def fetch_prefix(engine: KVEngine, source: BlockSource, hashes: Sequence[BlockHash],
                       prompt_token_ids: Sequence[int]) -> PrefixFetch:
    """Make the longest available prefix of `hashes` resident in `engine`'s pool, from `source`.

    `hashes` are the chained hashes of the leading full blocks of `prompt_token_ids` (the engine's hash
    keys); they are trusted, not recomputed. Changes only the pool (imported blocks are LRU-newest).
    """
    size = engine.block_size
    assert len(hashes) * size <= len(prompt_token_ids), "hashes for more blocks than the prompt has"
    first_missing = engine.match_prefix(hashes)
    missing = list(hashes[first_missing:])
    if not missing:
        return PrefixFetch(source.path, 0, 0, first_missing * size)
    expected = [tuple(prompt_token_ids[i * size: (i + 1) * size])
                for i in range(first_missing, len(hashes))]
    started = time.monotonic()
    blocks: list[KVBlock] = []
    imported = 0
    error: str | None = None
    try:
        blocks = _matching_run(await source.fetch(missing, engine.model_id), missing, expected)
        imported = await engine.import_blocks(blocks) if blocks else 0
    except Exception as exc:  # every transfer failure falls back to local prefill
        error = f"{type(exc).__name__}: {exc}"
        log.warning("KV fetch from %s failed (%s); prefilling locally", source.name, error)
    seconds = time.monotonic() - started
    return PrefixFetch(source.path, len(missing), imported, engine.match_prefix(hashes) * size,
                       num_bytes=tensor_bytes(blocks) if error is None else 0, seconds=seconds, error=error)


def _matching_run(blocks: Sequence[KVBlock], hashes: Sequence[BlockHash],
                  expected_tokens: Sequence[tuple[int, ...]]) -> list[KVBlock]:
    """The leading `blocks` that sit at their position with the prompt's tokens for it."""
    run: list[KVBlock] = []
    for block, block_hash, tokens in zip(blocks, hashes, expected_tokens, strict=False):
        if block.block_hash != block_hash or block.token_ids != tokens:
            log.warning("KV block %s holds other tokens than the prompt's; dropped", block_hash.hex()[:12])
            break
        run.append(block)
    return run
