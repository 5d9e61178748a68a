"""Incremental detokenization equals one-shot decoding, including multi-byte characters."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from workers.engine.detokenizer import Detokenizer

TEXT = "Café au lait, 東京の雨 — naïve ünïcödé 🙂 and plain words."


def test_streamed_text_equals_full_decode_and_never_has_replacement_chars(tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    ids = tokenizer.encode(TEXT, add_special_tokens=False).ids
    assert len(ids) > len(TEXT.split())  # multi-byte characters span several tokens
    detok = Detokenizer(tokenizer, [1], stop=())
    pieces = []
    for token in ids:
        detok.push(token)
        pieces.append(detok.take(final=False))
    pieces.append(detok.take(final=True))
    assert "".join(pieces) == TEXT
    assert all("\ufffd" not in p for p in pieces)


def test_stop_string_split_across_tokens_is_held_back_then_cut(tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    ids = tokenizer.encode(TEXT, add_special_tokens=False).ids
    detok = Detokenizer(tokenizer, [1], stop=("lait, 東",))
    emitted = ""
    for token in ids:
        detok.push(token)
        emitted += detok.take(final=False)
        if detok.stopped:
            break
    assert detok.stopped and emitted == "Café au "
