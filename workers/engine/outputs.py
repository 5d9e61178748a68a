"""Per-request output processing: append a sampled token, detokenize, decide whether to finish.

Finish rules, checked in this order after each token:
1. a stop token id (`sampling.stop_token_ids`, or the model's EOS unless `ignore_eos`) -> "stop";
   the token is reported but adds no text;
2. a stop string appeared in the text -> "stop" (the text is cut before it);
3. `num_generated_before` + generated tokens reached `max_tokens` -> "length";
4. the sequence fills the model's context -> "length".
"""

from __future__ import annotations

import random
from collections.abc import Sequence as Seq

import torch
from tokenizers import Tokenizer

from workers.engine.detokenizer import Detokenizer
from workers.engine.sequence import Sequence
from workers.engine.types import FinishReason, TokenEvent


class RequestState:
    def __init__(self, seq: Sequence, tokenizer: Tokenizer, eos_token_ids: Seq[int],
                 max_context: int) -> None:
        sampling = seq.request.sampling
        self.seq = seq
        self.detokenizer = Detokenizer(tokenizer, seq.request.prompt_token_ids, sampling.stop)
        self.stop_ids = set(sampling.stop_token_ids) | (set() if sampling.ignore_eos else set(eos_token_ids))
        self.max_context = max_context
        self.generator = torch.Generator()
        self.generator.manual_seed(sampling.seed if sampling.seed is not None else random.getrandbits(63))
        self.first_event_sent = False

    def append(self, token_id: int, logprob: float | None) -> TokenEvent:
        seq, sampling = self.seq, self.seq.request.sampling
        seq.token_ids.append(token_id)
        finish: FinishReason | None = None
        if token_id in self.stop_ids:
            finish = "stop"
        else:
            self.detokenizer.push(token_id)
            if self.detokenizer.stopped:
                finish = "stop"
        full = seq.num_generated >= sampling.max_tokens or seq.num_tokens >= self.max_context
        if finish is None and full:
            finish = "length"
        first = not self.first_event_sent
        self.first_event_sent = True
        return TokenEvent(
            request_id=seq.request_id,
            token_id=token_id,
            text=self.detokenizer.take(final=finish is not None),
            logprob=logprob if sampling.logprobs else None,
            finish_reason=finish,
            num_prompt_tokens=seq.num_prompt_tokens if first else 0,
            num_cached_prompt_tokens=seq.num_cached_tokens if first else 0,
        )
