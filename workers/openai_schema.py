"""Request bodies of the worker's OpenAI-compatible HTTP front (workers/openai_http.py).

The gateway's own request models (`common/openai_request.py`), as strict, with two allowances that
routers in front of vLLM servers rely on: `model` may be left out (it is then "", this worker's one
model), and `top_k: -1` means off, as in vLLM.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator, model_validator

from common import openai_request as oa
from heteroserve.v1 import common_pb2


class _VLLMAllowances(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _model_optional(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" not in data:
            return {**data, "model": ""}
        return data

    @field_validator("top_k", mode="before", check_fields=False)
    @classmethod
    def _vllm_top_k(cls, value: object) -> object:
        return 0 if value == -1 and not isinstance(value, bool) else value


class CompletionRequest(oa.CompletionRequest, _VLLMAllowances):
    model_config = oa.CompletionRequest.model_config


class ChatRequest(oa.ChatCompletionRequest, _VLLMAllowances):
    model_config = oa.ChatCompletionRequest.model_config


OpenAIRequest = CompletionRequest | ChatRequest


def sampling(body: OpenAIRequest, max_tokens: int) -> common_pb2.SamplingParams:
    """The request's sampling as the worker's gRPC message."""
    params = common_pb2.SamplingParams(max_tokens=max_tokens, temperature=body.temperature,
                                       top_p=body.top_p, top_k=body.top_k, stop=list(body.stops()),
                                       ignore_eos=body.ignore_eos)
    if body.seed is not None:
        params.seed = body.seed
    return params
