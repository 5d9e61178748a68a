"""Pydantic models of the REST API: OpenAI-compatible requests and responses, plus our extensions.

Extensions the OpenAI API lacks, accepted as extra top-level body fields (the OpenAI client sends
them with `extra_body=`): `slo_class`, `session_id`, `tenant`, `top_k`, `ignore_eos`. Responses carry
an extra `route` object (which worker served, cache hits, retries) that OpenAI clients ignore; its
schema is the orchestrator's `RouteInfo` dataclass itself, so the two cannot drift apart.
Unknown request fields are ignored, as OpenAI does for fields it deprecated.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from control_plane.gateway.models import ChatRole
from control_plane.gateway.service import MAX_STOP, SLO_PRIORITY
from control_plane.orchestrator.types import RouteInfo

# The worker's seed is an int64, but JSON numbers are exact only up to 2**53 (RFC 8259, section 6).
MAX_SEED = 2**53 - 1
MAX_TOP_K = 2**31 - 1  # the worker's top_k is an int32


def _integral(value: object) -> object:
    """JSON Schema counts 1.0 as an integer: accept it as 1 (strict mode refuses "1" and true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Request fields are strict (a string is not a number, 0 is not false), as the schema says, except that
# an integral float is an integer, as JSON Schema says. (Bounds go before the validator, or pydantic
# leaves them out of the JSON schema.)
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_integral)]
TokenId = Annotated[int, Field(ge=0), BeforeValidator(_integral)]
Seed = Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), BeforeValidator(_integral)]
TopK = Annotated[int, Field(ge=0, le=MAX_TOP_K), BeforeValidator(_integral)]
OnlyOne = Annotated[int, Field(ge=1, le=1), BeforeValidator(_integral)]
OnlyZero = Annotated[int, Field(ge=0, le=0), BeforeValidator(_integral)]
_STRICT = ConfigDict(extra="ignore", strict=True)


class StreamOptions(BaseModel):
    model_config = _STRICT

    include_usage: bool = Field(False, description="a final chunk with usage and no choices")


# `max_tokens` and its newer alias `max_completion_tokens` may not both be set (JSON Schema can say
# "not both", not "both equal").
_ONE_LIMIT: JsonDict = {"not": {"required": ["max_tokens", "max_completion_tokens"], "properties": {
    "max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}}}}


class _Request(BaseModel):
    """The fields both generation requests share. Every bound the gateway checks that does not depend
    on the served model is stated here, so the OpenAPI document says what the server accepts; the
    bounds that do (model names, token ids, max_tokens) are filled into the document at start-up by
    `control_plane.gateway.contract`."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=_ONE_LIMIT)

    model: str = Field(description="a model id from /v1/models")
    max_tokens: PositiveInt | None = Field(None, description="tokens to generate (default: the gateway's)")
    max_completion_tokens: PositiveInt | None = Field(None,
                                              description="alias of max_tokens (newer OpenAI name)")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    n: OnlyOne = Field(1, description="only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Annotated[str, Field(min_length=1)] | Annotated[
        list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP)] | None = Field(
        None, description=f"up to {MAX_STOP} non-empty stop strings")
    seed: Seed | None = None
    user: str | None = None
    # extensions
    top_k: TopK = Field(0, description="extension: top-k sampling, 0 = off")
    ignore_eos: bool = Field(False, description="extension: generate exactly max_tokens")
    slo_class: str = Field("", description="extension: SLO class hint; empty = default",
                           json_schema_extra={"enum": list(SLO_PRIORITY)})
    session_id: str = Field("", description="extension: session id for worker affinity")
    tenant: str = Field("", description="extension: must equal the API key's tenant when set (else 403)")

    @field_validator("slo_class")
    @classmethod
    def _known_slo_class(cls, value: str) -> str:
        if value not in SLO_PRIORITY:
            raise ValueError(f"unknown SLO class {value!r}; one of {', '.join(k for k in SLO_PRIORITY if k)}")
        return value

    @model_validator(mode="after")
    def _one_limit(self) -> _Request:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return self

    @field_validator("n", mode="before")  # before the bounds, so the refusal says why
    @classmethod
    def _only_one(cls, value: object) -> object:
        if value != 1 or isinstance(value, bool):
            raise ValueError(f"only n = 1 is supported, got {value}")
        return value


NonEmptyText = Annotated[str, Field(min_length=1)]


class CompletionRequest(_Request):
    prompt: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=1)] | Annotated[
        list[TokenId], Field(min_length=1)] = Field(
        description="text, a one-element list of text, or token ids")
    logprobs: OnlyZero | None = Field(None, description="not supported: only 0 or null")
    echo: Literal[False] = Field(False, description="not supported: only false")

    @field_validator("echo", mode="before")
    @classmethod
    def _no_echo(cls, value: object) -> object:
        if value is True:
            raise ValueError("echo is not supported")
        if value is not False:  # Literal[False] alone would take 0, which equals False
            raise ValueError("must be false")
        return value


class TextPart(BaseModel):
    """An OpenAI content part; the text of `text` parts is used, other parts are ignored."""

    model_config = _STRICT

    type: str
    text: str = ""


class ChatMessageIn(BaseModel):
    model_config = _STRICT

    role: ChatRole
    content: str | list[TextPart] = Field(description="text, or OpenAI content parts")


class ChatCompletionRequest(_Request):
    messages: list[ChatMessageIn] = Field(min_length=1)
    logprobs: Literal[False] = Field(False, description="not supported: only false")

    @field_validator("logprobs", mode="before")
    @classmethod
    def _no_logprobs(cls, value: object) -> object:
        if value is True:
            raise ValueError("logprobs are not supported")
        if value is not False:  # Literal[False] alone would take 0, which equals False
            raise ValueError("must be false")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: Any = None


class _Response(BaseModel):
    """What both generation responses carry besides `object` and `choices`."""

    id: str
    created: int
    model: str
    usage: Usage
    route: RouteInfo


class CompletionResponse(_Response):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str | None
    logprobs: Any = None


class ChatCompletionResponse(_Response):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class _Chunk(BaseModel):
    """One server-sent event of a streamed generation. The last chunk carries `usage` and `route`;
    with `stream_options.include_usage` one more follows with `usage` and no choices."""

    id: str
    created: int
    model: str
    usage: Usage | None = None
    route: RouteInfo | None = None


class CompletionChunk(_Chunk):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None
    logprobs: Any = None


class ChatCompletionChunk(_Chunk):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "heteroserve"
    max_context_tokens: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
