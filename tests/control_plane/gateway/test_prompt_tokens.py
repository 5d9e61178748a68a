"""Chunked prompt tokenization (control_plane/gateway/prompt_tokens.py) on the tiny model's real
byte-level BPE tokenizer: always the ids `Tokenizer.encode` gives, shared chunks kept, repeats not."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, normalizers

from control_plane.gateway.prompt_tokens import PromptTokens
from heteroserve.modelgen.tokenizer import corpus_text


@pytest.fixture(scope="module")
def tokenizer_json(tiny_model_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    return data


@pytest.fixture()
def tokenizer(tiny_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))


def _texts() -> list[str]:
    """Prompts sharing long prefixes, and text that stresses the cut rule: runs of spaces, tabs and
    new lines, punctuation, digits, contractions, non-ASCII letters, special-token text."""
    rnd = random.Random(0)
    words = corpus_text().split()
    doc = " ".join(rnd.choice(words) for _ in range(400))
    odd = ("It's 2024:  the  price   is 3.50$ — déjà vu, naïve café!\n\n\tTabs\tand <s> tokens </s> "
           "don't split 12345 6789 ... ?!  \u00a0nbsp  日本語 テキスト  end ")
    texts = [doc + " " + " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 80))) for _ in range(6)]
    texts += [odd * 8, doc + odd + doc, " leading space " + doc, doc + "  trailing   ", "short"]
    return texts


@pytest.mark.parametrize("chunk_chars", [1, 16, 256])
def test_ids_equal_the_tokenizers_twice_over(tokenizer: Tokenizer, tokenizer_json: dict[str, Any],
                                             chunk_chars: int) -> None:
    prompts = PromptTokens(tokenizer, tokenizer_json, chunk_chars=chunk_chars, verify=0)
    assert prompts.chunking
    for _ in range(2):  # the second round reads the kept chunks
        for text in _texts():
            assert prompts.encode(text) == tokenizer.encode(text).ids, text[:60]
    assert prompts.chunking


def test_keeps_chunks_shared_by_different_prompts_not_repeats(tokenizer: Tokenizer,
                                                              tokenizer_json: dict[str, Any]) -> None:
    prompts = PromptTokens(tokenizer, tokenizer_json, chunk_chars=64, verify=0)
    words = corpus_text().split()
    shared = " ".join(words[:300])
    first, second = shared + " " + " ".join(words[300:340]), shared + " " + " ".join(words[400:440])
    prompts.encode(first)
    prompts.encode(first)
    assert prompts.kept == 0, "a prompt sent again shares nothing with another prompt"
    prompts.encode(second)
    assert prompts.kept >= len(shared) // 64 - 2, "the shared prefix's chunks are kept"
    assert prompts.encode(second) == tokenizer.encode(second).ids


@pytest.mark.parametrize("piece_capacity", [1, 8, 65536])
def test_pieces_stay_exact_and_bounded(tokenizer: Tokenizer, tokenizer_json: dict[str, Any],
                                       piece_capacity: int) -> None:
    """Every text, short or long, goes piece by piece; a full piece table is emptied, never wrong."""
    prompts = PromptTokens(tokenizer, tokenizer_json, chunk_chars=64, piece_capacity=piece_capacity,
                           verify=0)
    texts = _texts()
    most = max(len(set(text.split())) + 1 for text in texts)  # new pieces one text can add at once
    for _ in range(2):
        for text in texts:
            assert prompts.encode(text) == tokenizer.encode(text).ids, text[:60]
            assert 0 < prompts.pieces <= max(piece_capacity, 2 * most)
    if piece_capacity == 65536:
        words = corpus_text().split()
        prompts.encode(" ".join(words[:50]))
        known = prompts.pieces
        assert prompts.encode(" ".join(reversed(words[:50]))) == tokenizer.encode(
            " ".join(reversed(words[:50]))).ids
        assert prompts.pieces <= known + 1, "the same words in another order reuse their pieces"


def test_only_the_exact_configuration_is_chunked(tokenizer_json: dict[str, Any]) -> None:
    assert PromptTokens.supports(tokenizer_json)
    variants = [{"normalizer": {"type": "Lowercase"}},
                {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}},
                {"pre_tokenizer": {**tokenizer_json["pre_tokenizer"], "add_prefix_space": True}},
                {"model": {**tokenizer_json["model"], "dropout": 0.1}},
                {"added_tokens": [{"content": "<x>", "lstrip": True}]},
                {"added_tokens": [{"content": "a b"}]}]
    for change in variants:
        assert not PromptTokens.supports({**tokenizer_json, **change}), change


def test_a_wrong_chunking_is_caught_and_turned_off(tokenizer: Tokenizer, tokenizer_json: dict[str, Any],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    tokenizer.normalizer = normalizers.Strip()  # cutting is no longer exact; the JSON still says it is
    prompts = PromptTokens(tokenizer, tokenizer_json, chunk_chars=16, verify=2)
    words = corpus_text().split()
    first, second = " ".join(words[:100]), " ".join(words[:80] + words[200:220])
    with caplog.at_level(logging.ERROR):
        assert prompts.encode(first) == tokenizer.encode(first).ids  # one piece: nothing cut yet
        assert prompts.encode(second) == tokenizer.encode(second).ids  # shared chunks cut: caught
    assert not prompts.chunking and "prompt chunk cache off" in caplog.text
    assert prompts.encode(second) == tokenizer.encode(second).ids


def test_rejects_bad_fields(tokenizer: Tokenizer, tokenizer_json: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="chunk_chars"):
        PromptTokens(tokenizer, tokenizer_json, chunk_chars=0)
    with pytest.raises(ValueError, match="capacity"):
        PromptTokens(tokenizer, tokenizer_json, capacity=0)
    with pytest.raises(ValueError, match="piece_capacity"):
        PromptTokens(tokenizer, tokenizer_json, piece_capacity=0)
