"""Pydantic models of the REST API: OpenAI-compatible requests and responses, plus our extensions.

Extensions the OpenAI API lacks, accepted as extra top-level body fields (the OpenAI client sends
them with `extra_body=`): `slo_class`, `session_id`, `tenant`, `top_k`, `ignore_eos`. Responses carry
an extra `route` object (which worker served, cache hits, retries) that OpenAI clients ignore; its
schema is the orchestrator's `RouteInfo` dataclass itself, so the two cannot drift apart.
Unknown request fields are ignored, as OpenAI does for fields it deprecated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from control_plane.orchestrator.types import RouteInfo


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="a model id from /v1/models")
    max_tokens: int | None = Field(None, description="tokens to generate (default: the gateway's)")
    max_completion_tokens: int | None = Field(None, description="alias of max_tokens (newer OpenAI name)")
    temperature: float = Field(1.0, description="0 = greedy; at most 2")
    top_p: float = Field(1.0, description="nucleus sampling mass, in (0, 1]")
    n: int = Field(1, description="only 1 is supported")
    stream: bool = False
    stream_options: dict[str, Any] | None = Field(None, description='{"include_usage": true} adds a '
                                                  "final chunk with usage and no choices")
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    # extensions
    top_k: int = Field(0, description="extension: top-k sampling, 0 = off")
    ignore_eos: bool = Field(False, description="extension: generate exactly max_tokens")
    slo_class: str = Field("", description="extension: SLO class hint (interactive, standard, batch)")
    session_id: str = Field("", description="extension: session id for worker affinity")
    tenant: str = Field("", description="extension: must equal the API key's tenant when set")


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] = Field(description="text, a one-element list of text, or token ids")
    logprobs: int | None = None
    echo: bool = False


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessageIn]
    logprobs: bool = False


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
