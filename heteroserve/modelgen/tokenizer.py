"""Train the byte-level BPE tokenizer of a generated model.

The training text is the bundled `corpus.txt` (original prose) plus pseudo-words made by splicing a
prefix of one corpus word onto a suffix of another, drawn from a fixed-seed generator, so that even the
8k vocabulary of the `bench` preset has enough distinct merges to fill it. The trainer is deterministic
(merge ties break on pair ids, which follow the sorted byte alphabet), so the same vocabulary size always
gives byte-identical `tokenizer.json`.

Special tokens come first: `<unk>` = 0, `<s>` = 1 (bos, prepended by the post-processor), `</s>` = 2
(eos), `<pad>` = 3.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
_TOKENIZER_SEED = 1234  # fixed: the tokenizer does not depend on the weight seed


def corpus_text() -> str:
    return resources.files("heteroserve.modelgen").joinpath("corpus.txt").read_text(encoding="utf-8")


def _training_lines(vocab_size: int) -> list[str]:
    text = corpus_text()
    words = sorted(set(re.findall(r"[a-z]+", text.lower())))
    rng = np.random.default_rng(_TOKENIZER_SEED)
    num_words = vocab_size * 4
    a = rng.integers(0, len(words), num_words)
    b = rng.integers(0, len(words), num_words)
    cut = rng.random((num_words, 2))
    spliced = []
    for i in range(num_words):
        left, right = words[a[i]], words[b[i]]
        spliced.append(left[: 1 + int(cut[i, 0] * len(left))] + right[int(cut[i, 1] * len(right)):])
    lines = text.splitlines()
    lines += [" ".join(spliced[i : i + 12]) for i in range(0, num_words, 12)]
    return lines


def train_tokenizer(vocab_size: int) -> Tokenizer:
    """A byte-level BPE with exactly `vocab_size` tokens (special tokens included)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_lines(vocab_size), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    got = tokenizer.get_vocab_size()
    if got != vocab_size:
        raise RuntimeError(f"tokenizer training produced {got} tokens, wanted {vocab_size}")
    return tokenizer
