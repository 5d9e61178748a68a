"""Golden vectors for the cluster-wide block hash: changing them breaks every stored cache block."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cache.hashing import HashKeys, hash_block_tokens, hash_prompt_blocks, root_hash

TINY = HashKeys("tiny")


def test_golden_vectors() -> None:
    assert root_hash(TINY).hex() == "5b1710f37e8a382b43cbddf3179f970e"
    hashes = hash_prompt_blocks(list(range(40)), TINY, 16)
    assert [h.hex() for h in hashes] == [
        "6991a1671ec73bae1cb75617e6ec7c77",
        "66b77e51055c3ad8f49a0e2a803cc1a1",
    ]
    salted = hash_prompt_blocks(list(range(16)), HashKeys("tiny", tenant_salt="a"), 16)
    assert salted[0].hex() == "bfdfb8926d1271c3d6170a2cdba7163e"


def test_same_digest_in_another_process() -> None:
    code = (
        "from cache.hashing import HashKeys, hash_prompt_blocks;"
        "print(hash_prompt_blocks(list(range(40)), HashKeys('tiny'), 16)[1].hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "66b77e51055c3ad8f49a0e2a803cc1a1"


def test_partial_block_has_no_hash() -> None:
    assert len(hash_prompt_blocks(list(range(15)), TINY, 16)) == 0
    assert len(hash_prompt_blocks(list(range(47)), TINY, 16)) == 2


@pytest.mark.parametrize(
    "other",
    [HashKeys("other"), HashKeys("tiny", adapter="lora1"), HashKeys("tiny", tenant_salt="t"),
     HashKeys("tiny", layout="f16")],
)
def test_extra_keys_separate_namespaces(other: HashKeys) -> None:
    tokens = list(range(32))
    assert set(hash_prompt_blocks(tokens, TINY)).isdisjoint(hash_prompt_blocks(tokens, other))


@given(st.lists(st.integers(0, 2**32 - 1), min_size=32, max_size=64))
def test_chain_depends_on_whole_prefix(tokens: list[int]) -> None:
    hashes = hash_prompt_blocks(tokens, TINY, 16)
    changed = [tokens[0] ^ 1, *tokens[1:]]
    assert all(a != b for a, b in zip(hashes, hash_prompt_blocks(changed, TINY, 16), strict=True))
    # each block hash is the chain step from its parent
    assert hashes[1] == hash_block_tokens(hashes[0], tokens[16:32], TINY)


def test_bad_block_size() -> None:
    with pytest.raises(ValueError, match="block_size"):
        hash_prompt_blocks([1, 2, 3], TINY, 0)
