"""Translation between heteroserve's engine vocabulary and vLLM's.

In: an `EngineRequest` (already validated: `SamplingParams` checks every field, the servicer checks the
prompt against the model's limits) → vLLM `SamplingParams` with the same semantics:
- `temperature` 0 is greedy; `top_k` 0 is off (vLLM's 0 too); `top_p`, `seed`, `stop`,
  `stop_token_ids`, `ignore_eos` map one to one; stop strings are cut from the text, as ours are.
- `max_tokens` counts `num_generated_before` tokens produced elsewhere (P/D, migration), so vLLM gets
  the rest; it stops at the context's end like the native engine ("length").
- `logprobs` asks for the sampled token's logprob only (vLLM's `logprobs=0`), on the raw logits.
- `output_kind` DELTA: each `RequestOutput` carries only the new tokens, one `TokenEvent` per token.

Out: a DELTA `RequestOutput` → `TokenEvent`s; the last carries the finish reason ("stop", "length",
"abort"), the first the prompt and cached-prompt token counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.engine.types import EngineRequest, FinishReason, TokenEvent

if TYPE_CHECKING:
    from vllm import RequestOutput
    from vllm import SamplingParams as VLLMSamplingParams

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


def to_vllm_sampling(request: EngineRequest, max_model_len: int) -> VLLMSamplingParams:
    """vLLM's `SamplingParams` for `request` (see the module docstring for the mapping)."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.sampling_params import RequestOutputKind

    s = request.sampling
    remaining = s.max_tokens - request.num_generated_before
    room = max_model_len - len(request.prompt_token_ids)
    return VLLMSamplingParams(
        n=1,
        max_tokens=max(1, min(remaining, room)),
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        seed=s.seed,
        stop=list(s.stop) or None,
        stop_token_ids=list(s.stop_token_ids) or None,
        ignore_eos=s.ignore_eos,
        logprobs=0 if s.logprobs else None,
        skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA,
    )


def to_token_events(request_id: str, output: RequestOutput, *, first: bool) -> list[TokenEvent]:
    """The `TokenEvent`s of one DELTA output: one per new token; a final output without a new token
    (an abort) gives one event with `token_id` None. Events carry `request_id` (the caller's id: vLLM
    may rename requests internally). The text of the output rides on its last event
    (vLLM detokenizes per step, not per token)."""
    completion = output.outputs[0]
    finish = _finish_reason(completion.finish_reason) if output.finished else None
    token_ids = list(completion.token_ids)
    logprobs = _sampled_logprobs(completion.logprobs, token_ids)
    prompt_tokens = len(output.prompt_token_ids or ())
    cached = int(output.num_cached_tokens or 0)
    if not token_ids:
        if finish is None:
            return []
        return [TokenEvent(request_id, None, completion.text, None, finish,
                           prompt_tokens if first else 0, cached if first else 0)]
    events = []
    last = len(token_ids) - 1
    for i, token_id in enumerate(token_ids):
        head = first and i == 0
        events.append(TokenEvent(
            request_id=request_id, token_id=int(token_id),
            text=completion.text if i == last else "",
            logprob=logprobs[i], finish_reason=finish if i == last else None,
            num_prompt_tokens=prompt_tokens if head else 0,
            num_cached_prompt_tokens=cached if head else 0))
    return events


def _finish_reason(reason: str | None) -> FinishReason:
    """vLLM's finish reason in our vocabulary; vLLM's "error" and anything new read as "abort"."""
    return _FINISH.get(reason or "abort", "abort")


def _sampled_logprobs(logprobs: Any, token_ids: list[int]) -> list[float | None]:
    """The sampled tokens' logprobs (vLLM gives, per position, a dict token id → Logprob)."""
    if not logprobs:
        return [None] * len(token_ids)
    return [float(step[t].logprob) if t in step else None
            for step, t in zip(logprobs, token_ids, strict=False)]
