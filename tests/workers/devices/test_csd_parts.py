"""The drive's parts on their own: rate limiter, settings, flash pages and checksums, the pipe format."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from common.errors import ConfigError
from workers.devices.csd import wire
from workers.devices.csd.config import DriveConfig
from workers.devices.csd.flash import ChecksumError, DriveFullError, FlashStore, PoolSpec
from workers.devices.csd.ratelimit import RateLimiter

SPEC = PoolSpec(num_layers=2, num_kv_heads=2, num_blocks=8, block_size=4, head_dim=8, dtype="float32")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_queues_transfers_and_overlaps_real_work() -> None:
    clock = FakeClock()
    link = RateLimiter(1000.0, latency_s=0.5, clock=clock, sleep=clock.sleep)
    assert link.charge(2000) == pytest.approx(2.5)  # 2 s on the wire + 0.5 s latency
    assert clock.now == pytest.approx(102.5)
    started = clock.now
    clock.now += 1.0  # one second of real work since the transfer began overlaps its 2 s
    assert link.charge(2000, started=started) == pytest.approx(1.5)
    assert link.num_bytes == 4000 and link.waited_seconds == pytest.approx(4.0)
    with pytest.raises(ValueError, match="bytes_per_s"):
        RateLimiter(0.0)


def test_drive_config_validates_and_loads_drive_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="link_bytes_per_s"):
        DriveConfig(link_bytes_per_s=0)
    with pytest.raises(ValueError, match="attention_site"):
        DriveConfig(attention_site="gpu")  # type: ignore[arg-type]
    assert DriveConfig.load(tmp_path) == DriveConfig()
    DriveConfig(time_scale=10.0, attention_site="host").save(tmp_path)
    loaded = DriveConfig.load(tmp_path)
    assert loaded.attention_site == "host" and loaded.scaled_link_bytes_per_s == pytest.approx(3.5e8)
    (tmp_path / "drive.json").write_text('{"flash_gbps": 3}')
    with pytest.raises(ConfigError, match="flash_gbps"):
        DriveConfig.load(tmp_path)


def test_flash_pages_round_trip_and_corruption_is_caught(tmp_path: Path) -> None:
    flash = FlashStore(tmp_path, SPEC, capacity_bytes=2**20)
    assert flash.path.stat().st_size == SPEC.total_bytes  # reserved in full up front
    k, v = torch.randn(6, 2, 8), torch.randn(6, 2, 8)
    slots = torch.tensor([4, 5, 6, 7, 8, 9])  # block 1 whole, block 2 half
    flash.write_tokens(1, slots, k, v)
    pages = flash.read_pages(1, torch.tensor([1, 2]))
    assert torch.equal(pages[0, 0].transpose(0, 1), k[:4])
    assert torch.equal(pages[1, 1, :, :2].transpose(0, 1), v[4:])
    assert flash.bytes_read == 2 * SPEC.page_bytes
    offset = (1 * SPEC.num_blocks + 2) * SPEC.page_bytes + 12  # layer 1, block 2: flip bytes on disk
    with open(flash.path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(ChecksumError) as caught:
        flash.read_pages(1, torch.tensor([1, 2]))
    assert caught.value.pages == [(1, 2)] and flash.checksum_failures == 1
    with pytest.raises(ChecksumError):  # a write never re-checksums a corrupt page into a valid one
        flash.write_tokens(1, torch.tensor([10]), k[:1], v[:1])
    assert flash.read_pages(1, torch.tensor([1])).shape == (1, *SPEC.page_shape)  # the rest still reads
    flash.discard([2])  # erased (a TRIM): zeros under valid checksums, writable again
    assert not flash.read_pages(1, torch.tensor([2])).any()
    flash.write_tokens(1, torch.tensor([10]), k[:1], v[:1])
    assert torch.equal(flash.read_pages(1, torch.tensor([2]))[0, 0, :, 2], k[0])
    with open(flash.path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff\xff\xff\xff")
    flash.write_block(2, torch.zeros(SPEC.num_layers, *SPEC.page_shape))  # a whole-block write heals it
    assert not flash.read_pages(1, torch.tensor([2])).any()


def test_flash_larger_than_the_drive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DriveFullError, match="drive full"):
        FlashStore(tmp_path, SPEC, capacity_bytes=SPEC.total_bytes - 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_wire_carries_raw_tensors_and_counts_bytes(dtype: torch.dtype) -> None:
    a, b = mp.Pipe()
    tensor = (torch.randn(3, 5) * 100).to(dtype)
    sent = wire.send(a, "op", {"layer": 3}, [tensor, torch.arange(4)])
    (op, meta, arrays), received = wire.recv(b)
    assert (op, meta, received) == ("op", {"layer": 3}, sent)
    assert arrays[0].dtype == dtype and torch.equal(arrays[0], tensor)
    assert torch.equal(arrays[1], torch.arange(4))
    assert sent > tensor.numel() * tensor.element_size() + 32


def test_drive_cost_prices_counted_bytes_at_the_modelled_rates() -> None:
    from workers.devices.csd.cost import DriveCost

    # scaled: link 35 MB/s and 1 ms per message, flash reads 192 MB/s, writes 64 MB/s
    cost = DriveCost(DriveConfig(time_scale=100.0))
    cost.receive(35_000)
    assert cost.seconds == pytest.approx(0.001 + 0.001)
    cost.write(64_000)  # + 1 ms
    cost.attend(read_bytes=1_920_000, cpu_seconds=0.004)  # pipelined: max(10 ms of flash, 4 ms of CPU)
    assert cost.seconds == pytest.approx(0.002 + 0.001 + 0.010)
    cost.attend(read_bytes=192_000, cpu_seconds=0.030)  # compute-bound: the CPU time counts
    cost.reply(350_000, streamed_read_bytes=192_000)  # streamed: max(10 ms link, 1 ms flash) + 1 ms
    assert cost.seconds == pytest.approx(0.013 + 0.030 + 0.011)
    cost.reply(350_000)
    assert cost.seconds == pytest.approx(0.054 + 0.011)
