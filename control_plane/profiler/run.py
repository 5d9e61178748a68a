"""Profile one node type: measure its workers in every role and build the `NodeProfile`.

`profile_node(workers, grid, identity, progress)` runs, one worker at a time (the others idle, so each
point is the cost of that role alone):

1. colocated worker: prefill points (input_tokens × batches) and decode points (contexts × decode
   batches) through `Generate`;
2. prefill worker: prefill points through `Prefill`;
3. decode worker: decode points through `Decode`, KV pulled from the prefill worker (`PullKV`);
4. wake (colocated worker, when `grid.wake_samples`): a lone request after `grid.wake_idle_seconds`
   idle against one sent back to back (`measure.wake_cost`): the extra first-token time, the TPOT
   ratio and the woken request's span, the profile's `idle` entry (no cost when idle was not slower);
5. transfer: `PullKV` of a fresh prompt's blocks (path `peer`) and, with a shared tier, a read of the
   blocks the prefill worker published to Redis (path `shared`), each at `transfer_tokens`
   (smallest, largest) to fit a fixed latency and a bandwidth.

A node type whose engine serves no `PullKV` (vLLM: its KV leaves through the shared tier) is measured
with a colocated worker only (`prefill` and `decode` None): step 1 alone, no transfer rows, and the KV
bytes per token of `Identity.kv_bytes_per_token` (the model's architecture). A vLLM worker's decode
points use `measure.colocated_decode_span` (TPOT from completion times; its stream arrives in bunches).

Every prefill and decode point is the median of `repeats` runs, and points that batching could not
produce (a bigger batch faster, or slower than its sequences one by one; a longer prompt faster) are
measured again (`points.py`); transfer rows stay the fastest of `repeats` (a transfer has no batch to
check against, and its slow runs are another process holding the core, not the path).
The KV capacity is the decode worker's pool (`Stats`: blocks × block size); KV bytes per token are the
transferred payload bytes over the tokens they hold.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from common.vocab import Device, Engine, Role
from control_plane.profiler import measure
from control_plane.profiler.grid import ProfileGrid
from control_plane.profiler.machine import fingerprint, machine_info
from control_plane.profiler.points import measure_points
from placement.profile_file import (
    DecodePoint,
    NodeProfile,
    PrefillPoint,
    RoleProfile,
    TransferPoint,
    WakeCost,
)
from workerrpc.client import WorkerClient

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RoleWorkers:
    """Clients of one idle worker per role (same model, node type, engine), and the shared tier URL.
    The prefill worker is the KV source of every transfer; a role left None is not measured (a CSD
    node type has only a decode worker, fed by a CPU prefill worker; a vLLM node type only a colocated
    one)."""

    colocated: WorkerClient | None
    prefill: WorkerClient | None
    decode: WorkerClient | None
    shared_tier_url: str | None = None

    def __post_init__(self) -> None:
        if self.prefill is None and (self.colocated is None or self.decode is not None):
            raise ValueError("prefill: required unless only a colocated worker is measured")


@dataclass(frozen=True)
class Identity:
    """What the profile is of (written into it)."""

    model: str
    node_type: str
    device: Device
    engine: Engine = "native"
    model_hash: str = ""
    extra_machine: dict[str, object] = field(default_factory=dict)
    # K+V bytes of one token (from the architecture): the profile's figure when no transfer is measured
    kv_bytes_per_token: float = 0.0


def _noted(note: str) -> str:
    return f" ({note})" if note else ""


async def _prefill_points(grid: ProfileGrid, run: Callable[[int, int], Awaitable[float]],
                          progress: ProgressFn) -> tuple[PrefillPoint, ...]:
    """Median-of-repeats points, implausible ones measured again (`points.measure_points`)."""
    def report(key: tuple[int, int], seconds: float, note: str) -> None:
        progress(f"prefill in={key[0]} batch={key[1]}: {seconds * 1e3:.1f} ms" + _noted(note))

    keys = [(t, b) for t in grid.input_tokens for b in grid.prefill_batches]
    values, _ = await measure_points(keys, run, grid.robustness, report)
    return tuple(PrefillPoint(t, b, round(values[(t, b)], 6)) for t, b in keys)


async def _decode_points(grid: ProfileGrid, run: Callable[[int, int], Awaitable[float]],
                         progress: ProgressFn) -> tuple[DecodePoint, ...]:
    """As `_prefill_points`, keyed (context, batch)."""
    def report(key: tuple[int, int], seconds: float, note: str) -> None:
        progress(f"decode ctx={key[0]} batch={key[1]}: TPOT {seconds * 1e3:.2f} ms" + _noted(note))

    keys = [(c, b) for c in grid.context_tokens for b in grid.decode_batches]
    values, _ = await measure_points(keys, run, grid.robustness, report)
    return tuple(DecodePoint(b, c, round(values[(c, b)], 6)) for c, b in keys)


def fit_transfer(path: str, small: tuple[int, float], large: tuple[int, float]) -> TransferPoint:
    """Latency and bandwidth through two (bytes, seconds) points; proportional when the line would
    have a non-positive slope (noise larger than the size effect)."""
    (b1, s1), (b2, s2) = small, large
    if b2 > b1 and s2 > s1:
        bandwidth = (b2 - b1) / (s2 - s1)
        latency = max(0.0, s1 - b1 / bandwidth)
    else:
        bandwidth, latency = b2 / s2, 0.0
    return TransferPoint(path, b2, round(s2, 6), round(bandwidth, 1), round(latency, 6))  # type: ignore[arg-type]


async def _transfer(grid: ProfileGrid, workers: RoleWorkers, prompts: measure.Prompts, block_size: int,
                    progress: ProgressFn) -> tuple[tuple[TransferPoint, ...], float]:
    """(transfer rows, KV payload bytes per token); only full blocks of `block_size` tokens move."""
    source = workers.prefill
    assert source is not None, "the prefill worker is the source of every transfer"
    sizes = (min(grid.transfer_tokens), max(grid.transfer_tokens))

    async def best(run: Callable[[int], Awaitable[tuple[int, float]]], tokens: int) -> tuple[int, float]:
        runs = [await run(tokens) for _ in range(grid.repeats)]
        return runs[0][0], min(s for _, s in runs)

    peer = [await best(lambda t: measure.peer_transfer(source, prompts, t), n) for n in sizes]
    rows = [fit_transfer("peer", peer[0], peer[1])]
    block_tokens = block_size * (sizes[1] // block_size)
    per_token = peer[1][0] / block_tokens
    progress(f"transfer peer (PullKV): {rows[0].bytes_per_second / 1e6:.1f} MB/s, "
             f"latency {rows[0].latency_seconds * 1e3:.2f} ms")
    if workers.shared_tier_url:
        tier = measure.shared_tier(workers.shared_tier_url)
        try:
            shared = [await best(lambda t: measure.shared_transfer(source, prompts, t, tier), n)
                      for n in sizes]
        finally:
            await tier.close()
        rows.append(fit_transfer("shared", shared[0], shared[1]))
        progress(f"transfer shared (Redis): {rows[1].bytes_per_second / 1e6:.1f} MB/s, "
                 f"latency {rows[1].latency_seconds * 1e3:.2f} ms")
    return tuple(rows), per_token


async def _wake(grid: ProfileGrid, worker: WorkerClient, prompts: measure.Prompts,
                say: ProgressFn) -> WakeCost:
    busy, idle = await measure.wake_cost(worker, prompts, grid.wake_input_tokens, grid.output_tokens,
                                         grid.wake_idle_seconds, grid.wake_samples)
    say(f"wake after {grid.wake_idle_seconds:g} s idle: TTFT {idle.ttft * 1e3:.1f} ms vs "
        f"{busy.ttft * 1e3:.1f} ms busy, TPOT {idle.tpot * 1e3:.2f} vs {busy.tpot * 1e3:.2f} ms")
    # a woken worker no faster than a busy one: noise below the busy figures counts as no cost
    return WakeCost(grid.wake_idle_seconds, round(max(0.0, idle.ttft - busy.ttft), 6), grid.wake_input_tokens,
                    decode_scale=round(max(1.0, idle.tpot / busy.tpot), 4), warm_seconds=round(idle.span, 6))


async def _disaggregated_roles(grid: ProfileGrid, pre: WorkerClient, dec: WorkerClient | None,
                               with_colocated: bool, prompts: measure.Prompts,
                               say: ProgressFn) -> dict[Role, RoleProfile]:
    """The prefill role (unless `pre` is only a CSD node's KV source) and the decode role."""
    roles: dict[Role, RoleProfile] = {}
    if dec is None or with_colocated:  # a CSD node's prefill worker is only the KV source

        async def prefill_only(tokens: int, batch: int) -> float:
            return (await measure.prefill_batch(pre, prompts, tokens, batch))[0]

        roles["prefill"] = RoleProfile(prefill=await _prefill_points(grid, prefill_only, say))
    if dec is not None:
        roles["decode"] = RoleProfile(decode=await _decode_points(
            grid, lambda c, b: measure.disaggregated_decode(pre, dec, prompts, c, b, grid.output_tokens),
            say))
    return roles


async def profile_node(workers: RoleWorkers, grid: ProfileGrid, identity: Identity,
                       progress: ProgressFn | None = None) -> NodeProfile:
    """Measure every role and the transfer paths (module docstring); the workers must be idle."""
    say = progress or (lambda _line: None)
    prompts = measure.Prompts(grid.vocab_size, grid.seed)
    co, pre, dec = workers.colocated, workers.prefill, workers.decode
    if pre is None and identity.kv_bytes_per_token <= 0:
        raise ValueError("kv_bytes_per_token: a profile without a transfer needs it from the identity")
    await measure.warm_up(pre, dec, co, prompts)
    roles: dict[Role, RoleProfile] = {}
    if co is not None:
        # vLLM delivers tokens in bunches when its consumer lags: TPOT from completion times instead
        decode = measure.colocated_decode_span if identity.engine == "vllm" else measure.colocated_decode
        roles["colocated"] = RoleProfile(
            await _prefill_points(grid, lambda t, b: measure.colocated_prefill(co, prompts, t, b), say),
            await _decode_points(grid, lambda c, b: decode(co, prompts, c, b, grid.output_tokens), say))
    wake = await _wake(grid, co, prompts, say) if co is not None and grid.wake_samples else None
    if pre is not None:
        roles.update(await _disaggregated_roles(grid, pre, dec, co is not None, prompts, say))
    source = dec or co or pre
    assert source is not None, "RoleWorkers holds a colocated or a prefill worker"
    stats = await source.stats()
    transfer, kv_bytes_per_token = (await _transfer(grid, workers, prompts, stats.block_size, say)
                                    if pre is not None else ((), identity.kv_bytes_per_token))
    machine = {**machine_info(), **identity.extra_machine}
    return NodeProfile(
        model=identity.model, node_type=identity.node_type, engine=identity.engine, device=identity.device,
        fingerprint=fingerprint(machine), kv_bytes_per_token=round(kv_bytes_per_token, 3),
        kv_capacity_tokens=int(stats.kv_blocks_total * stats.block_size),
        roles=roles, transfer=transfer,
        model_hash=identity.model_hash, machine=machine, idle=wake,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
