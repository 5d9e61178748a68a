"""Model runner: turns one step's scheduled chunks into tensors, runs the model, returns logits.

Batch order: single-token chunks (decodes) first, sorted by context length and cut into groups of
similar length (see attention.py), then prefill chunks. Each decode group's block table is padded to its
longest sequence with block 0 and masked. On a float32 host pool with the compiled kernel
(paged_kernel.py) the decodes form one `InPlaceDecodes` instead (no groups, masks or value bags). Only
the rows that produce a next token go through the final norm and lm_head.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from workers.engine import paged_kernel
from workers.engine.attention import AttentionMetadata, DecodeGroup, InPlaceDecodes, PrefillChunk, value_bags
from workers.engine.kv_pool import KVPool, KVStore
from workers.engine.model import LlamaModel
from workers.engine.scheduler import ScheduledChunk


class ModelRunner:
    def __init__(self, model: LlamaModel, pool: KVStore, device: torch.device) -> None:
        self.model = model
        self.pool = pool
        self.device = device
        self.block_size = pool.block_size
        self.heads_per_kv = model.args.num_heads // model.args.num_kv_heads
        in_place = (isinstance(pool, KVPool) and pool.dtype == torch.float32 and device.type == "cpu"
                    and pool.storage.is_contiguous())
        self.kernel = paged_kernel.load() if in_place else None

    @torch.inference_mode()
    def execute(self, chunks: Seq[ScheduledChunk]) -> tuple[list[ScheduledChunk], torch.Tensor]:
        """Compute the chunks' KV; returns the chunks that sample, in row order of the logits
        ([rows, vocab], float32, on CPU)."""
        decodes = sorted((c for c in chunks if c.num_tokens == 1), key=lambda c: c.seq.num_computed_tokens)
        prefills = [c for c in chunks if c.num_tokens > 1]
        ordered = decodes + prefills
        input_ids, positions, slots = self._flat_inputs(ordered)
        prefill_chunks = self._prefill_chunks(prefills, len(decodes))
        if self.kernel is not None and decodes:
            meta = AttentionMetadata(slots, (), prefill_chunks, self._in_place_decodes(self.kernel, decodes))
        else:
            meta = AttentionMetadata(slots, self._decode_groups(decodes), prefill_chunks)
        hidden = self.model.forward(input_ids, positions, self.pool, meta)
        rows, sampling = [], []
        offset = 0
        for chunk in ordered:
            offset += chunk.num_tokens
            if chunk.samples:
                rows.append(offset - 1)
                sampling.append(chunk)
        if not rows:
            return [], torch.empty(0)
        logits = self.model.logits(hidden[torch.tensor(rows, device=self.device)])
        return sampling, logits.cpu()

    def _flat_inputs(self, chunks: Seq[ScheduledChunk]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        size = self.block_size
        for chunk in chunks:
            seq, start = chunk.seq, chunk.seq.num_computed_tokens
            end = start + chunk.num_tokens
            ids.extend(seq.token_ids[start:end])
            pos.extend(range(start, end))
            table = seq.block_table
            slots.extend(table[p // size] * size + p % size for p in range(start, end))
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(pos), as_tensor(slots)

    def _decode_groups(self, decodes: Seq[ScheduledChunk]) -> tuple[DecodeGroup, ...]:
        """Cut length-sorted decodes into groups: a new one when a sequence has more than 1.5x the
        blocks of the group's first and the group already has 4 members."""
        groups: list[DecodeGroup] = []
        start = 0
        for end in range(1, len(decodes) + 1):
            if end < len(decodes):
                first, nxt = (self._num_blocks(decodes[i]) for i in (start, end))
                if nxt <= 1.5 * first or end - start < 4:
                    continue
            table, mask = self._decode_table(decodes[start:end])
            lengths = tuple(c.seq.num_computed_tokens + 1 for c in decodes[start:end])
            bags = None
            if isinstance(self.pool, KVPool):
                bags = value_bags(table, end - start, self.heads_per_kv, self.pool)
            groups.append(DecodeGroup(start, end, table, mask, lengths, bags))
            start = end
        return tuple(groups)

    def _in_place_decodes(self, kernel: paged_kernel.PagedKernel, decodes: Seq[ScheduledChunk]
                          ) -> InPlaceDecodes:
        lengths = [c.seq.num_computed_tokens + 1 for c in decodes]
        max_len = max(lengths)
        max_blocks = -(-max_len // self.block_size)
        table = [c.seq.block_table[:max_blocks] for c in decodes]
        table = [t + [0] * (max_blocks - len(t)) for t in table]
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
        scores = torch.empty(len(decodes), self.model.args.num_heads, max_len, dtype=torch.float32)
        return InPlaceDecodes(kernel, len(decodes), as_tensor(table), as_tensor(lengths), max_len, scores)

    def _num_blocks(self, chunk: ScheduledChunk) -> int:
        return chunk.seq.num_computed_tokens // self.block_size + 1

    def _decode_table(self, decodes: Seq[ScheduledChunk]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = [c.seq.num_computed_tokens + 1 for c in decodes]
        max_blocks = -(-max(lengths) // self.block_size)
        table = [c.seq.block_table[:max_blocks] + [0] * (max_blocks - len(c.seq.block_table[:max_blocks]))
                 for c in decodes]
        block_table = torch.tensor(table, dtype=torch.long, device=self.device).view(-1)
        columns = torch.arange(max_blocks * self.block_size, device=self.device)
        valid = columns[None, :] < torch.tensor(lengths, device=self.device)[:, None]
        mask = torch.zeros(valid.shape, dtype=self.pool.dtype, device=self.device)
        mask.masked_fill_(~valid, float("-inf"))
        return block_table, mask[:, None, :]

    def _prefill_chunks(self, prefills: Seq[ScheduledChunk], offset: int) -> tuple[PrefillChunk, ...]:
        out = []
        for chunk in prefills:
            ctx_start = chunk.seq.num_computed_tokens
            block_ids = mask = None
            if ctx_start > 0:
                context = ctx_start + chunk.num_tokens
                blocks = chunk.seq.block_table[: -(-context // self.block_size)]
                block_ids = torch.tensor(blocks, dtype=torch.long, device=self.device)
                q_pos = torch.arange(ctx_start, context, device=self.device)
                mask = torch.arange(context, device=self.device)[None, :] <= q_pos[:, None]
            out.append(PrefillChunk(offset, offset + chunk.num_tokens, ctx_start, block_ids, mask))
            offset += chunk.num_tokens
        return tuple(out)
