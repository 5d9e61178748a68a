"""What the orchestrator takes in and gives out, independent of REST or gRPC."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from heteroserve.v1 import common_pb2


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters after validation by the gateway (see `to_proto`)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False

    def to_proto(self) -> common_pb2.SamplingParams:
        proto = common_pb2.SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            stop=list(self.stop), stop_token_ids=list(self.stop_token_ids), ignore_eos=self.ignore_eos,
            logprobs=self.logprobs)
        if self.seed is not None:
            proto.seed = self.seed
        return proto


@dataclass(frozen=True)
class GenerateJob:
    """One generation request, tokenized and authorised. `tenant` is the KV cache salt.
    `priority`: lower runs first on the worker (from the SLO class)."""

    request_id: str
    model: str
    prompt_token_ids: tuple[int, ...]
    sampling: Sampling
    tenant: str = ""
    slo_class: str = ""
    session_id: str = ""
    priority: int = 0


@dataclass(frozen=True)
class RouteInfo:
    """The route a request took, as returned to users (mirrors `gateway.proto` Route)."""

    request_class: str
    pool: str
    worker_id: str
    prefill_worker_id: str = ""
    disaggregated: bool = False
    cached_prompt_tokens: int = 0
    retries: int = 0
    migrations: int = 0
    policy: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        """Every field by name (the REST `route` object, see `gateway/schemas.py`)."""
        return asdict(self)


@dataclass(frozen=True)
class TokenDelta:
    """New tokens for the client; never repeats a token already yielded. `final`: a `Finished` follows
    at once (same worker chunk, no wait), so a transport may send both in one message."""

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...] = ()
    final: bool = False


@dataclass(frozen=True)
class Finished:
    """The last event of every successful generation."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    route: RouteInfo


Event = TokenDelta | Finished
