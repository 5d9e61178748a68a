"""What the SDK returns: small immutable results, the same for both transports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Route:
    """The route a request took through the cluster (see docs/api.md)."""

    request_class: str = ""
    pool: str = ""
    worker_id: str = ""
    prefill_worker_id: str = ""
    disaggregated: bool = False
    cached_prompt_tokens: int = 0
    retries: int = 0
    migrations: int = 0
    policy: str = ""  # the router policy that chose the worker
    reason: str = ""  # why it chose it (the label of heteroserve_gateway_route_decisions_total)

    @staticmethod
    def from_mapping(data: dict[str, Any] | None) -> Route:
        data = data or {}
        names = Route.__dataclass_fields__
        return Route(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """A finished generation. `token_ids` is filled by the gRPC transport only (REST sends text)."""

    id: str
    model: str
    text: str
    finish_reason: str
    usage: Usage
    route: Route
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One streamed piece. The last chunk has `finish_reason`, `usage` and `route` set."""

    id: str
    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    route: Route | None = None


@dataclass(frozen=True)
class Model:
    id: str
    max_context_tokens: int = 0


@dataclass(frozen=True)
class Request:
    """One generation request, transport-neutral. Exactly one of `prompt` / `messages` is set."""

    model: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    slo_class: str = ""
    session_id: str = ""
    tenant: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject what no transport can carry (the gateway checks the ranges that depend on the model):
        `InvalidRequestError` naming the field, never a protobuf or JSON error later."""
        from common.errors import InvalidRequestError

        bounds = {"max_tokens": (1, INT32_MAX), "top_k": (0, INT32_MAX), "seed": (-INT64_MAX - 1, INT64_MAX)}
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise InvalidRequestError(f"must be in [{low}, {high}], got {value}", field=name)
        for name in ("temperature", "top_p"):
            if not math.isfinite(getattr(self, name)):
                raise InvalidRequestError(f"must be a finite number, got {getattr(self, name)}", field=name)


def collect(chunks: list[Chunk], model: str) -> Completion:
    """Join streamed chunks into one `Completion`."""
    last = chunks[-1] if chunks else Chunk(id="", text="")
    return Completion(id=last.id, model=model, text="".join(c.text for c in chunks),
                      finish_reason=last.finish_reason or "", usage=last.usage or Usage(),
                      route=last.route or Route(), token_ids=tuple(t for c in chunks for t in c.token_ids))
