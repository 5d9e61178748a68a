"""The gateway benchmark's workload rule and paired statistics (benchmarks/_gateway_workload.py)."""

from __future__ import annotations

import pytest

from benchmarks._gateway_workload import Pair, Prompt, Timing, WorkloadRule, build_prompts, paired_stats

WORDS = [f"w{k}" * (1 + k % 3) for k in range(300)]


def count(word: str) -> int:  # a stand-in tokenizer: one token per 3 characters of a space-led word
    return (len(word) + 2) // 3


def tokens(text: str) -> int:
    return sum(count(" " + w) for w in text.split())


def _words_in(p: Prompt) -> int:
    """How many leading words of `p` make up its shared tokens."""
    used = n = 0
    for w in p.text.split():
        if used >= p.shared_tokens:
            break
        used += count(" " + w)
        n += 1
    return n


def test_prompts_follow_the_rule() -> None:
    rule = WorkloadRule(requests=40, documents=4, seed=3)
    prompts = build_prompts(rule, WORDS, count)
    assert len(prompts) == 40
    assert [p.document for p in prompts] == [i % 4 for i in range(40)]
    most = max(count(" " + w) for w in WORDS)
    for p in prompts:
        assert rule.min_tokens - most <= tokens(p.text) <= p.target_tokens <= rule.max_tokens
        assert p.target_tokens - tokens(p.text) < most, "the tail fills the prompt to within one word"
        assert int(0.75 * p.target_tokens) - most < p.shared_tokens <= int(0.75 * p.target_tokens)
    # Two prompts of one document share the shorter one's shared words; other documents do not.
    a, b, other = prompts[0], prompts[4], prompts[1]
    k = min(_words_in(a), _words_in(b))
    assert k > 10 and a.text.split()[:k] == b.text.split()[:k]
    assert a.text.split()[:k] != other.text.split()[:k]
    assert len({p.text for p in prompts}) == 40, "every request has words of its own"


def test_same_seed_same_prompts_other_seed_other_lengths() -> None:
    rule = WorkloadRule(requests=10)
    assert build_prompts(rule, WORDS, count) == build_prompts(rule, WORDS, count)
    other = build_prompts(WorkloadRule(requests=10, seed=1), WORDS, count)
    assert [p.target_tokens for p in other] != [p.target_tokens for p in build_prompts(rule, WORDS, count)]


def test_rule_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="requests"):
        WorkloadRule(requests=0)
    with pytest.raises(ValueError, match="shared_fraction"):
        WorkloadRule(shared_fraction=1.0)


def test_p99_is_of_the_per_request_overheads_not_a_difference_of_p99s() -> None:
    # Gateway and direct are both slow on request 0 (10 ms to the first token): its overhead is 0 ms.
    # A difference of p99s would say about 0 ms; the per-request overheads are [0, 0, 0, 4] ms.
    pairs = [Pair(Timing(0.010, 0.101, 32), Timing(0.010, 0.100, 32)),
             Pair(Timing(0.002, 0.011, 32), Timing(0.002, 0.010, 32)),
             Pair(Timing(0.002, 0.011, 32), Timing(0.002, 0.010, 32)),
             Pair(Timing(0.006, 0.015, 32), Timing(0.002, 0.010, 32))]
    stats = paired_stats("grpc", pairs)
    assert stats["grpc_overhead_p50_ms"] == pytest.approx(0.0)  # to the first token
    assert stats["grpc_overhead_p99_ms"] == pytest.approx(0.97 * 4.0)
    assert stats["grpc_e2e_overhead_p50_ms"] == pytest.approx(1.0)
    assert stats["grpc_e2e_overhead_p99_ms"] == pytest.approx(1.0 + 0.97 * 4.0)
    assert stats["grpc_relay_per_token_p50_ms"] == pytest.approx(1.0 / 31, abs=1e-4)
    assert stats["grpc_direct_ttft_p50_ms"] == pytest.approx(2.0)
    assert paired_stats("rest", [])["rest_overhead_p99_ms"] is None


