"""The `csd` device: an emulated computational storage drive that holds the KV cache and runs decode
attention in storage (InstInfer's design), or serves it to the host (host-offload, FlexGen-style).

| module        | what                                                                          |
|---------------|-------------------------------------------------------------------------------|
| `config.py`   | `DriveConfig`: link, flash and compute figures (real values + `time_scale`)   |
| `pool.py`     | `DrivePool`: the engine's KV pool as calls to the drive process (host side)   |
| `drive.py`    | the drive process (controller): serves the pool's ops, charges the limiters   |
| `flash.py`    | `FlashStore`: the KV in `flash.bin`, one CRC-32-checked page per (layer, block) |
| `kernel.py`   | in-storage decode attention over pages read from flash                        |
| `ratelimit.py`| `RateLimiter`: virtual-clock bandwidth + latency of one channel               |
| `wire.py`     | pipe messages: pickled header + raw tensor buffers, sizes for the link counters |
| `stats.py`    | `DriveStats`: bytes over the link, bytes read from flash, waits, failures     |
| `cost.py`     | `DriveCost`: load-independent modelled time of each message (bench ratios)    |
| `metrics.py`  | the `heteroserve_csd_*` Prometheus names: a scrape-time collector of the stats |

Imports: `common`, `workers.engine.attention` (the decode groups' type), `prometheus_client`; nothing
here imports upwards.
docs/csd.md describes the design, the emulation and the figures.
"""

from workers.devices.csd.config import DriveConfig
from workers.devices.csd.flash import ChecksumError, DriveFullError
from workers.devices.csd.pool import DrivePool, open_drive_pool
from workers.devices.csd.stats import DriveStats

__all__ = ["ChecksumError", "DriveConfig", "DriveFullError", "DrivePool", "DriveStats", "open_drive_pool"]
