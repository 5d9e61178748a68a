"""The connector's parts without an engine: cluster blocks in and out of vLLM's paged cache layouts
(round trip, exact placement of keys and values), and its settings across the process boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cache.config import CacheConfig
from cache.tiers import DiskTierConfig, RedisTierConfig
from workers.vllm.kv_pages import read_block, write_block

LAYERS, HEADS, PAGE, DIM, PAGES = 3, 2, 32, 8, 5


def test_cpu_layout_round_trip_puts_keys_and_values_where_cpu_attention_reads_them() -> None:
    caches = [torch.zeros(PAGES, HEADS, PAGE, 2 * DIM) for _ in range(LAYERS)]
    block = torch.randn(LAYERS, 2, HEADS, 16, DIM)
    write_block(caches, page=3, offset=16, kv=block)
    assert torch.equal(read_block(caches, 3, 16, 16), block)
    # CPU_ATTN views a page as [heads, 2 * page_size, dim]: keys in the first page_size rows, values after
    rows = caches[1][3].view(HEADS, 2 * PAGE, DIM)
    assert torch.equal(rows[:, 16:32], block[1, 0]) and torch.equal(rows[:, PAGE + 16:], block[1, 1])
    assert int(torch.count_nonzero(caches[0][[0, 1, 2, 4]])) == 0  # other pages untouched
    assert int(torch.count_nonzero(rows[:, :16])) == 0  # the page's first 16 tokens untouched


def test_cuda_layout_round_trip() -> None:
    caches = [torch.zeros(2, PAGES, PAGE, HEADS, DIM) for _ in range(LAYERS)]
    block = torch.randn(LAYERS, 2, HEADS, 16, DIM)
    write_block(caches, page=1, offset=0, kv=block)
    assert torch.equal(read_block(caches, 1, 0, 16), block)
    assert torch.equal(caches[2][0, 1, :16], block[2, 0].permute(1, 0, 2))


def test_write_refuses_a_block_of_another_model() -> None:
    caches = [torch.zeros(PAGES, HEADS, PAGE, 2 * DIM) for _ in range(LAYERS)]
    with pytest.raises(ValueError, match="block has 2 layers, the model 3"):
        write_block(caches, 0, 0, torch.zeros(2, 2, HEADS, 16, DIM))


@pytest.mark.vllm
def test_settings_cross_the_process_boundary_as_plain_data(tmp_path: Path) -> None:
    import json

    from workers.vllm.connector import ConnectorSettings, connector_config

    cache = CacheConfig(memory=None, redis=RedisTierConfig(url="redis://127.0.0.1:1/0"),
                        disk=DiskTierConfig(root=tmp_path, capacity_bytes=1 << 20))
    settings = ConnectorSettings("tiny", "float32:b16:l2:h2:d32", 16, cache)
    config = connector_config(settings)
    extra = json.loads(json.dumps(config["kv_connector_extra_config"]))  # JSON-safe
    assert ConnectorSettings.from_extra(extra) == settings
    assert (config["kv_connector"], config["kv_role"]) == ("HeteroserveConnector", "kv_both")