def test_every_timed_request_follows_one_of_its_prompt_and_every_connection_is_warm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The measuring order of bench gateway: warm pass, each connection opened, then per prompt a
    prime, REST, direct gRPC, gRPC, direct gRPC, then the worker's own REST front twice (its prime, then
    timed); every direct request goes to the worker the route names. The pairing rule of session 7:
    gateway REST with the worker's REST (`rest_*`), gateway gRPC with the worker's gRPC (`grpc_*`), and
    the old pairing of gateway REST with the worker's gRPC beside them (`rest_vs_grpc_direct_*`)."""
    import asyncio

    from benchmarks import gateway

    calls: list[tuple[str, str]] = []

    class Recorder:  # stands in for the network paths: this test is about the order, not the timing
        workers = ("w0", "w1")

        async def grpc(self, text: str) -> tuple[Timing, dict[str, object]]:
            calls.append(("grpc", text))
            return Timing(0.002, 0.01, 32), {"worker_id": "w1", "reason": "prefix_hit"}

        async def rest(self, text: str) -> tuple[Timing, dict[str, object]]:
            calls.append(("rest", text))
            return Timing(0.003, 0.01, 32), {"worker_id": "w1", "reason": "prefix_hit"}

        async def direct(self, worker_id: str, ids: list[int]) -> Timing:
            calls.append(("direct", f"{worker_id}:{len(ids)}"))
            return Timing(0.001, 0.01, 32)

        async def direct_rest(self, worker_id: str, text: str) -> Timing:
            calls.append(("direct_rest", f"{worker_id}:{text}"))
            return Timing(0.0025, 0.01, 32)

    monkeypatch.setattr(gateway, "SETTLE_SECONDS", 0.0)
    prompts = [Prompt("a b", 0, 1, 2), Prompt("c d", 1, 1, 2)]
    result = asyncio.run(gateway.measure(Recorder(), prompts, [[1, 5, 6, 7], [1, 8, 9]]))  # type: ignore[arg-type]
    warm = [("grpc", "a b"), ("grpc", "c d"), ("rest", "a b"),
            ("direct", "w0:3"), ("direct_rest", f"w0:{gateway.WARM_DIRECT_TEXT}"),
            ("direct", "w1:3"), ("direct_rest", f"w1:{gateway.WARM_DIRECT_TEXT}")]
    timed = [[("grpc", t), ("rest", t), ("direct", f"w1:{n}"), ("grpc", t), ("direct", f"w1:{n}"),
              ("direct_rest", f"w1:{t}"), ("direct_rest", f"w1:{t}")]
             for t, n in (("a b", 4), ("c d", 3))]
    assert calls == warm + timed[0] + timed[1]
    assert result["pairs"] == 2 and result["grpc_overhead_p50_ms"] == pytest.approx(1.0)
    assert result["rest_overhead_p50_ms"] == pytest.approx(0.5)  # 3 ms - the worker's REST 2.5 ms
    assert result["rest_vs_grpc_direct_overhead_p50_ms"] == pytest.approx(2.0)  # 3 ms - its gRPC 1 ms
    assert result["overhead_p50_ms"] == pytest.approx(1.0)  # the larger of the two targets' figures


def test_rest_passes_only_against_both_direct_paths() -> None:
    """The worker's REST front is slower than its gRPC, so REST is checked against both direct paths: a
    figure under the bound against the REST front alone does not pass `--check`."""
    from benchmarks import gateway
    from benchmarks._report import check

    result = {"rest_overhead_p50_ms": 0.5, "rest_overhead_p99_ms": 5.0,
              "rest_vs_grpc_direct_overhead_p50_ms": 2.8, "rest_vs_grpc_direct_overhead_p99_ms": 8.0,
              "grpc_overhead_p50_ms": 1.7, "grpc_overhead_p99_ms": 8.0}
    missed = {v.name for v in check(result, gateway.TARGETS) if not v.ok}
    assert missed == {"rest_vs_grpc_direct_overhead_p50_ms"}
