"""The worker registry in Redis: who serves what, where, with what capacity.

Shared vocabulary: workers write their record here, the gateway and the planner read it, and neither
side imports the other.

Layout in Redis (all keys under the `heteroserve:` prefix):

- `heteroserve:workers:<worker_id>`: the worker's `WorkerRecord` as one JSON string, with a TTL of
  `ttl_seconds` (default 3 s). The worker rewrites it every heartbeat (default 1 s), so a worker that
  dies disappears within one TTL, and a clean shutdown deletes it at once.
- `heteroserve:workers`: a set of worker ids, the index for listing. Entries whose record has
  expired are stale; `list_workers` skips them and removes them from the set.

All functions take a `redis.asyncio.Redis` client owned by the caller and raise
`redis.exceptions.RedisError` (e.g. `ConnectionError`) when Redis is unreachable; callers decide
whether that is fatal (the worker keeps serving and retries; the gateway keeps its last view).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from common.vocab import Device, Role, parse_device, parse_role

if TYPE_CHECKING:
    from redis.asyncio import Redis

WORKERS_INDEX_KEY = "heteroserve:workers"
WORKER_KEY_PREFIX = "heteroserve:workers:"
DEFAULT_TTL_SECONDS = 3.0


def worker_key(worker_id: str) -> str:
    """The Redis key holding one worker's record."""
    return WORKER_KEY_PREFIX + worker_id


@dataclass(frozen=True)
class WorkerRecord:
    """What a worker announces about itself. `address` is `host:port` of its gRPC Worker service.

    Capacity: `kv_blocks` blocks of `block_size` tokens in its KV pool, `max_num_seqs` concurrent
    sequences. `started_at` is a Unix time in seconds. `draining` is set once the worker stops taking
    new work (routers must skip it). `metrics_port` is 0 when the worker exports no metrics.
    """

    worker_id: str
    address: str
    node_type: str
    device: Device
    role: Role
    model: str
    pool: str
    kv_blocks: int
    max_num_seqs: int
    block_size: int
    started_at: float
    draining: bool = False
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if not self.worker_id:
            raise ValueError("worker_id must not be empty")
        if ":" not in self.address:
            raise ValueError(f"address must be host:port, got {self.address!r}")
        parse_role(self.role)  # a record read from JSON may carry any string
        parse_device(self.device)
        for name in ("kv_blocks", "max_num_seqs", "block_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerRecord:
        """Parse a record; raises `ValueError` on malformed data (unknown fields are ignored, so
        newer workers can add fields without breaking older readers)."""
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"worker record is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("worker record must be a JSON object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as exc:
            raise ValueError(f"worker record is incomplete: {exc}") from None


async def write_worker(redis: Redis, record: WorkerRecord, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
    """Create or refresh `record` with a TTL, and add its id to the index (one round trip)."""
    ttl_ms = max(1, int(ttl_seconds * 1000))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(worker_key(record.worker_id), record.to_json(), px=ttl_ms)
        pipe.sadd(WORKERS_INDEX_KEY, record.worker_id)
        await pipe.execute()


async def delete_worker(redis: Redis, worker_id: str) -> None:
    """Remove a worker's record and its index entry (clean shutdown)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(worker_key(worker_id))
        pipe.srem(WORKERS_INDEX_KEY, worker_id)
        await pipe.execute()


async def get_worker(redis: Redis, worker_id: str) -> WorkerRecord | None:
    """The live record of one worker, or None when it is absent or expired."""
    raw = await redis.get(worker_key(worker_id))
    return WorkerRecord.from_json(raw) if raw is not None else None


async def list_workers(redis: Redis) -> list[WorkerRecord]:
    """Every live worker, sorted by worker id. Stale index entries are removed; malformed records are
    skipped (they expire on their own)."""
    members = await redis.smembers(WORKERS_INDEX_KEY)
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    if not ids:
        return []
    raws = await redis.mget([worker_key(i) for i in ids])
    records: list[WorkerRecord] = []
    stale: list[str] = []
    for worker_id, raw in zip(ids, raws, strict=True):
        if raw is None:
            stale.append(worker_id)
            continue
        try:
            records.append(WorkerRecord.from_json(raw))
        except ValueError:
            continue
    if stale:
        await redis.srem(WORKERS_INDEX_KEY, *stale)
    return records
