"""The JSON feed scanner: jitted code only.

The validating wrapper is :mod:`surv_kernel.ingest`; these functions take
arrays and scalars, write into preallocated outputs and return status codes.

Why a native parser at all: msgspec decodes a feed into Structs about as fast
as anything in Python can, but turning 1M Structs into NumPy columns costs
another Python-level pass per field (``np.fromiter`` + ``attrgetter`` + dict
interning: ~0.45 s per 1M trades here, more than the decode itself). The
parser below reads the flat trade records straight into columns; while a
record's bytes are still in cache it interns asset class, currency and trader
into hash tables (dense codes) and copies the trade id into one buffer, so no
Python object exists per trade until the ids are split out in one call.

It is an accelerator, never the judge. It accepts only what it fully
understands - an object holding the seven schema fields (each exactly once)
plus optional extra fields with scalar values, strings of well-formed UTF-8
without escapes, numbers whose value it can round exactly - and *bails* on
anything else: an escape or ill-formed UTF-8 in a string, a nested extra
field, a type it does not expect, a missing or repeated key, invalid JSON. The wrapper hands a bailed
record to msgspec, which decides (and, if it is bad, says why). So a feed is
parsed natively as far as possible and a bad record costs a slow path for that
record only.

Numbers are rounded exactly as ``float(text)`` would, by
:func:`~surv_kernel.kernels.json_number.decimal_to_double`; what it cannot
round exactly bails to msgspec.

Strings are hashed and interned by :mod:`~surv_kernel.kernels.hashing` while
their bytes are in cache.

Performance notes (measured, 1M-trade feed): every function here is
compiled with ``_nrt=False`` (none allocates) - with Numba's reference
counting on, each call of a helper did atomic incref/decref on each array
argument and the parser ran 3x slower (0.64 s -> 0.21 s). For the same reason ``parse_records`` takes its scratch
``order`` array from the caller and interns via an IR-inlined ``hashing.intern_one``
rather than a helper with two dozen array arguments (which doubled the time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import U0, U10
from .hashing import hash_bytes, hash_span, intern_one
from .json_number import decimal_to_double

# ---------------------------------------------------------------------------
# Status codes and parser states (shared with surv_kernel.ingest)
# ---------------------------------------------------------------------------
OK = 0
#: NDJSON: every complete record up to ``end`` was read.
DONE = 0
#: JSON array: the closing ``]`` was read; ``pos`` is just past it.
ARRAY_END = 1
#: The buffer ends inside a record (or before a separator); resume at ``pos``
#: with more bytes.
NEED_MORE = 2
#: The record at ``pos`` is not for the native parser: hand it to msgspec.
BAIL = 3
#: The output arrays are full; resume at ``pos``.
FULL = 4
#: A record is longer than ``max_record`` bytes; ``pos`` is where it starts.
TOO_BIG = 6
#: A string table or the id buffer is full; ``need`` says which and how much.
#: Grow it and resume at ``pos`` (the record there was not committed).
GROW = 7

EXPECT_FIRST = 0  # just after "[": an element or "]"
EXPECT_ELEMENT = 1  # just after ",": an element

# ---------------------------------------------------------------------------
# The schema as the parser sees it
# ---------------------------------------------------------------------------
FIELD_NAMES = (
    "trade_id",
    "asset_class",
    "notional",
    "currency",
    "trader_id",
    "timestamp",
    "surveillance_required",
)
#: Columns of the ``str_start`` / ``str_len`` outputs.
STR_FIELDS = ("trade_id", "asset_class", "currency", "trader_id")
STR_TRADE_ID, STR_ASSET_CLASS, STR_CURRENCY, STR_TRADER_ID = range(4)

_KIND_STR, _KIND_FLOAT, _KIND_BOOL = 0, 1, 2
_FIELD_KIND = np.array([0, 0, 1, 0, 0, 1, 2], np.int64)
_FIELD_SLOT = np.array([0, 1, 0, 2, 3, 1, 0], np.int64)  # str column / float column
_ALL_FIELDS = (1 << len(FIELD_NAMES)) - 1
#: Fields a legacy trade dict may omit (see ``surv_kernel.schema.LegacyTrade``).
_CURRENCY_BIT = 1 << FIELD_NAMES.index("currency")
_FLAG_BIT = 1 << FIELD_NAMES.index("surveillance_required")
#: ``defaulted`` bits of a legacy row.
DEFAULTED_CURRENCY = 1
DEFAULTED_FLAG = 2
_KEY_LENS = np.array([len(k) for k in FIELD_NAMES], np.int64)
_KEY_BYTES = np.zeros((len(FIELD_NAMES), max(_KEY_LENS)), np.uint8)
for _i, _k in enumerate(FIELD_NAMES):
    _KEY_BYTES[_i, : len(_k)] = np.frombuffer(_k.encode(), np.uint8)

#: The shortest record the native parser can accept: every key once, empty
#: strings, one-digit numbers, ``true``. Used to size outputs: a buffer of
#: ``b`` bytes holds at most ``b // MIN_RECORD_BYTES + 1`` native records.
MIN_RECORD_BYTES = (
    2  # {}
    + sum(len(k) + 3 for k in FIELD_NAMES)  # "key":
    + (len(FIELD_NAMES) - 1)  # commas
    + 2 * len(STR_FIELDS)  # ""
    + 2  # two one-digit numbers
    + 4  # true
)

#: Byte classes inside a string: 0 ordinary ASCII, 1 closing quote, 2 anything
#: the native parser leaves to msgspec (escape, control character, non-ASCII).
_STR_CLASS = np.zeros(256, np.uint8)
_STR_CLASS[:32] = 2
_STR_CLASS[128:] = 2
_STR_CLASS[92] = 2
_STR_CLASS[34] = 1

_TRUE = np.frombuffer(b"true", np.uint8).copy()
_FALSE = np.frombuffer(b"false", np.uint8).copy()
_NULL = np.frombuffer(b"null", np.uint8).copy()


@njit(cache=True, nogil=True, _nrt=False)
def max_nesting(buf, starts, ends):  # pragma: no cover - jitted
    """Deepest ``[``/``{`` nesting over the records ``buf[starts[i]:ends[i]]``
    (brackets inside strings do not count; a record object alone is 1). A
    fixed limit on this replaces msgspec's recursion limit, which shares
    Python's stack counter and so depended on the caller's stack depth."""
    best = 0
    for r in range(starts.shape[0]):
        depth = 0
        in_str = False
        i = starts[r]
        end = ends[r]
        while i < end:
            c = buf[i]
            if in_str:
                if c == 92:  # backslash: skip the escaped byte
                    i += 1
                elif c == 34:
                    in_str = False
            elif c == 34:
                in_str = True
            elif c == 91 or c == 123:
                depth += 1
                if depth > best:
                    best = depth
            elif c == 93 or c == 125:
                depth -= 1
            i += 1
    return best


# ---------------------------------------------------------------------------
# Lexing helpers
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, _nrt=False)
def _skip_ws(buf, p, end, newline_is_ws):
    while p < end:
        c = buf[p]
        if c == 32 or c == 9 or c == 13 or (c == 10 and newline_is_ws):
            p += 1
        else:
            break
    return p


@njit(cache=True, nogil=True, _nrt=False)
def _utf8_length(buf, i, end):
    """Length (2-4) of the well-formed UTF-8 sequence starting at ``buf[i]``
    (a byte >= 0x80), 0 if it is ill-formed, -1 if ``end`` cuts it short.

    Exactly the well-formed sequences of the Unicode standard (Table 3-7), the
    ones Python's strict UTF-8 decoder accepts: no overlong forms, no
    surrogates (ED A0..BF), nothing above U+10FFFF.
    """
    c = buf[i]
    if 0xC2 <= c <= 0xDF:
        n, lo, hi = 2, 0x80, 0xBF
    elif c == 0xE0:
        n, lo, hi = 3, 0xA0, 0xBF
    elif 0xE1 <= c <= 0xEC or c == 0xEE or c == 0xEF:
        n, lo, hi = 3, 0x80, 0xBF
    elif c == 0xED:
        n, lo, hi = 3, 0x80, 0x9F
    elif c == 0xF0:
        n, lo, hi = 4, 0x90, 0xBF
    elif 0xF1 <= c <= 0xF3:
        n, lo, hi = 4, 0x80, 0xBF
    elif c == 0xF4:
        n, lo, hi = 4, 0x80, 0x8F
    else:
        return 0
    for j in range(1, n):
        if i + j >= end:
            return -1
        b = buf[i + j]
        # the second byte has the lead's special range, later ones 80..BF
        if j == 1:
            if b < lo or b > hi:
                return 0
        elif b < 0x80 or b > 0xBF:
            return 0
    return n


@njit(cache=True, nogil=True, _nrt=False)
def _scan_string(buf, p, end):
    """``p`` at an opening quote: ``(code, close)`` with ``close`` the closing
    quote. UTF-8 is validated here; BAIL on an escape, a control character or
    ill-formed UTF-8 (msgspec then says which)."""
    i = p + 1
    while i < end:
        c = buf[i]
        cls = _STR_CLASS[c]
        if cls == 0:
            i += 1
        elif cls == 1:
            return OK, i
        elif c >= 128:
            n = _utf8_length(buf, i, end)
            if n > 0:
                i += n
            elif n < 0:
                return NEED_MORE, i
            else:
                return BAIL, i
        else:
            return BAIL, i
    return NEED_MORE, i


@njit(cache=True, nogil=True, _nrt=False)
def _scan_literal(buf, p, end, lit):
    n = lit.shape[0]
    for j in range(n):
        if p + j >= end:
            return NEED_MORE
        if buf[p + j] != lit[j]:
            return BAIL
    return OK


@njit(cache=True, nogil=True, _nrt=False)
def _scan_number(buf, p, end):
    """JSON number grammar at ``p``: ``(code, p_after, w, q, negative, inexact)``.

    ``w`` holds the first 19 significant digits and ``q`` the power of ten, so
    the value is ``w * 10**q`` exactly unless ``inexact`` (a non-zero digit
    was dropped)."""
    w = U0
    q = 0
    nd = 0
    inexact = False
    negative = False
    if p < end and buf[p] == 45:
        negative = True
        p += 1
    if p >= end:
        return NEED_MORE, p, w, q, negative, inexact
    c = buf[p]
    if c == 48:
        p += 1
    elif 49 <= c <= 57:
        while p < end:
            c = buf[p]
            if c < 48 or c > 57:
                break
            if nd < 19:
                w = w * U10 + np.uint64(c - 48)
                nd += 1
            else:
                q += 1
                if c != 48:
                    inexact = True
            p += 1
    else:
        return BAIL, p, w, q, negative, inexact
    if p < end and buf[p] == 46:
        p += 1
        start = p
        while p < end:
            c = buf[p]
            if c < 48 or c > 57:
                break
            if nd == 0 and c == 48:
                q -= 1  # leading zero of the fraction: not significant
            elif nd < 19:
                w = w * U10 + np.uint64(c - 48)
                nd += 1
                q -= 1
            elif c != 48:
                inexact = True
            p += 1
        if p == start:
            return (NEED_MORE if p >= end else BAIL), p, w, q, negative, inexact
    if p < end and (buf[p] == 101 or buf[p] == 69):
        p += 1
        sign = 1
        if p < end and (buf[p] == 43 or buf[p] == 45):
            if buf[p] == 45:
                sign = -1
            p += 1
        start = p
        e = 0
        while p < end:
            c = buf[p]
            if c < 48 or c > 57:
                break
            if e < 100000:
                e = e * 10 + (c - 48)
            p += 1
        if p == start:
            return (NEED_MORE if p >= end else BAIL), p, w, q, negative, inexact
        q += sign * e
    if p >= end:
        return NEED_MORE, p, w, q, negative, inexact  # more digits may follow
    return OK, p, w, q, negative, inexact


@njit(cache=True, nogil=True, _nrt=False)
def _match_key(buf, start, length):
    for f in range(_KEY_LENS.shape[0]):
        if _KEY_LENS[f] == length:
            same = True
            for j in range(length):
                if buf[start + j] != _KEY_BYTES[f, j]:
                    same = False
                    break
            if same:
                return f
    return -1


@njit(cache=True, nogil=True, _nrt=False)
def _predicted_key(buf, p, end, f):
    """True if the string at ``p`` (a quote) is exactly the key of field ``f``.

    (Comparing eight bytes at a time measured slower: the byte loads are not
    fused into one word load here.)"""
    if f < 0:
        return False
    n = _KEY_LENS[f]
    if p + n + 1 >= end:
        return False
    for j in range(n):
        if buf[p + 1 + j] != _KEY_BYTES[f, j]:
            return False
    return buf[p + 1 + n] == 34


@njit(cache=True, nogil=True, _nrt=False)
def _parse_object(
    buf,
    p,
    end,
    newline_is_ws,
    row,
    str_start,
    str_len,
    str_hash,
    str_words,
    floats,
    flags,
    order,
    legacy,
    defaulted,
):
    """One trade object starting at ``p`` (its ``{``) into row ``row``:
    ``(code, p_after)``. Each string field gets its span, hash and first 16
    bytes as two words (``str_words[j, 0:2, row]``). With ``legacy`` a missing
    currency or surveillance flag is allowed and marked in ``defaulted[row]``.

    ``order[m]`` is the field found at member ``m`` of the previous record
    (-1 unknown): producers write keys in a stable order, so the key at ``p``
    is first compared with that prediction, which skips the generic string
    scan and key lookup for nearly every key.
    """
    if buf[p] != 123:
        return BAIL, p
    p = _skip_ws(buf, p + 1, end, newline_is_ws)
    if p >= end:
        return NEED_MORE, p
    if buf[p] == 125:
        return BAIL, p  # {}: every field missing
    seen = 0
    member = 0
    while True:
        if buf[p] != 34:
            return BAIL, p
        guess = order[member] if member < order.shape[0] else -1
        if _predicted_key(buf, p, end, guess):
            f = guess
            close = p + 1 + _KEY_LENS[f]
        else:
            code, close = _scan_string(buf, p, end)
            if code != OK:
                return code, p
            f = _match_key(buf, p + 1, close - p - 1)
            if member < order.shape[0]:
                order[member] = f
        member += 1
        p = _skip_ws(buf, close + 1, end, newline_is_ws)
        if p >= end:
            return NEED_MORE, p
        if buf[p] != 58:
            return BAIL, p
        p = _skip_ws(buf, p + 1, end, newline_is_ws)
        if p >= end:
            return NEED_MORE, p
        c = buf[p]
        if f >= 0:
            bit = 1 << f
            if seen & bit:
                return BAIL, p  # repeated key: msgspec decides which value wins
            seen |= bit
            kind = _FIELD_KIND[f]
            if kind == _KIND_STR:
                if c != 34:
                    return BAIL, p
                code, close = _scan_string(buf, p, end)
                if code != OK:
                    return code, p
                slot = _FIELD_SLOT[f]
                h, w0, w1 = hash_span(buf, p + 1, close - p - 1)
                str_start[slot, row] = p + 1
                str_len[slot, row] = close - p - 1
                str_hash[slot, row] = h
                str_words[slot, 0, row] = w0
                str_words[slot, 1, row] = w1
                p = close + 1
            elif kind == _KIND_FLOAT:
                code, p2, w, q, negative, inexact = _scan_number(buf, p, end)
                if code != OK:
                    return code, p
                if inexact:
                    return BAIL, p
                ok, v = decimal_to_double(w, q, negative)
                if not ok:
                    return BAIL, p
                floats[_FIELD_SLOT[f], row] = v
                p = p2
            else:
                if c == 116:
                    code = _scan_literal(buf, p, end, _TRUE)
                    flags[row] = True
                    p2 = p + 4
                elif c == 102:
                    code = _scan_literal(buf, p, end, _FALSE)
                    flags[row] = False
                    p2 = p + 5
                else:
                    return BAIL, p
                if code != OK:
                    return code, p
                p = p2
        else:
            # An extra field: tolerated if its value is a scalar.
            if c == 34:
                code, close = _scan_string(buf, p, end)
                if code != OK:
                    return code, p
                p = close + 1
            elif c == 45 or 48 <= c <= 57:
                code, p2, _w, _q, _neg, _inexact = _scan_number(buf, p, end)
                if code != OK:
                    return code, p
                p = p2
            elif c == 116 or c == 102 or c == 110:
                lit = _TRUE if c == 116 else (_FALSE if c == 102 else _NULL)
                code = _scan_literal(buf, p, end, lit)
                if code != OK:
                    return code, p
                p += lit.shape[0]
            else:
                return BAIL, p
        p = _skip_ws(buf, p, end, newline_is_ws)
        if p >= end:
            return NEED_MORE, p
        c = buf[p]
        if c == 44:
            p = _skip_ws(buf, p + 1, end, newline_is_ws)
            if p >= end:
                return NEED_MORE, p
            continue
        if c == 125:
            p += 1
            break
        return BAIL, p
    defaulted[row] = 0
    if seen != _ALL_FIELDS:
        if not legacy or (seen | _CURRENCY_BIT | _FLAG_BIT) != _ALL_FIELDS:
            return BAIL, p
        if not seen & _CURRENCY_BIT:
            defaulted[row] |= DEFAULTED_CURRENCY
        if not seen & _FLAG_BIT:
            defaulted[row] |= DEFAULTED_FLAG
            flags[row] = False
    return OK, p


# ---------------------------------------------------------------------------
# Record loop
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, _nrt=False)
def parse_records(
    buf,
    pos,
    end,
    ndjson,
    final,
    expect,
    k0,
    rec_start,
    rec_end,
    str_start,
    str_len,
    str_hash,
    str_words,
    floats,
    flags,
    codes,
    id_end,
    id_buf,
    a_slots,
    a_hash,
    a_arena,
    a_offsets,
    a_words,
    a_state,
    c_slots,
    c_hash,
    c_arena,
    c_offsets,
    c_words,
    c_state,
    t_slots,
    t_hash,
    t_arena,
    t_offsets,
    t_words,
    t_state,
    need,
    order,
    legacy,
    defaulted,
    bailed,
    max_record,
):
    """Parse trade records from ``buf[pos:end]`` into the output rows
    ``k0, k0+1, ...`` (up to ``len(rec_start)``).

    ``ndjson``: records are lines; otherwise ``pos`` is inside a JSON array in
    state ``expect``. ``final``: ``end`` is the end of the feed. Row ``k``
    gets the record span ``rec_start[k]:rec_end[k]`` (from ``{`` to just past
    ``}``), the string spans ``str_start[j, k]`` / ``str_len[j, k]`` (rows as
    ``STR_FIELDS``) and their hashes ``str_hash[j, k]``,
    ``floats[:, k] = (notional, timestamp)``, ``flags[k]`` (the surveillance
    flag), ``codes[:, k]`` = local codes of asset class, currency and trader in
    the three string tables (``a_*``, ``c_*``, ``t_*``, see ``intern_one``),
    and its trade id followed by a newline in ``id_buf[..id_end[k]]`` (so
    ``id_buf[:id_end[k-1]]`` holds the ids of the committed rows). ``legacy``
    (trade dicts): a missing currency is USD and a missing flag False, marked
    in ``defaulted[k]``.

    A record this parser does not take (see the module docstring) still gets
    its row: ``bailed[k]`` is set, its span recorded and its id left empty,
    for msgspec to decode afterwards; the parser does not stop for it.

    Returns ``(status, k, pos, expect)`` with ``k`` the next free row; on
    NEED_MORE, TOO_BIG (a record over ``max_record`` bytes) or GROW ``pos``
    is where the troublesome record starts (its first non-blank byte). A
    record is committed only together with its separator (``,``/``]`` or the
    end of its line).
    """
    cap = rec_start.shape[0]
    k = k0
    while True:
        pos = _skip_ws(buf, pos, end, True)
        if pos >= end:
            return (DONE if ndjson else NEED_MORE), k, pos, expect
        if not ndjson and expect == EXPECT_FIRST and buf[pos] == 93:
            return ARRAY_END, k, pos + 1, expect
        if k >= cap:
            return FULL, k, pos, expect
        code, p = _parse_object(
            buf,
            pos,
            end,
            not ndjson,
            k,
            str_start,
            str_len,
            str_hash,
            str_words,
            floats,
            flags,
            order,
            legacy,
            defaulted,
        )
        if code == NEED_MORE:
            if not (final and ndjson):
                return NEED_MORE, k, pos, expect
            code = BAIL  # an unfinished last line: msgspec will say why
        if code == OK:
            if ndjson:
                # The record must be alone on its line.
                q = _skip_ws(buf, p, end, False)
                if q < end:
                    if buf[q] != 10:
                        code = BAIL
                elif not final:
                    return NEED_MORE, k, pos, expect
                c = 10
            else:
                # Commit the record only with its separator: "{...} junk," is
                # one bad element, whichever path reads it.
                q = _skip_ws(buf, p, end, True)
                if q >= end:
                    return NEED_MORE, k, pos, expect
                c = buf[q]
                if c != 44 and c != 93:
                    code = BAIL
        if code == BAIL:
            # Not for this parser: find where the record ends (its line, or its
            # element up to the next top-level "," or "]"), reserve a row for
            # msgspec to fill and carry on. Over max_record bytes: TOO_BIG.
            limit = min(end, pos + max_record + 1)
            if ndjson:
                sep = pos
                while sep < limit and buf[sep] != 10:
                    sep += 1
                if sep >= limit:
                    if limit < end:
                        return TOO_BIG, k, pos, expect
                    if not final:
                        return NEED_MORE, k, pos, expect
            else:
                sep, _s, _e, _d = scan_element(buf, pos, limit, False, False, 0)
                if sep < 0:
                    return (TOO_BIG if limit < end else NEED_MORE), k, pos, expect
            e = sep
            while e > pos and (
                buf[e - 1] == 32 or buf[e - 1] == 9 or buf[e - 1] == 10 or buf[e - 1] == 13
            ):
                e -= 1
            start = id_end[k - 1] if k > 0 else 0
            if start + 1 > id_buf.shape[0]:
                need[0] = 3
                need[1] = 1
                return GROW, k, pos, expect
            id_buf[start] = 10  # an empty id: msgspec's decode supplies it
            id_end[k] = start + 1
            rec_start[k] = pos
            rec_end[k] = e
            bailed[k] = True
            defaulted[k] = 0
            k += 1
            if ndjson:
                pos = sep
                continue
            if sep < end and buf[sep] == 93:
                return ARRAY_END, k, sep + 1, expect
            pos = sep + 1
            expect = EXPECT_ELEMENT
            continue
        # Intern the record's strings and keep its id while they are in cache.
        j = STR_ASSET_CLASS
        a = intern_one(
            buf,
            str_start[j, k],
            str_len[j, k],
            str_hash[j, k],
            str_words[j, 0, k],
            str_words[j, 1, k],
            a_slots,
            a_hash,
            a_arena,
            a_offsets,
            a_words,
            a_state,
        )
        j = STR_CURRENCY
        if defaulted[k] & DEFAULTED_CURRENCY:
            b = intern_one(
                _USD,
                0,
                3,
                _USD_HASH,
                _USD_W0,
                U0,
                c_slots,
                c_hash,
                c_arena,
                c_offsets,
                c_words,
                c_state,
            )
            str_len[j, k] = 3
        else:
            b = intern_one(
                buf,
                str_start[j, k],
                str_len[j, k],
                str_hash[j, k],
                str_words[j, 0, k],
                str_words[j, 1, k],
                c_slots,
                c_hash,
                c_arena,
                c_offsets,
                c_words,
                c_state,
            )
        j = STR_TRADER_ID
        t = intern_one(
            buf,
            str_start[j, k],
            str_len[j, k],
            str_hash[j, k],
            str_words[j, 0, k],
            str_words[j, 1, k],
            t_slots,
            t_hash,
            t_arena,
            t_offsets,
            t_words,
            t_state,
        )
        start = id_end[k - 1] if k > 0 else 0
        s = str_start[STR_TRADE_ID, k]
        length = str_len[STR_TRADE_ID, k]
        if a < 0 or b < 0 or t < 0 or start + length + 1 > id_buf.shape[0]:
            # a table or the id buffer is full: grow it, then parse this
            # record again (what was interned meanwhile stays valid)
            which = 0 if a < 0 else (1 if b < 0 else (2 if t < 0 else 3))
            need[0] = which
            need[1] = length + 1 if which == 3 else str_len[which + 1, k]
            return GROW, k, pos, expect
        codes[0, k] = a
        codes[1, k] = b
        codes[2, k] = t
        for i in range(length):
            id_buf[start + i] = buf[s + i]
        id_buf[start + length] = 10
        id_end[k] = start + length + 1
        rec_start[k] = pos
        rec_end[k] = p
        bailed[k] = False
        k += 1
        if c == 93:
            return ARRAY_END, k, q + 1, expect
        pos = q if ndjson else q + 1
        expect = EXPECT_ELEMENT


@njit(cache=True, nogil=True, _nrt=False)
def scan_element(buf, pos, end, in_string, escaped, depth):
    """Lex an array element from ``pos`` to its terminating top-level ``,`` or
    ``]``, carrying ``(in_string, escaped, depth)`` across calls.

    Returns ``(sep, in_string, escaped, depth)`` with ``sep`` the separator's
    index, or -1 if ``end`` came first. Exact for valid JSON. For invalid JSON
    it still terminates deterministically (a stray ``}`` at depth 0 is part of
    the element; an unterminated string runs to the end of the feed), which
    is what makes recovery independent of how the feed was chunked.
    """
    p = pos
    while p < end:
        c = buf[p]
        if in_string:
            if escaped:
                escaped = False
            elif c == 92:
                escaped = True
            elif c == 34:
                in_string = False
        elif c == 34:
            in_string = True
        elif c == 123 or c == 91:
            depth += 1
        elif c == 125:
            if depth > 0:
                depth -= 1
        elif c == 93:
            if depth == 0:
                return p, in_string, escaped, depth
            depth -= 1
        elif c == 44 and depth == 0:
            return p, in_string, escaped, depth
        p += 1
    return -1, in_string, escaped, depth


_USD = np.frombuffer(b"USD", np.uint8).copy()
_USD_HASH, _USD_W0 = (np.uint64(x) for x in hash_bytes(b"USD")[:2])
