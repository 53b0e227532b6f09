"""Run-wide ingest state: the duplicate trade-id set and the string tables
that give asset class, currency and trader their dense codes."""

from __future__ import annotations

import logging
import threading

import numpy as np

from .. import feedscan as fs
from ..batch import Dictionary

log = logging.getLogger("surv_kernel.ingest")  # one logger for the package

# ---------------------------------------------------------------------------
# Run state: the duplicate set and string tables
# ---------------------------------------------------------------------------
# Serialises every change to run-wide state (dictionary codes, the trade id
# set): several desks may ingest into one Dictionaries from threads.
RUN_LOCK = threading.Lock()


class TradeIdSet:
    """The accepted trade ids of one run, as 64-bit hashes (see module doc).

    Open addressing with linear probing in a NumPy ``uint64`` table kept at
    most half full; lives on ``Dictionaries.trade_ids``.
    """

    __slots__ = ("_count", "_table")

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._table = np.zeros(_pow2_at_least(max(capacity, 16)), np.uint64)
        self._count = 0

    def reserve(self, n: int) -> None:
        """Make room for ``n`` more ids without rehashing on the way."""
        need = 2 * (self._count + int(n))
        if need > self._table.shape[0]:
            table = np.zeros(_pow2_at_least(need), np.uint64)
            fs.rehash_set(self._table, table)
            self._table = table

    def mark_duplicates(self, hashes: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        """Insert the candidate rows' hashes in order; True where a row's id was
        already present (earlier in the run or earlier in ``hashes``)."""
        self.reserve(int(np.count_nonzero(candidate)))
        duplicate = np.zeros(hashes.shape[0], np.bool_)
        self._count = fs.mark_duplicates(hashes, candidate, self._table, self._count, duplicate)
        return duplicate

    def hashes(self) -> np.ndarray:
        """The stored hashes (``uint64``, table order): what a checkpoint keeps."""
        return self._table[self._table != 0]

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Insert hashes taken from :meth:`hashes` (restoring a checkpoint);
        ones already present are left as they are."""
        hashes = np.ascontiguousarray(hashes, np.uint64)
        self.mark_duplicates(hashes, np.ones(hashes.shape[0], np.bool_))

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._table.nbytes


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


class StringTable:
    """Byte strings -> local codes for one ingest call (a native hash table,
    see ``kernels.hashing.intern_one``), plus the local -> run code mapping into a
    :class:`Dictionary`."""

    __slots__ = (
        "arena",
        "dictionary",
        "lut",
        "offsets",
        "slot_hash",
        "slots",
        "state",
        "values",
        "words",
    )

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        self.slots = np.full(256, -1, np.int64)
        self.slot_hash = np.zeros(256, np.uint64)
        self.arena = np.empty(1 << 12, np.uint8)
        self.offsets = np.zeros(129, np.int64)
        self.words = np.zeros(2 * 129, np.uint64)
        self.state = np.zeros(2, np.int64)  # [codes, arena bytes used]
        self.values: list[str] = []
        self.lut = np.full(0, -1, np.int32)

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.slots, self.slot_hash, self.arena, self.offsets, self.words, self.state

    def grow(self, length: int) -> None:
        """Room for at least one more entry of ``length`` bytes (doubling)."""
        n, used = (int(x) for x in self.state)
        if 2 * (n + 1) > self.slots.shape[0]:
            slots = np.full(2 * self.slots.shape[0], -1, np.int64)
            slot_hash = np.zeros(slots.shape[0], np.uint64)
            fs.rehash_codes(self.slot_hash, self.slots, slots, slot_hash)
            self.slots, self.slot_hash = slots, slot_hash
        if used + length > self.arena.shape[0]:
            arena = np.empty(_pow2_at_least(max(2 * self.arena.shape[0], used + length)), np.uint8)
            arena[:used] = self.arena[:used]
            self.arena = arena
        if n + 2 > self.offsets.shape[0]:
            offsets = np.zeros(2 * self.offsets.shape[0], np.int64)
            offsets[: n + 1] = self.offsets[: n + 1]
            self.offsets = offsets
            words = np.zeros(2 * offsets.shape[0], np.uint64)
            words[: 2 * n] = self.words[: 2 * n]
            self.words = words

    def sync(self) -> None:
        """Decode the values the kernels added since the last call."""
        n = int(self.state[0])
        old = len(self.values)
        if n > old:
            off = self.offsets
            arena = self.arena
            self.values.extend(
                arena[off[c] : off[c + 1]].tobytes().decode("utf-8", "surrogatepass")
                for c in range(old, n)
            )
            self.lut = np.concatenate([self.lut, np.full(n - old, -1, np.int32)])

    def intern(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Local codes of the byte strings ``buf[starts[i]:starts[i]+lengths[i]]``."""
        codes = np.empty(starts.shape[0], np.int64)
        i = 0
        while True:
            i = fs.intern_spans(buf, starts, lengths, *self.arrays, codes, i)
            if i >= starts.shape[0]:
                break
            self.grow(int(lengths[i]))
        self.sync()
        return codes

    def assign(self, codes: np.ndarray, keep: np.ndarray) -> None:
        """Give run codes (``lut``) to the values of kept rows that have none,
        in order of first appearance among kept rows (under ``RUN_LOCK``)."""
        new = np.empty(len(self.values), np.int64)
        n_new = fs.first_unassigned(codes, keep, self.lut, new)
        code = self.dictionary.code
        values = self.values
        for c in new[:n_new].tolist():
            self.lut[c] = code(values[c])
