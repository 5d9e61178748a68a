"""OpenAI-compatible request bodies: the one definition the gateway's REST API and the worker's OpenAI
HTTP front (workers/openai_http.py) both accept, so the two cannot drift apart.

Fields are strict, as the published schema says (a string is not a number, 0 is not false), except that
an integral float is an integer, as JSON Schema says. Unknown fields are ignored, as OpenAI does for
fields it deprecated. `top_k` and `ignore_eos` are vLLM's sampling extensions. The gateway adds its own
extensions (SLO class, session, tenant) in `control_plane/gateway/schemas.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

# The worker's seed is an int64, but JSON numbers are exact only up to 2**53 (RFC 8259, section 6).
MAX_SEED = 2**53 - 1
MAX_TOP_K = 2**31 - 1  # the worker's top_k is an int32
MAX_STOP = 16  # stop strings per request

ChatRole = Literal["system", "user", "assistant", "tool"]
CHAT_ROLES: tuple[ChatRole, ...] = get_args(ChatRole)


def _integral(value: object) -> object:
    """JSON Schema counts 1.0 as an integer: accept it as 1 (strict mode refuses "1" and true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# (Bounds go before the validator, or pydantic leaves them out of the JSON schema.)
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_integral)]
TokenId = Annotated[int, Field(ge=0), BeforeValidator(_integral)]
Seed = Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), BeforeValidator(_integral)]
TopK = Annotated[int, Field(ge=0, le=MAX_TOP_K), BeforeValidator(_integral)]
OnlyOne = Annotated[int, Field(ge=1, le=1), BeforeValidator(_integral)]
OnlyZero = Annotated[int, Field(ge=0, le=0), BeforeValidator(_integral)]
NonEmptyText = Annotated[str, Field(min_length=1)]
STRICT = ConfigDict(extra="ignore", strict=True)

# `max_tokens` and its newer alias `max_completion_tokens` may not both be set (JSON Schema can say
# "not both", not "both equal").
_ONE_LIMIT: JsonDict = {"not": {"required": ["max_tokens", "max_completion_tokens"], "properties": {
    "max_tokens": {"type": "integer"}, "max_completion_tokens": {"type": "integer"}}}}


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = Field(False, description="a final chunk with usage and no choices")


class GenerationRequest(BaseModel):
    """The fields both generation requests share, with every bound that does not depend on the served
    model (the gateway fills model names, token ids and max_tokens into its OpenAPI document at
    start-up)."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=_ONE_LIMIT)

    model: str = Field(description="a model id from /v1/models")
    max_tokens: PositiveInt | None = Field(None, description="tokens to generate (default: the server's)")
    max_completion_tokens: PositiveInt | None = Field(None,
                                              description="alias of max_tokens (newer OpenAI name)")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    n: OnlyOne = Field(1, description="only 1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: NonEmptyText | Annotated[list[NonEmptyText], Field(max_length=MAX_STOP)] | None = Field(
        None, description=f"up to {MAX_STOP} non-empty stop strings")
    seed: Seed | None = None
    user: str | None = None
    top_k: TopK = Field(0, description="extension: top-k sampling, 0 = off")
    ignore_eos: bool = Field(False, description="extension: generate exactly max_tokens")

    @model_validator(mode="after")
    def _one_limit(self) -> GenerationRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return self

    @field_validator("n", mode="before")  # before the bounds, so the refusal says why
    @classmethod
    def _only_one(cls, value: object) -> object:
        if value != 1 or isinstance(value, bool):
            raise ValueError(f"only n = 1 is supported, got {value}")
        return value

    def limit(self) -> int | None:
        """The requested output length, from either spelling; None when neither is set."""
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _only_false(refusal: str, value: object) -> object:
    if value is True:
        raise ValueError(refusal)
    if value is not False:  # Literal[False] alone would take 0, which equals False
        raise ValueError("must be false")
    return value


class CompletionRequest(GenerationRequest):
    prompt: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=1)] | Annotated[
        list[TokenId], Field(min_length=1)] = Field(
        description="text, a one-element list of text, or token ids")
    logprobs: OnlyZero | None = Field(None, description="not supported: only 0 or null")
    echo: Literal[False] = Field(False, description="not supported: only false")

    @field_validator("echo", mode="before")
    @classmethod
    def _no_echo(cls, value: object) -> object:
        return _only_false("echo is not supported", value)

    def prompt_parts(self) -> str | tuple[int, ...]:
        """The prompt as text or as token ids (the schema allows one text in a list)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if all(isinstance(p, int) for p in prompt):
            return tuple(int(p) for p in prompt)
        return str(prompt[0])


class TextPart(BaseModel):
    """An OpenAI content part; the text of `text` parts is used, other parts are ignored."""

    model_config = STRICT

    type: str
    text: str = ""


class ChatMessageIn(BaseModel):
    model_config = STRICT

    role: ChatRole
    content: str | list[TextPart] = Field(description="text, or OpenAI content parts")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if p.type == "text")


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)
    logprobs: Literal[False] = Field(False, description="not supported: only false")

    @field_validator("logprobs", mode="before")
    @classmethod
    def _no_logprobs(cls, value: object) -> object:
        return _only_false("logprobs are not supported", value)
