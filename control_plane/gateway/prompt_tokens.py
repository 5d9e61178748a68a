"""Token ids of prompt text, with text chunks that different prompts share tokenized once.

Why: tokenizing is the largest part of the gateway's own time on a request (about 0.5 ms for a
2,000-token prompt; docs/benchmarks.md, bench gateway), and prompts that share a system prompt, a
document or a conversation history share most of their text.

When it is exact: a byte-level BPE with GPT-2's split regex and no normalizer tokenizes each
pre-token on its own, and a space between two non-space characters always starts a pre-token (the
regex's ` ?\\p{L}+`, ` ?\\p{N}+`, ` ?[^\\s\\p{L}\\p{N}]+`) while the pre-token before it ends there (only
`\\s+` runs hold a space past their first character). So a text cut at such spaces tokenizes as the
concatenation of its pieces' ids, between the special ids the post-processor adds around the whole.
`PromptTokens.supports(tokenizer_json)` accepts only that configuration (added tokens without spaces
and without lstrip/rstrip/single_word, no BPE dropout); any other tokenizer encodes the whole text
each time. As a guard, the first `verify` chunked encodings are compared with a whole encoding; a
difference turns chunking off for good (logged) and the whole encoding is returned.

What is cached: the text is cut at the first such space at or after every `chunk_chars` characters
from the previous cut, so two prompts with a common prefix cut it the same way. A chunk's ids are kept
once the chunk has appeared in two prompts whose full texts differ: a prefix really shared, not a
prompt sent again (a repeated prompt reuses only what it shares with a different one). LRU-bounded
(`capacity` chunks kept and as many first sightings). Not thread-safe: the gateway's event loop uses it.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from tokenizers import Tokenizer

log = logging.getLogger(__name__)

_CUT = re.compile(r"(?<=\S) (?=\S)")
_PROBE = "probe text"


class PromptTokens:
    def __init__(self, tokenizer: Tokenizer, tokenizer_json: dict[str, Any], *, chunk_chars: int = 256,
                 capacity: int = 16384, verify: int = 64) -> None:
        if chunk_chars < 1:
            raise ValueError(f"chunk_chars: must be >= 1, got {chunk_chars}")
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self._tokenizer = tokenizer
        self.chunk_chars = chunk_chars
        self.capacity = capacity
        self.verify_left = verify
        self.chunking = self.supports(tokenizer_json)
        self._ids: OrderedDict[str, list[int]] = OrderedDict()  # shared chunk -> its ids
        self._first_seen: OrderedDict[str, int] = OrderedDict()  # chunk -> hash of its first prompt
        self._before, self._after = self._special_ids()

    @property
    def kept(self) -> int:
        """Chunks whose ids are kept."""
        return len(self._ids)

    @staticmethod
    def supports(tokenizer_json: dict[str, Any]) -> bool:
        """True only where cutting at spaces is exact (module docstring)."""
        pre = tokenizer_json.get("pre_tokenizer") or {}
        model = tokenizer_json.get("model") or {}
        added = tokenizer_json.get("added_tokens") or []
        return (tokenizer_json.get("normalizer") is None and pre.get("type") == "ByteLevel"
                and bool(pre.get("use_regex", True)) and not pre.get("add_prefix_space", False)
                and model.get("type") == "BPE" and not model.get("dropout")
                and all(not any(ch.isspace() for ch in str(t.get("content", " ")))
                        and not (t.get("lstrip") or t.get("rstrip") or t.get("single_word"))
                        for t in added))

    def encode(self, text: str) -> list[int]:
        """The ids `Tokenizer.encode(text).ids` gives."""
        if not self.chunking or len(text) < 2 * self.chunk_chars:
            return self._whole(text)
        chunks = self._chunks(text)
        prompt = hash(text)
        parts = [self._lookup(chunk, prompt) for chunk in chunks]
        missing = [i for i, part in enumerate(parts) if part is None]
        if missing:
            self._encode_missing(chunks, parts, missing, prompt)
        ids = list(self._before)
        for part in parts:
            ids.extend(part or ())
        ids.extend(self._after)
        return self._verified(text, ids) if self.verify_left > 0 else ids

    def _encode_missing(self, chunks: list[str], parts: list[list[int] | None], missing: list[int],
                        prompt: int) -> None:
        """Fill `parts[i]` for every missing chunk in one call. A chunk to keep (seen before in another
        prompt) is encoded alone; consecutive chunks not kept are encoded joined, as one text (exact
        by the cut rule): usually the whole new tail in one piece, so the call has a single input and
        tokenizers' thread pool, whose wake-ups cost more than the work here, is not used."""
        pieces: list[list[str]] = []
        heads: list[int] = []
        keeps: list[bool] = []
        for i in missing:
            keep = self._first_seen.get(chunks[i], prompt) != prompt
            if not keep and pieces and not keeps[-1] and heads[-1] + len(pieces[-1]) == i:
                pieces[-1].append(chunks[i])
                parts[i] = []
                continue
            pieces.append([chunks[i]])
            heads.append(i)
            keeps.append(keep)
        encoded = self._tokenizer.encode_batch_fast(["".join(p) for p in pieces], add_special_tokens=False)
        for head, keep, encoding in zip(heads, keeps, encoded, strict=True):
            parts[head] = encoding.ids
            if keep:
                self._keep(chunks[head], encoding.ids)

    def _whole(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode_batch_fast([text])[0].ids
        return ids

    def _chunks(self, text: str) -> list[str]:
        chunks, start, n = [], 0, len(text)
        while start < n:
            cut = _CUT.search(text, start + self.chunk_chars) if start + self.chunk_chars < n else None
            end = cut.start() if cut else n
            chunks.append(text[start:end])
            start = end
        return chunks

    def _lookup(self, chunk: str, prompt: int) -> list[int] | None:
        """The chunk's kept ids, or None (then its first sighting is recorded)."""
        ids = self._ids.get(chunk)
        if ids is not None:
            self._ids.move_to_end(chunk)
            return ids
        self._first_seen.setdefault(chunk, prompt)
        self._first_seen.move_to_end(chunk)
        if len(self._first_seen) > self.capacity:
            self._first_seen.popitem(last=False)
        return None

    def _keep(self, chunk: str, ids: list[int]) -> None:
        self._ids[chunk] = ids
        self._first_seen.pop(chunk, None)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def _special_ids(self) -> tuple[list[int], list[int]]:
        """The ids the post-processor puts before and after a single text's own ids."""
        plain = self._tokenizer.encode_batch_fast([_PROBE], add_special_tokens=False)[0].ids
        full = self._tokenizer.encode_batch_fast([_PROBE])[0].ids
        for i in range(len(full) - len(plain) + 1):
            if full[i:i + len(plain)] == plain:
                return list(full[:i]), list(full[i + len(plain):])
        self.chunking = False  # the post-processor rewrites the text's own ids: never cut
        return [], []

    def _verified(self, text: str, ids: list[int]) -> list[int]:
        self.verify_left -= 1
        whole = self._whole(text)
        if whole != ids:
            self.chunking = False
            self._ids.clear()
            self._first_seen.clear()
            log.error("chunked tokenization differs from the tokenizer's on a %d-character prompt; "
                      "prompt chunk cache off", len(text))
        return whole
