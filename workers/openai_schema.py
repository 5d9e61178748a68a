"""Request bodies of the worker's OpenAI-compatible HTTP front (workers/openai_http.py).

OpenAI's fields plus vLLM's sampling extensions (`top_k`, `ignore_eos`), which routers pass through
unchanged. Unknown fields are ignored, as vLLM and OpenAI do. Only `n` = 1 is supported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.errors import InvalidRequestError
from heteroserve.v1 import common_pb2


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _one(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n = 1 is supported")
        return value

    def max_tokens_or(self, default: int) -> int:
        return self.max_tokens or self.max_completion_tokens or default

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def sampling(self, max_tokens: int) -> common_pb2.SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        params = common_pb2.SamplingParams(max_tokens=max_tokens, temperature=self.temperature,
                                           top_p=self.top_p, top_k=max(0, self.top_k), stop=stop,
                                           ignore_eos=self.ignore_eos)
        if self.seed is not None:
            params.seed = self.seed
        return params


class CompletionRequest(OpenAIRequest):
    prompt: str | list[str] | list[int] = Field(description="text, one text in a list, or token ids")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; content parts other than text are refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise InvalidRequestError(f"content part of type {part.get('type')!r} is not supported",
                                          field="messages")
            parts.append(str(part.get("text", "")))
        return "".join(parts)


class ChatRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
