"""Pure parts of the gateway and orchestrator: the routed-prefix table, the prefix-index adapter,
config validation and the auth buckets (plan parsing: test_plan_view.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cache.events import KVEvent
from cache.hashing import BlockHash, HashKeys, hash_prompt_blocks
from cache.prefix_index import PrefixIndex
from common.errors import AuthenticationError, ConfigError, PermissionDeniedError, RateLimitedError
from control_plane.gateway.auth import ApiKeySpec, Authenticator, Principal, hash_key
from control_plane.gateway.config import GatewayConfig, ModelSpec
from control_plane.orchestrator.config import OrchestratorConfig
from control_plane.orchestrator.prefix import IndexPrefixSource
from control_plane.orchestrator.relay import Run, accept_chunk
from control_plane.orchestrator.routed_prefixes import RoutedPrefixes, merge
from control_plane.orchestrator.types import Finished, GenerateJob, Sampling, TokenDelta
from control_plane.router import PrefixHoldings, RouterConfig
from heteroserve.cli import gateway as gateway_cli
from heteroserve.v1 import common_pb2

HASHES = hash_prompt_blocks(list(range(64)), HashKeys("tiny"), 16)


def test_routed_prefixes_runs_and_eviction() -> None:
    table = RoutedPrefixes(capacity=6)
    table.record("w1", HASHES)
    table.record("w2", HASHES[:2])
    match = table.match(HASHES)
    assert match.worker_blocks == {"w1": 4, "w2": 2} and match.num_blocks == 4
    other = hash_prompt_blocks(list(range(100, 164)), HashKeys("tiny"), 16)
    table.record("w3", other)  # 4 more hashes: blocks 2 and 3 (least recently recorded) go
    assert len(table) == 6
    assert table.match(HASHES).worker_blocks == {"w1": 2, "w2": 2}
    table.remove_worker("w3")
    assert table.match(other).worker_blocks == {}


def test_merge_takes_longer_runs() -> None:
    a = PrefixHoldings(4, worker_blocks={"w1": 2}, shared_blocks={"redis": 3})
    b = PrefixHoldings(4, worker_blocks={"w1": 4, "w2": 1})
    m = merge(a, b)
    assert m.worker_blocks == {"w1": 4, "w2": 1} and m.shared_blocks == {"redis": 3}


def test_index_prefix_source_maps_tiers() -> None:
    index = PrefixIndex(shared_tiers=("redis",))
    index.apply(KVEvent("w1", "memory", "stored", tuple(HASHES[:3])))
    index.apply(KVEvent("w2", "redis", "stored", tuple(HASHES[:2])))
    index.apply(KVEvent("w2", "disk", "stored", tuple(HASHES)))
    match = IndexPrefixSource(lambda: index).match([BlockHash(h) for h in HASHES])
    assert match.worker_blocks == {"w1": 3}
    assert match.shared_blocks == {"redis": 2}
    assert match.local_blocks == {("w2", "disk"): 4}
    assert match.blocks_for("w2", "disk") == 4 and match.blocks_for("w1", "redis") == 2


def test_authenticator() -> None:
    auth = Authenticator((ApiKeySpec("a", hash_key("sk-a"), "acme", tokens_per_minute=100),),
                         hash_key("admin"))
    principal = auth.authenticate("Bearer sk-a")
    assert principal.tenant == "acme" and principal.key_name == "a"
    with pytest.raises(AuthenticationError):
        auth.authenticate("Bearer sk-b")
    with pytest.raises(AuthenticationError):
        auth.authenticate(None)
    auth.admit(principal, 60)
    with pytest.raises(RateLimitedError, match="token rate"):
        auth.admit(principal, 60)
    with pytest.raises(PermissionDeniedError):
        auth.check_admin("Bearer sk-a")
    auth.check_admin("Bearer admin")
    assert auth.check_tenant(principal, "") == "acme"
    with pytest.raises(PermissionDeniedError):
        auth.check_tenant(principal, "globex")
    with pytest.raises(ValueError, match="sha256"):
        ApiKeySpec("bad", "not-a-digest", "t")



def test_rate_limits_are_per_key_not_per_name() -> None:
    auth = Authenticator(tuple(ApiKeySpec("shared-name", hash_key(k), "acme", tokens_per_minute=100)
                               for k in ("sk-1", "sk-2")), None)
    first, second = auth.authenticate("Bearer sk-1"), auth.authenticate("Bearer sk-2")
    auth.admit(first, 60)
    with pytest.raises(RateLimitedError, match="token rate"):
        auth.admit(first, 60)
    auth.admit(second, 60)  # its own bucket, although the keys share a name
    auth.admit(Principal("anonymous", ""), 10_000)  # anonymous: no buckets


@pytest.mark.parametrize("kwargs, field", [
    ({"models": ()}, "models"), ({"cluster_token": ""}, "cluster_token"),
    ({"http_port": 70000}, "http_port"),
    ({"default_max_tokens": 10_000}, "default_max_tokens"), ({"refresh_seconds": 0}, "refresh_seconds"),
    ({"router": RouterConfig(block_size=32)}, "router.block_size"),
])
def test_gateway_config_names_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"models": (ModelSpec("tiny", Path("/m")),), "cluster_token": "t"}
    with pytest.raises(ValueError, match=field):
        GatewayConfig(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, field", [
    ({"max_retries": -1}, "max_retries"), ({"max_migrations": -1}, "max_migrations"),
    ({"token_timeout_seconds": 0}, "token_timeout_seconds"), ({"block_size": 0}, "block_size"),
    ({"pd_min_uncached_tokens": -1}, "pd_min_uncached_tokens"),
])
def test_orchestrator_config_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        OrchestratorConfig(**kwargs)  # type: ignore[arg-type]


def test_gateway_flags_fill_the_nested_orchestrator_config(monkeypatch: pytest.MonkeyPatch,
                                                           tiny_model_dir: Path) -> None:
    parser = argparse.ArgumentParser()
    gateway_cli.configure(parser)
    monkeypatch.setenv("HETEROSERVE_CLUSTER_TOKEN", "t")
    args = parser.parse_args(["--model", str(tiny_model_dir), "--max-retries", "5", "--max-migrations", "0",
                              "--first-token-timeout", "7.5", "--token-timeout", "2",
                              "--pd-min-uncached-tokens", "64"])
    config = gateway_cli.build_config(args)
    assert config.orchestrator == OrchestratorConfig(
        first_token_timeout_seconds=7.5, token_timeout_seconds=2.0, unary_timeout_seconds=5.0,
        max_retries=5, max_migrations=0, pd_min_uncached_tokens=64, block_size=16)
    bad = parser.parse_args(["--model", str(tiny_model_dir), "--max-retries", "-1"])
    with pytest.raises(ConfigError, match="max_retries"):
        gateway_cli.build_config(bad)


def test_gateway_flags_fill_the_router_config(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    parser = argparse.ArgumentParser()
    gateway_cli.configure(parser)
    monkeypatch.setenv("HETEROSERVE_CLUSTER_TOKEN", "t")
    args = parser.parse_args(["--model", str(tiny_model_dir), "--scoring", "cost", "--queue-weight", "0.5",
                              "--request-cost-tokens", "64"])
    router = gateway_cli.build_config(args).router
    assert (router.scoring, router.queue_weight, router.request_cost_tokens) == ("cost", 0.5, 64.0)
    default = gateway_cli.build_config(parser.parse_args(["--model", str(tiny_model_dir)]))
    assert default.router.scoring == "weighted"
    bad = parser.parse_args(["--model", str(tiny_model_dir), "--queue-weight", "-1"])
    with pytest.raises(ConfigError, match="queue_weight"):
        gateway_cli.build_config(bad)


async def test_relay_timeouts_and_truncated_streams() -> None:
    import asyncio
    from collections.abc import AsyncIterator

    from common.errors import DeadlineExceededError, UnavailableError
    from control_plane.orchestrator.relay import Run, relay
    from control_plane.orchestrator.types import Finished, GenerateJob, Sampling, TokenDelta
    from heteroserve.v1 import common_pb2

    job = GenerateJob("r", "tiny", (1, 2, 3), Sampling(max_tokens=3))

    async def chunks(delays: list[float], finish: bool) -> AsyncIterator[common_pb2.TokenChunk]:
        for i, delay in enumerate(delays):
            await asyncio.sleep(delay)
            last = finish and i == len(delays) - 1
            yield common_pb2.TokenChunk(token_ids=[10 + i], text=f"t{i}", prompt_tokens=3 if i == 0 else 0,
                                        cached_prompt_tokens=2 if i == 0 else 0,
                                        finish_reason="length" if last else "")

    run = Run(job)
    events = [e async for e in relay(run, chunks([0, 0, 0], True), first_timeout=1, token_timeout=1,
                                     worker_id="w")]
    assert [type(e) for e in events] == [TokenDelta, TokenDelta, TokenDelta, Finished]
    assert run.generated == [10, 11, 12] and run.cached_prompt_tokens == 2
    assert isinstance(events[-1], Finished) and events[-1].completion_tokens == 3

    slow = Run(job)
    with pytest.raises(DeadlineExceededError, match=r"within 0\.1s"):
        async for _ in relay(slow, chunks([0, 0.5], True), first_timeout=1, token_timeout=0.1, worker_id="w"):
            pass
    assert slow.generated == [10]  # the token sent before the stall is kept for the migration
    cut = Run(job)
    with pytest.raises(UnavailableError, match="without finishing"):
        async for _ in relay(cut, chunks([0, 0], False), first_timeout=1, token_timeout=1, worker_id="w"):
            pass


def test_accept_chunk_marks_the_delta_a_finish_follows() -> None:
    run = Run(job=GenerateJob(request_id="r", model="tiny", prompt_token_ids=(1, 2),
                              sampling=Sampling(max_tokens=3)))
    first = accept_chunk(run, common_pb2.TokenChunk(token_ids=[5], text="a", prompt_tokens=2))
    assert first == [TokenDelta((5,), "a")] and not first[0].final
    last = accept_chunk(run, common_pb2.TokenChunk(token_ids=[6], text="b", finish_reason="length"))
    assert isinstance(last[0], TokenDelta) and last[0].final and isinstance(last[1], Finished)
    assert run.generated == [5, 6] and last[1].completion_tokens == 2


async def test_worker_leaving_the_view_is_forgotten_by_the_routed_table(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from common.registry import WorkerRecord, delete_worker, write_worker
    from control_plane.orchestrator.cluster import ClusterView
    from control_plane.router import InflightTracker

    def record(worker_id: str, port: int) -> WorkerRecord:  # nothing listens there: polls just fail
        return WorkerRecord(worker_id=worker_id, address=f"127.0.0.1:{port}", node_type="cpu", device="cpu",
                            role="colocated", model="tiny", pool="default", kv_blocks=0, max_num_seqs=0,
                            block_size=16, started_at=0.0)

    client = aioredis.Redis.from_url(redis_url)
    table = RoutedPrefixes()
    view = ClusterView(client, "token", InflightTracker(), unary_timeout_seconds=0.5,
                       absent_grace_seconds=0.0, on_leave=table.remove_worker)
    try:
        await write_worker(client, record("w1", 1))
        await write_worker(client, record("w2", 2))
        await view.refresh()
        table.record("w1", HASHES)
        table.record("w2", HASHES)
        await delete_worker(client, "w1")
        await view.refresh()  # missing from now on
        assert table.match(HASHES).worker_blocks == {"w1": 4, "w2": 4}
        await view.refresh()  # missing for longer than the grace: gone
        assert [w.worker_id for w in view.snapshot()] == ["w2"]
        assert table.match(HASHES).worker_blocks == {"w2": 4}
        await write_worker(client, record("w2", 3))  # a new process at a new address: an empty cache
        await view.refresh()
        assert table.match(HASHES).worker_blocks == {}
    finally:
        await view.stop()
        await client.aclose()


@pytest.mark.parametrize("text", ["hello world", "  leading spaces and\ttabs\n\nnew lines  ",
                                  "héllo wörld — ünïcode ✓ 日本語", "a", "word " * 600])
def test_served_model_encodes_as_the_tokenizer_does(tiny_model_dir: Path, text: str) -> None:
    """The gateway's fast encoding (no offsets) gives the ids `Tokenizer.encode` gives, special
    tokens included: the workers' block hashes are over these ids."""
    from tokenizers import Tokenizer

    from control_plane.gateway.models import ServedModel

    model = ServedModel("tiny", tiny_model_dir)
    reference = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).encode(text).ids
    assert model.encode(text) == reference
    assert len(reference) > 1  # BOS and at least one token of the text
