"""Pydantic models of the REST API: OpenAI-compatible requests and responses, plus our extensions.

The request bodies are the shared ones of `common/openai_request.py` plus the gateway's extensions,
accepted as extra top-level body fields (the OpenAI client sends them with `extra_body=`): `slo_class`,
`session_id`, `tenant` (and the shared `top_k`, `ignore_eos`). Responses carry
an extra `route` object (which worker served, cache hits, retries) that OpenAI clients ignore; its
schema is the orchestrator's `RouteInfo` dataclass itself, so the two cannot drift apart.
Unknown request fields are ignored, as OpenAI does for fields it deprecated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from common import openai_request as oa
from control_plane.gateway.service import SLO_PRIORITY
from control_plane.orchestrator.types import RouteInfo

# Re-exported: the request parts the gateway accepts as the worker's OpenAI front does.
StreamOptions = oa.StreamOptions
TextPart = oa.TextPart
ChatMessageIn = oa.ChatMessageIn


class _Extensions(BaseModel):
    """The gateway's extensions to OpenAI's request fields."""

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


class CompletionRequest(oa.CompletionRequest, _Extensions):
    model_config = oa.CompletionRequest.model_config


class ChatCompletionRequest(oa.ChatCompletionRequest, _Extensions):
    model_config = oa.ChatCompletionRequest.model_config


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
