"""BlockTable: 128-bit block hash -> set of small-int holder ids, in flat numpy arrays.

The prefix index's storage (see cache/prefix_index.py for what a holder id means). Open addressing with
linear probing over `capacity` = 2**bits slots; slot of a key = Fibonacci hash of its low word
(`(lo * 0x9E3779B97F4A7C15 mod 2**64) >> (64 - bits)`), so structured test hashes spread too.

Per slot (24 bytes): `lo`, `hi` (uint64: the hash's two little-endian words; the full 128 bits are
compared, so a hit is exact), `h0`, `h1` (int32): h0 = 0 empty, -1 deleted (tombstone), else first
holder id + 1; h1 = 0 no second holder, else second holder id + 1, or `MORE` (-2): the block has ≥ 3
holders, all in `more[slot]` (h0 then only marks the slot live). Live + deleted slots stay ≤ 0.7 of
capacity; past that the table is rebuilt (×2 if live slots > 0.35 of capacity, else same size, which
clears tombstones) by a vectorised rehash: keys sorted by home slot are placed at
`i + cummax(home_i − i)`, linear probing's own positions, and the few that would run past the end are
re-inserted one by one (they wrap to slot 0).

Scalar paths (`add`, `discard`, `holders`) read the arrays through memoryviews, which return Python
ints without numpy scalar overhead (~10× faster per access). Not thread-safe.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

MORE = -2
_TOMB = -1
_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1
_MIN_BITS = 10
_MAX_FILL = 0.7
_WORDS = struct.Struct("<QQ")


def split_hash(h: bytes) -> tuple[int, int]:
    """(lo, hi) words of a 16-byte block hash. Raises ValueError naming the hash otherwise."""
    try:
        lo, hi = _WORDS.unpack(h)
        return lo, hi
    except struct.error:
        raise ValueError(f"block hash must be 16 bytes, got {len(h)}: {bytes(h).hex()}") from None


class BlockTable:
    def __init__(self, bits: int = _MIN_BITS) -> None:
        self._alloc(bits)
        self.num_blocks = 0  # live slots
        self._tombs = 0

    def _alloc(self, bits: int) -> None:
        cap = 1 << bits
        self._bits, self._mask, self._shift = bits, cap - 1, 64 - bits
        self._limit = int(cap * _MAX_FILL)
        self.lo = np.zeros(cap, dtype=np.uint64)
        self.hi = np.zeros(cap, dtype=np.uint64)
        self.h0 = np.zeros(cap, dtype=np.int32)
        self.h1 = np.zeros(cap, dtype=np.int32)
        self.more: dict[int, set[int]] = {}
        self._views()

    def _views(self) -> None:
        self._lo, self._hi, self._h0, self._h1 = self.lo.data, self.hi.data, self.h0.data, self.h1.data

    def _home(self, lo: int) -> int:
        return ((lo * _GOLDEN) & _M64) >> self._shift

    def find(self, lo: int, hi: int) -> int | None:
        """The slot holding this key, or None."""
        h0, klo, khi, mask = self._h0, self._lo, self._hi, self._mask
        slot = ((lo * _GOLDEN) & _M64) >> self._shift
        while True:
            a = h0[slot]
            if a == 0:
                return None
            if a > 0 and klo[slot] == lo and khi[slot] == hi:
                return slot
            slot = (slot + 1) & mask

    def holders(self, lo: int, hi: int) -> tuple[int, ...]:
        """Holder ids of this block (empty when nobody holds it)."""
        slot = self.find(lo, hi)
        if slot is None:
            return ()
        b = self._h1[slot]
        if b == MORE:
            return tuple(self.more[slot])
        return (self._h0[slot] - 1, b - 1) if b else (self._h0[slot] - 1,)

    def leading_holders(self, hashes: Sequence[bytes]) -> list[tuple[int, ...]]:
        """Holder ids of each leading block of `hashes`, up to (not including) the first block nobody
        holds. One probe sequence per block; the hot path of a routing decision."""
        if any(len(h) != 16 for h in hashes):
            bad = next(h for h in hashes if len(h) != 16)
            raise ValueError(f"block hash must be 16 bytes, got {len(bad)}: {bytes(bad).hex()}")
        h0, h1, klo, khi, mask, shift, more = self._h0, self._h1, self._lo, self._hi, self._mask, \
            self._shift, self.more
        out: list[tuple[int, ...]] = []
        for lo, hi in _WORDS.iter_unpack(b"".join(hashes)):
            slot = ((lo * _GOLDEN) & _M64) >> shift
            while True:
                a = h0[slot]
                if a == 0:
                    return out
                if a > 0 and klo[slot] == lo and khi[slot] == hi:
                    break
                slot = (slot + 1) & mask
            b = h1[slot]
            out.append(tuple(more[slot]) if b == MORE else (a - 1, b - 1) if b else (a - 1,))
        return out

    def add(self, lo: int, hi: int, hid: int) -> bool:
        """Record that `hid` holds the block; False if it already did."""
        h0, klo, khi, mask, code = self._h0, self._lo, self._hi, self._mask, hid + 1
        slot, free = ((lo * _GOLDEN) & _M64) >> self._shift, None
        while True:
            a = h0[slot]
            if a == 0:
                break
            if a == _TOMB:
                free = slot if free is None else free
            elif klo[slot] == lo and khi[slot] == hi:
                return self._add_holder(slot, a, code)
            slot = (slot + 1) & mask
        if free is None:
            free = slot
        else:
            self._tombs -= 1
        klo[free], khi[free], h0[free], self._h1[free] = lo, hi, code, 0
        self.num_blocks += 1
        if self.num_blocks + self._tombs > self._limit:
            self._rebuild()
        return True

    def _add_holder(self, slot: int, a: int, code: int) -> bool:
        b = self._h1[slot]
        if b == MORE:
            more = self.more[slot]
            if code - 1 in more:
                return False
            more.add(code - 1)
        elif a == code or b == code:
            return False
        elif b == 0:
            self._h1[slot] = code
        else:
            self.more[slot] = {a - 1, b - 1, code - 1}
            self._h1[slot] = MORE
        return True

    def add_many(self, words: np.ndarray, hid: int) -> int:
        """`add` for each row (lo, hi) of a (n, 2) uint64 array; returns how many were new."""
        add = self.add
        return sum(add(lo, hi, hid) for lo, hi in words.tolist())

    def discard(self, lo: int, hi: int, hid: int) -> bool:
        """Forget that `hid` holds the block; False if it did not."""
        slot = self.find(lo, hi)
        if slot is None:
            return False
        code, a, b = hid + 1, self._h0[slot], self._h1[slot]
        if b == MORE:
            more = self.more[slot]
            if hid not in more:
                return False
            more.discard(hid)
            if len(more) == 2:
                x, y = sorted(more)
                self._h0[slot], self._h1[slot] = x + 1, y + 1
                del self.more[slot]
        elif a == code:
            if b:
                self._h0[slot], self._h1[slot] = b, 0
            else:
                self._h0[slot] = _TOMB
                self.num_blocks -= 1
                self._tombs += 1
        elif b == code:
            self._h1[slot] = 0
        else:
            return False
        return True

    def drop_holders(self, hids: list[int]) -> None:
        """Forget every block of these holders: one vectorised scan of the table plus the ≥3 sets."""
        codes = np.asarray([h + 1 for h in hids], dtype=np.int32)
        m0 = np.isin(self.h0, codes) & (self.h1 != MORE)  # in a MORE slot h0 is only a live mark
        m1 = np.isin(self.h1, codes)
        self.h1[m1] = 0
        move = m0 & (self.h1 > 0)
        self.h0[move] = self.h1[move]
        self.h1[move] = 0
        dead = m0 & ~move
        self.h0[dead] = _TOMB
        gone = int(np.count_nonzero(dead))
        drop = set(hids)
        for slot in [s for s, more in self.more.items() if not more.isdisjoint(drop)]:
            more = self.more[slot] - drop
            if len(more) >= 3:
                self.more[slot] = more
                continue
            del self.more[slot]
            left = sorted(more)
            self._h0[slot] = left[0] + 1 if left else _TOMB
            self._h1[slot] = left[1] + 1 if len(left) == 2 else 0
            gone += not left
        self.num_blocks -= gone
        self._tombs += gone

    def _rebuild(self) -> None:
        live = np.flatnonzero(self.h0 > 0)
        lo, hi, h0, h1, more = self.lo[live], self.hi[live], self.h0[live], self.h1[live], self.more
        bits = self._bits + 1 if len(live) > (1 << self._bits) * _MAX_FILL / 2 else self._bits
        self._alloc(bits)
        with np.errstate(over="ignore"):  # the multiply is meant to wrap mod 2**64
            home = ((lo * np.uint64(_GOLDEN)) >> np.uint64(self._shift)).astype(np.int64)
        order = np.argsort(home, kind="stable")
        home, rank = home[order], np.arange(len(order), dtype=np.int64)
        pos = np.maximum.accumulate(home - rank) + rank
        fits = pos <= self._mask
        placed, at = order[fits], pos[fits]
        self.lo[at], self.hi[at], self.h0[at], self.h1[at] = lo[placed], hi[placed], h0[placed], h1[placed]
        many = h1[placed] == MORE  # only the few ≥3-holder slots go through Python
        self.more = {new: more[int(live[old])]
                     for old, new in zip(placed[many].tolist(), at[many].tolist(), strict=True)}
        self.num_blocks, self._tombs = len(placed), 0
        for old in order[~fits].tolist():  # ran past the last slot: wrap around to slot 0 one by one
            self._place(int(lo[old]), int(hi[old]), int(h0[old]), int(h1[old]), more.get(int(live[old])))

    def _place(self, lo: int, hi: int, a: int, b: int, more: set[int] | None) -> None:
        slot = self._home(lo)
        while self._h0[slot] != 0:
            slot = (slot + 1) & self._mask
        self._lo[slot], self._hi[slot], self._h0[slot], self._h1[slot] = lo, hi, a, b
        if more is not None:
            self.more[slot] = more
        self.num_blocks += 1

    def items(self) -> list[tuple[bytes, tuple[int, ...]]]:
        """Every live (hash bytes, holder ids)."""
        out = []
        for slot in np.flatnonzero(self.h0 > 0).tolist():
            lo, hi = self._lo[slot], self._hi[slot]
            out.append((_WORDS.pack(lo, hi), self.holders(lo, hi)))
        return out

    def blocks_by_holder(self, num_holders: int) -> dict[int, np.ndarray]:
        """holder id -> its blocks as a (n, 2) '<u8' array, rows sorted by the hash's bytes."""
        slots: dict[int, list[np.ndarray]] = {}
        inline = self.h1 != MORE
        for arr, mask in ((self.h0, inline & (self.h0 > 0)), (self.h1, self.h1 > 0)):
            where = np.flatnonzero(mask)
            codes = arr[where]
            order = np.argsort(codes, kind="stable")
            where, codes = where[order], codes[order]
            bounds = np.flatnonzero(np.diff(codes)) + 1
            for chunk in np.split(where, bounds):
                if len(chunk):
                    slots.setdefault(int(arr[chunk[0]]) - 1, []).append(chunk)
        for slot, more in self.more.items():
            for hid in more:
                slots.setdefault(hid, []).append(np.asarray([slot], dtype=np.int64))
        out = {}
        for hid, parts in slots.items():
            s = np.concatenate(parts)
            # bytes order = big-endian order of lo, then of hi
            s = s[np.lexsort((self.hi[s].byteswap(), self.lo[s].byteswap()))]
            out[hid] = np.stack([self.lo[s], self.hi[s]], axis=1).astype("<u8")
        return out

    def check_integrity(self, num_holders: int) -> list[int]:
        """Assert the slot invariants; return the number of blocks per holder id."""
        counts = [0] * num_holders
        live = np.flatnonzero(self.h0 > 0).tolist()
        assert len(live) == self.num_blocks, f"{len(live)} live slots, counted {self.num_blocks}"
        assert int(np.count_nonzero(self.h0 == _TOMB)) == self._tombs, "tombstone count drifted"
        assert set(self.more) <= set(live), "a ≥3-holder set left on a dead slot (drop_holders bug)"
        for slot in live:
            lo, hi = self._lo[slot], self._hi[slot]
            assert self.find(lo, hi) == slot, f"slot {slot} unreachable from its home (probe chain broken)"
            b = self._h1[slot]
            hids = self.holders(lo, hi)
            assert (b == MORE) == (slot in self.more), f"slot {slot}: MORE mark and side set disagree"
            assert len(set(hids)) == len(hids) and (b != MORE or len(hids) >= 3), f"slot {slot}: {hids}"
            for hid in hids:
                counts[hid] += 1
        return counts
