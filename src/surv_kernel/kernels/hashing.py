"""Hashing, interning and duplicate detection of byte spans: jitted code
only (plus :func:`hash_bytes`, the pure-Python twin the tests and the
default-currency code use).

Strings are hashed eight bytes at a step (see :func:`hash_span`). The hash is
deterministic (unlike Python's salted ``hash``), so duplicate detection gives
the same answer in every process and for every chunking.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import U0, U1, U8, U16, U24, U29, U32, U33, U40, U48, U56

_HASH_SEED = np.uint64(0x243F6A8885A308D3)  # digits of pi: nothing up the sleeve
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)


# Hashing, interning, duplicate detection
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, _nrt=False)
def hash_span(buf, start, length):
    """``(hash, w0, w1)`` of ``buf[start:start+length]``: a 64-bit hash and the
    first 16 bytes as two little-endian words (zero-padded).

    The hash takes eight bytes per step: each word is xored into the state,
    which is then multiplied by an odd constant and xor-shifted (a bijection
    of the state, so two strings that first differ in one word cannot meet
    again by accident); the length seeds the state and murmur3's fmix64
    finishes it. The two words let a string table confirm equality of short
    strings with two integer compares instead of a byte loop.
    """
    h = _HASH_SEED ^ (np.uint64(length) * _HASH_MUL)
    w0 = U0
    w1 = U0
    i = start
    stop = start + length
    step = 0
    while i < stop:
        if i + 8 <= stop:
            w = (
                np.uint64(buf[i])
                | (np.uint64(buf[i + 1]) << U8)
                | (np.uint64(buf[i + 2]) << U16)
                | (np.uint64(buf[i + 3]) << U24)
                | (np.uint64(buf[i + 4]) << U32)
                | (np.uint64(buf[i + 5]) << U40)
                | (np.uint64(buf[i + 6]) << U48)
                | (np.uint64(buf[i + 7]) << U56)
            )
            i += 8
        else:
            w = U0
            shift = U0
            while i < stop:
                w |= np.uint64(buf[i]) << shift
                shift += U8
                i += 1
        if step == 0:
            w0 = w
        elif step == 1:
            w1 = w
        step += 1
        h = (h ^ w) * _HASH_MUL
        h ^= h >> U29
    h ^= h >> U33
    h *= _FMIX1
    h ^= h >> U33
    h *= _FMIX2
    h ^= h >> U33
    return h, w0, w1


@njit(cache=True, nogil=True, _nrt=False)
def hash_spans(buf, starts, lengths, out):
    for i in range(starts.shape[0]):
        out[i] = hash_span(buf, starts[i], lengths[i])[0]


@njit(cache=True, nogil=True, _nrt=False)
def intern_spans(buf, starts, lengths, slots, slot_hash, arena, offsets, words, state, out, i):
    """Codes of the spans ``buf[starts[r]:starts[r]+lengths[r]]`` from row
    ``i`` on, into ``out``; returns the first row that did not fit
    (``len(starts)`` when done): grow the table and call again."""
    while i < starts.shape[0]:
        h, w0, w1 = hash_span(buf, starts[i], lengths[i])
        c = intern_one(
            buf, starts[i], lengths[i], h, w0, w1, slots, slot_hash, arena, offsets, words, state
        )
        if c < 0:
            return i
        out[i] = c
        i += 1
    return i


@njit(cache=True, nogil=True, _nrt=False)
def rehash_codes(slot_hash_old, slots_old, slots, slot_hash):
    mask = slots.shape[0] - 1
    for i in range(slots_old.shape[0]):
        c = slots_old[i]
        if c >= 0:
            h = slot_hash_old[i]
            j = np.int64(h & np.uint64(mask))
            while slots[j] >= 0:
                j = (j + 1) & mask
            slots[j] = c
            slot_hash[j] = h


@njit(cache=True, nogil=True, _nrt=False)
def mark_duplicates(hashes, candidate, table, count, duplicate):
    """Keep-first duplicate detection against a run-wide hash set.

    For each row ``i`` with ``candidate[i]`` in order: if its hash is already
    in ``table`` (open addressing; 0 = empty, so hash 0 is stored as 1) set
    ``duplicate[i]``, else insert it. The caller keeps the table at most half
    full. Returns the new count.
    """
    mask = table.shape[0] - 1
    for i in range(hashes.shape[0]):
        if not candidate[i]:
            continue
        h = hashes[i]
        if h == U0:
            h = U1
        j = np.int64(h & np.uint64(mask))
        while True:
            t = table[j]
            if t == U0:
                table[j] = h
                count += 1
                break
            if t == h:
                duplicate[i] = True
                break
            j = (j + 1) & mask
    return count


@njit(cache=True, nogil=True, _nrt=False)
def rehash_set(old, table):
    mask = table.shape[0] - 1
    for i in range(old.shape[0]):
        h = old[i]
        if h != U0:
            j = np.int64(h & np.uint64(mask))
            while table[j] != U0:
                j = (j + 1) & mask
            table[j] = h


@njit(cache=True, nogil=True, _nrt=False)
def first_unassigned(codes, keep, lut, out):
    """Local codes of kept rows whose ``lut`` entry is -1, in order of first
    appearance (each once); ``lut`` is marked -2 for them. Returns how many."""
    n = 0
    for i in range(codes.shape[0]):
        if keep[i]:
            c = codes[i]
            if lut[c] == -1:
                lut[c] = -2
                out[n] = c
                n += 1
    return n


@njit(cache=True, nogil=True, _nrt=False, inline="always")
def intern_one(buf, s, length, h, w0, w1, slots, slot_hash, arena, offsets, words, state):
    """The code of ``buf[s:s+length]`` (``h, w0, w1`` from ``hash_span``) in a
    string table, adding it if new; -1 if the table has no room for it.

    A table is ``slots`` (open addressing, linear probing, -1 = empty, kept at
    most half full) holding codes, ``slot_hash`` their hashes, the bytes of
    code ``c`` in ``arena[offsets[c]:offsets[c+1]]`` and its first 16 bytes in
    ``words[2c:2c+2]``, and ``state = [n_codes, arena_used]``. Codes are
    dense, in first-seen order; a hash match is confirmed by length and bytes,
    so codes are exact.
    """
    mask = slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while True:
        c = slots[j]
        if c < 0:
            n = state[0]
            used = state[1]
            if (
                used + length > arena.shape[0]
                or n + 2 > offsets.shape[0]
                or 2 * n + 2 > words.shape[0]
                or 2 * (n + 1) > slots.shape[0]
            ):
                return -1
            slots[j] = n
            slot_hash[j] = h
            for t in range(length):
                arena[used + t] = buf[s + t]
            offsets[n + 1] = used + length
            words[2 * n] = w0
            words[2 * n + 1] = w1
            state[0] = n + 1
            state[1] = used + length
            return n
        if (
            slot_hash[j] == h
            and words[2 * c] == w0
            and words[2 * c + 1] == w1
            and offsets[c + 1] - offsets[c] == length
        ):
            if length <= 16:
                return c
            a = offsets[c]
            same = True
            for t in range(16, length):
                if arena[a + t] != buf[s + t]:
                    same = False
                    break
            if same:
                return c
        j = (j + 1) & mask


def hash_bytes(data: bytes) -> tuple[int, int, int]:
    """Pure-Python twin of ``hash_span``: ``(hash, w0, w1)`` of ``data``."""
    mask = (1 << 64) - 1
    mul = int(_HASH_MUL)
    h = int(_HASH_SEED) ^ ((len(data) * mul) & mask)
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]
    for w in words:
        h = ((h ^ w) * mul) & mask
        h ^= h >> 29
    h ^= h >> 33
    h = (h * int(_FMIX1)) & mask
    h ^= h >> 33
    h = (h * int(_FMIX2)) & mask
    h ^= h >> 33
    w0 = words[0] if words else 0
    w1 = words[1] if len(words) > 1 else 0
    return h, w0, w1
