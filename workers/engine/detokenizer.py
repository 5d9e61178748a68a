"""Incremental detokenization and stop strings for one request.

Token ids are decoded in a sliding window (the technique of vLLM and HF's TextStreamer): the text of
ids[prefix:] minus the text of ids[prefix:read] is the new text, committed only when it does not end in
an incomplete UTF-8 sequence (U+FFFD). The window starts with the last few prompt tokens, so the first
generated token is decoded in context. Stop strings are searched in the generated text; the text from
the stop string on is cut. Streaming holds back `longest stop string - 1` characters, so no emitted text
is ever retracted.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer

_CONTEXT_TOKENS = 6


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int], stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.text = ""
        self.stop = tuple(stop)
        self.holdback = max((len(s) for s in self.stop), default=1) - 1
        self.num_emitted = 0
        self.stopped = False

    def push(self, token_id: int) -> None:
        """Add one generated token; sets `stopped` when a stop string appeared (and cuts the text)."""
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix_text = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        new_text = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return
        start = max(0, len(self.text) - self.holdback)
        self.text += new_text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        if self.stop:
            self._cut_at_stop(start)

    def _cut_at_stop(self, start: int) -> None:
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def take(self, final: bool) -> str:
        """The text not yet emitted; while not `final`, minus the held-back tail."""
        end = len(self.text)
        if not (final or self.stopped):
            end = max(self.num_emitted, end - self.holdback)
        delta = self.text[self.num_emitted : end]
        self.num_emitted = end
        return delta
