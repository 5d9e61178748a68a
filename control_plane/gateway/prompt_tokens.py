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
(`capacity` chunks kept and as many first sightings).

Below the chunks, every text is tokenized piece by piece: cut at *every* such space, a text's pieces
are mostly single space-led words (" word,"), and the ids of each distinct piece are kept
(`piece_capacity` of them; the table is emptied when full), as a BPE's own word cache keeps the merges
of a word. Tokenizing a 2,000-token prompt this way is a few hundred dict lookups: 0.24 ms instead of
the tokenizer call's 0.52 ms on an idle gateway (the call's fixed costs and its cold Rust tables;
docs/benchmarks.md, bench gateway). Pieces seen for the first time are encoded in one batch call. This is
a word cache, not a prompt cache: it holds the same ids for a piece whatever prompt it came from.
Not thread-safe: the gateway's event loop uses it.
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
                 capacity: int = 16384, piece_capacity: int = 65536, verify: int = 64) -> None:
        if chunk_chars < 1:
            raise ValueError(f"chunk_chars: must be >= 1, got {chunk_chars}")
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        if piece_capacity < 1:
            raise ValueError(f"piece_capacity: must be >= 1, got {piece_capacity}")
        self._tokenizer = tokenizer
        self.chunk_chars = chunk_chars
        self.capacity = capacity
        self.verify_left = verify
        self.chunking = self.supports(tokenizer_json)
        self._ids: OrderedDict[str, list[int]] = OrderedDict()  # shared chunk -> its ids
        self._first_seen: OrderedDict[str, int] = OrderedDict()  # chunk -> hash of its first prompt
        self.piece_capacity = piece_capacity
        self._pieces: dict[str, list[int]] = {}  # piece (one cut at every space) -> its ids
        self._before, self._after = self._special_ids()

    @property
    def kept(self) -> int:
        """Chunks whose ids are kept."""
        return len(self._ids)

    @property
    def pieces(self) -> int:
        """Pieces whose ids are kept."""
        return len(self._pieces)

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
        if not self.chunking:
            return self._whole(text)
        if len(text) < 2 * self.chunk_chars:
            ids = [*self._before, *self._by_pieces(text), *self._after]
            return self._verified(text, ids) if self.verify_left > 0 else ids
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
        """Fill `parts[i]` for every missing chunk, piece by piece (`_by_pieces`); a chunk seen before
        in another prompt is kept."""
        for i in missing:
            ids = self._by_pieces(chunks[i])
            parts[i] = ids
            if self._first_seen.get(chunks[i], prompt) != prompt:
                self._keep(chunks[i], ids)

    def _by_pieces(self, text: str) -> list[int]:
        """The ids of `text` (no special ids): the kept ids of each piece, the new pieces encoded in
        one call. Exact by the cut rule (module docstring)."""
        cut = _CUT.split(text)
        keys = [cut[0], *[" " + piece for piece in cut[1:]]]
        table = self._pieces
        ids: list[int] = []
        for key in keys:
            known = table.get(key)
            if known is None:
                break
            ids += known
        else:
            return ids
        new = [key for key in dict.fromkeys(keys) if key not in table]
        if len(table) + len(new) > self.piece_capacity:
            table.clear()  # simpler than LRU, and rare: the next prompts refill the common pieces
        for key, encoding in zip(new, self._tokenizer.encode_batch_fast(new, add_special_tokens=False),
                                 strict=True):
            table[key] = encoding.ids
        ids = []
        for key in keys:
            ids += table[key] if key in table else self._plain(key)
        return ids

    def _plain(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode_batch_fast([text], add_special_tokens=False)[0].ids
        return ids

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
            self._pieces.clear()
            log.error("chunked tokenization differs from the tokenizer's on a %d-character prompt; "
                      "prompt chunk cache off", len(text))
        return whole
