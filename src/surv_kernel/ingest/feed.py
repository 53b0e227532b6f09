"""JSON array and NDJSON feeds: the incremental feed state machine (native
parser first, msgspec as the judge) and the entry points :func:`decode_feed`
and :func:`iter_feed`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Any, BinaryIO

import msgspec
import numpy as np

from .. import feedscan as fs
from ..batch import Dictionaries, TradeBatch
from ..schema import LegacyTrade, Trade
from .columns import NativeOut, Part, Run, Sink, utf8_spans
from .quarantine import (
    BAD_JSON,
    BAD_NOTIONAL,
    BAD_TIMESTAMP,
    MAX_NESTING,
    MISSING_FIELD,
    RECORD_TOO_LARGE,
    TRUNCATED,
    WRONG_TYPE,
    FeedError,
    IngestLimits,
    Quarantine,
    log_quarantine,
)
from .tables import RUN_LOCK

log = logging.getLogger("surv_kernel.ingest")  # one logger for the package

#: iter_feed's default read size (~6k trades of a typical feed per batch).
#: Peak RSS of streaming a 2M-trade file in a fresh process, measured: 213 MB
#: at 1 MiB, 219 MB at 2 MiB, 232 MB at 4 MiB, 251 MB at 8 MiB (of which ~157
#: MB is importing NumPy/Numba/msgspec and loading the JIT kernels, ~50 MB the
#: run's 2M-id duplicate set); the speed is the same from 256 KiB to 8 MiB.
DEFAULT_CHUNK_BYTES = 1 << 20

#: A record that holds none of these is not a trade at all (an error answer).
_SCHEMA_FIELDS = frozenset(Trade.__struct_fields__)
_FOREIGN_EXCERPT = 200

# reasons that say the record was not even JSON (the "feed is not JSON" rule)
_NOT_JSON = frozenset({RECORD_TOO_LARGE, BAD_JSON, TRUNCATED})


# ---------------------------------------------------------------------------
# msgspec: the judge for records the native parser declines
# ---------------------------------------------------------------------------
_LIST_DECODER = msgspec.json.Decoder(list[Trade])
_RECORD_DECODER = msgspec.json.Decoder(Trade)
_LEGACY_LIST_DECODER = msgspec.json.Decoder(list[LegacyTrade])
_LEGACY_RECORD_DECODER = msgspec.json.Decoder(LegacyTrade)
_get_ids = attrgetter("trade_id")
_get_asset = attrgetter("asset_class")
_get_currency = attrgetter("currency")
_get_trader = attrgetter("trader_id")
_get_notional = attrgetter("notional")
_get_timestamp = attrgetter("timestamp")
_get_surveillance = attrgetter("surveillance_required")


_INVALID = object()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _peek(raw: Any) -> Any:
    """The JSON value of a record msgspec refused (for its trade id and the
    error-answer rule), or ``_INVALID`` if it is not valid JSON."""
    try:
        return json.loads(bytes(raw), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return _INVALID


def _classify(exc: Exception, at_end: bool) -> tuple[str, str]:
    """(reason, detail) for a msgspec error on one record."""
    message = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return BAD_JSON, f"invalid UTF-8: {message}"
    if isinstance(exc, RecursionError):  # msgspec: nesting deeper than Python's stack
        return BAD_JSON, f"nested too deeply: {message}"
    if isinstance(exc, msgspec.ValidationError):
        if message.startswith("Object missing required field"):
            return MISSING_FIELD, message
        if message.startswith("Number out of range"):
            if message.endswith("`$.timestamp`"):
                return BAD_TIMESTAMP, message
            if message.endswith("`$.notional`"):
                return BAD_NOTIONAL, message
        return WRONG_TYPE, message
    if at_end and "truncated" in message:
        return TRUNCATED, message
    return BAD_JSON, message or "empty record"


# ---------------------------------------------------------------------------
# The feed state machine (shared by decode_feed and iter_feed)
# ---------------------------------------------------------------------------
_PART_ROWS = 1 << 14
_BOM = b"\xef\xbb\xbf"


class _Skip:
    """An over-long record being discarded across reads."""

    __slots__ = ("depth", "escaped", "excerpt", "in_string", "last", "start")

    def __init__(self, start: int, excerpt: bytes) -> None:
        self.start = start  # feed offset of the record
        self.excerpt = excerpt
        self.last = start  # feed offset of its last non-blank byte so far
        self.in_string = False
        self.escaped = False
        self.depth = 0


_IS_BLANK = np.zeros(256, np.bool_)
_IS_BLANK[[9, 10, 13, 32]] = True


def _unterminated(buf: np.ndarray, e: int, end: int) -> bool:
    """True if the NDJSON line ending (trimmed) at ``e`` has no newline after
    it: the feed's last line, which may have been cut off."""
    while e < end and buf[e] in (9, 13, 32):
        e += 1
    return e >= end


#: Blanks after a record (before its separator) are held up to this many
#: times ``max_record_bytes`` while waiting for the next read.
_BLANK_SLACK = 16


def _first_nonblank(buf: np.ndarray, start: int, stop: int) -> int:
    """Index of the first non-blank byte in ``buf[start:stop]``, or ``stop``."""
    idx = np.flatnonzero(~_IS_BLANK[buf[start:stop]])
    return start + int(idx[0]) if idx.size else stop


def _last_nonblank(buf: np.ndarray, start: int, stop: int) -> int:
    """Index of the last non-blank byte in ``buf[start:stop]``, or -1."""
    idx = np.flatnonzero(~_IS_BLANK[buf[start:stop]])
    return start + int(idx[-1]) if idx.size else -1


class FeedState:
    """Incremental decoder of one feed: call ``process`` with consecutive
    windows of the feed; it returns how many bytes it consumed (the caller
    keeps the rest and appends the next read)."""

    def __init__(self, run: Run, legacy: bool = False) -> None:
        self.run = run
        self.limits = run.limits
        self.legacy = legacy  # trade dicts: LegacyTrade defaults
        self._order = np.full(16, -1, np.int64)  # key order seen last (parser's guess)
        self.mode: str | None = None  # None (not sniffed), "array", "ndjson", "after"
        self.expect = fs.EXPECT_FIRST
        self.position = 0  # index of the next record
        self.n_records = 0
        # quarantine records that stand for no record of the feed (an array
        # never closed): counted as seen so seen = kept + quarantined holds
        self.n_markers = 0
        self.n_reported = 0  # records seen that a yielded Quarantine counted
        # leading records that are JSON but not trades at all (the "error answer" rule)
        self.n_foreign = 0
        self.first_foreign = b""
        self.skip: _Skip | None = None
        self.trailing_reported = False
        self.first_problem = ""
        self._bytes = 0  # feed bytes and rows parsed natively (record size estimate)
        self._rows = 0
        self._out: NativeOut | None = None
        self._need = np.zeros(2, np.int64)

    # -- public --------------------------------------------------------------
    def process(
        self,
        data: bytes | memoryview,
        base: int,
        final: bool,
        sink: Sink,
        q: Quarantine,
    ) -> int:
        buf = np.frombuffer(data, np.uint8)
        end = buf.shape[0]
        pos = 0
        if self.skip is not None:
            pos = self._skip_scan(buf, base, 0, end, final, q)
            if self.skip is not None:
                return end
        if self.mode is None:
            pos = self._sniff(buf, pos, end, final, base)
            if self.mode is None:
                return pos
        if self.mode == "after":
            return self._trailing(buf, base, pos, end, final, q)
        return self._records(buf, base, pos, end, final, sink, q)

    @property
    def seen(self) -> int:
        return self.n_records + self.n_markers

    def unreported(self) -> int:
        """Records seen since the last call (for the next yielded Quarantine)."""
        n = self.seen - self.n_reported
        self.n_reported = self.seen
        return n

    def finish(self) -> None:
        """Called after the last ``process(final=True)``."""
        if self.mode is None:
            raise FeedError("the feed is empty: no JSON array and no NDJSON records")
        # records quarantined as not JSON (bad_json, truncated; the unclosed
        # array's marker aside): over-long records are not known to be bad
        # JSON, and whether one was cut by a chunk must not change the verdict
        if self.n_records and self.run.not_json - self.n_markers >= self.n_records:
            raise FeedError(
                f"the feed is not JSON: none of its {self.n_records} record(s) could be parsed; "
                f"first: {self.first_problem}"
            )
        if self.n_records and self.n_foreign == self.n_records:
            # A desk that answers {"status": "error", ...} has sent no trades:
            # that is a failed feed, not one bad record of a quiet desk.
            excerpt = self.first_foreign.decode("utf-8", "replace")
            raise FeedError(
                f"the feed holds no trade records: its {self.n_records} record(s) are JSON "
                f"without any trade field (an error answer from the desk?): {excerpt}"
            )

    def _check_foreign(self, position: int, reason: str, raw: Any, value: Any) -> None:
        """Count a leading record that is JSON but has none of the trade
        fields (or is not an object). Only while every record so far was such
        a record, so a feed of trades pays nothing for the rule."""
        if position != self.n_foreign or reason not in (MISSING_FIELD, WRONG_TYPE):
            return
        if value is _INVALID or (isinstance(value, dict) and value.keys() & _SCHEMA_FIELDS):
            return
        self.n_foreign += 1
        if not self.first_foreign:
            self.first_foreign = bytes(raw[:_FOREIGN_EXCERPT])

    # -- stages --------------------------------------------------------------
    def _sniff(self, buf: np.ndarray, pos: int, end: int, final: bool, base: int) -> int:
        if base == 0 and pos == 0:
            head = buf[:3].tobytes()
            if end < 3 and _BOM.startswith(head) and head and not final:
                return 0  # wait: may be the start of a byte order mark
            if head == _BOM:
                pos = 3
        while pos < end and _IS_BLANK[buf[pos]]:
            pos += 1
        if pos >= end:
            return pos
        c = buf[pos]
        if c == 91:
            self.mode = "array"
            return pos + 1
        if c == 123:
            self.mode = "ndjson"
            return pos
        excerpt = buf[pos : pos + 40].tobytes()
        raise FeedError(
            f"the feed is not JSON: it starts with {excerpt!r} at byte {base + pos}, "
            "not '[' (a JSON array) or '{' (NDJSON)"
        )

    def _records(
        self,
        buf: np.ndarray,
        base: int,
        pos: int,
        end: int,
        final: bool,
        sink: Sink,
        q: Quarantine,
    ) -> int:
        """Records from ``pos`` into parts of up to ``_PART_ROWS`` rows: parsed
        natively, or - when the parser bails - decoded by msgspec into the same
        part. Returns the bytes consumed."""
        ndjson = self.mode == "ndjson"
        max_record = self.limits.max_record_bytes
        run = self.run
        part = Part()

        def flush() -> None:
            self._flush(part, buf, base, end - pos, sink, q)

        while True:
            room = min(_PART_ROWS - part.k, (end - pos) // fs.MIN_RECORD_BYTES + 1)
            if room <= 0:
                flush()
                continue
            k = part.k
            out = self._native(k + room, keep=k)
            status, k_after, pos_after, self.expect = fs.parse_records(
                buf,
                pos,
                end,
                ndjson,
                final,
                self.expect,
                k,
                out.rec_start[: k + room],
                out.rec_end,
                out.str_start,
                out.str_len,
                out.str_hash,
                out.str_words,
                out.floats,
                out.flags,
                out.codes,
                out.id_end,
                out.id_buf,
                *run.asset_class.arrays,
                *run.currency.arrays,
                *run.trader.arrays,
                self._need,
                self._order,
                self.legacy,
                out.defaulted,
                out.bailed,
                max_record,
            )
            parsed = k_after - k
            if parsed:
                if final and self.position == 0:
                    # A whole feed in memory: size the duplicate set once from
                    # the bytes per record seen so far instead of rehashing as
                    # it grows.
                    per_record = max((pos_after - pos) / parsed, fs.MIN_RECORD_BYTES)
                    with RUN_LOCK:
                        run.dictionaries.trade_ids.reserve(int(1.05 * (end - pos) / per_record) + 1)
                self._bytes += pos_after - pos  # record size estimate (output sizing)
                self._rows += parsed
                out.positions[k:k_after] = np.arange(self.position, self.position + parsed)
                self.position += parsed
                self.n_records += parsed
                part.k = k_after
                bailed = np.flatnonzero(out.bailed[k:k_after])
                if bailed.size:
                    self._decode_bailed(buf, base, end, final, out, part, bailed + k)
            pos = pos_after
            if status == fs.FULL:
                flush()
                continue
            if status == fs.GROW:
                which, length = int(self._need[0]), int(self._need[1])
                if which == 3:
                    out.id_room(part.k, length)
                else:
                    (run.asset_class, run.currency, run.trader)[which].grow(length)
                continue
            if status == fs.DONE:
                flush()
                return pos
            if status == fs.ARRAY_END:
                flush()
                self.mode = "after"
                return self._trailing(buf, base, pos, end, final, q)
            flush()
            if status == fs.TOO_BIG:
                pos, stop = self._too_big(buf, base, pos, end, final, q)
                if stop:
                    return pos
                continue
            # NEED_MORE (with final=True only an array gets here: NDJSON bails).
            # The record's size is its text without the blanks around it (as
            # when it arrives whole), so a record is not "too large" because a
            # chunk ended in the blanks after it; blanks beyond a generous
            # bound are refused so that pending text stays bounded.
            if end - pos > max_record and (
                end - pos > _BLANK_SLACK * max_record
                or _last_nonblank(buf, pos, end) + 1 - _first_nonblank(buf, pos, end) > max_record
            ):
                pos, stop = self._too_big(buf, base, pos, end, final, q)
                if stop:
                    return pos
                continue
            if not final:
                return pos
            self._final_element(buf, base, pos, end, sink, q)
            return end

    def _decoders(self) -> tuple[Any, Any]:
        """(one-record decoder, JSON-array decoder) for this feed's schema."""
        if self.legacy:
            return _LEGACY_RECORD_DECODER, _LEGACY_LIST_DECODER
        return _RECORD_DECODER, _LIST_DECODER

    def _decode_in_bulk(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> list[Any] | None:
        """The consecutive records ``data[starts[i]:ends[i]]`` decoded by msgspec
        in one call, or None when that fails (or there are fewer than 2, where
        one-by-one is the same work) and the caller must decode them one by one
        to learn which record is bad and why.

        The records are joined into one JSON array with a comma between each
        two, so msgspec sees exactly the scanner's records: one object per
        record or the call fails. (``decode_lines`` splits on whitespace, not
        on the scanner's lines: two objects on one line next to an object
        wrapped over two lines decoded to as many structs as rows, with values
        on another record's row.)"""
        n = starts.shape[0]
        if n < 2 or fs.max_nesting(buf, starts, ends) > MAX_NESTING:
            return None
        data = buf.data
        list_decoder = self._decoders()[1]
        if self.mode == "ndjson":
            text = b",".join(
                [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=False)]
            )
        else:  # array elements: the commas between them are the feed's own
            text = data[int(starts[0]) : int(ends[-1])]
        try:
            joined = b"".join((b"[", text, b"]"))
            structs = list_decoder.decode(joined)
            str(joined, "utf-8")  # msgspec skips unknown fields unread: ill-formed UTF-8 there
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        # one struct per record, or the scanner and JSON disagree on where
        # records end: decode one by one
        return structs if len(structs) == n else None

    def _decode_one(
        self, buf: np.ndarray, s: int, e: int, at_end: bool, position: int
    ) -> tuple[Any, tuple[str, str, str | None] | None]:
        """One record ``buf[s:e]`` by msgspec: ``(struct, None)``, or ``(None,
        (reason, detail, trade_id))``. Checks msgspec does not make: the
        nesting depth (a fixed limit, not whatever is left of Python's stack)
        and UTF-8 in the fields msgspec skips unread (unknown keys and values)."""
        raw = buf.data[s:e]
        depth = fs.max_nesting(buf, np.array([s]), np.array([e]))
        try:
            if depth > MAX_NESTING:
                raise msgspec.DecodeError(
                    f"nested {depth} levels deep, more than the {MAX_NESTING} allowed"
                )
            struct = self._decoders()[0].decode(raw)
            str(raw, "utf-8")  # msgspec skips unknown fields unread: ill-formed UTF-8 there
            return struct, None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            reason, detail = _classify(exc, at_end)
        value = _peek(raw) if reason not in _NOT_JSON else _INVALID
        if value is _INVALID and reason not in _NOT_JSON:
            # msgspec stops at the first schema error ("Expected `object`, got
            # `str`"); a record that is not JSON at all is bad_json first, as
            # documented, whatever follows the part msgspec read
            reason, detail = BAD_JSON, f"not valid JSON ({detail})"
        if reason in _NOT_JSON and not self.first_problem:
            self.first_problem = f"record {position}: {reason}: {detail}"
        self._check_foreign(position, reason, raw, value)
        trade_id = value.get("trade_id") if isinstance(value, dict) else None
        return None, (reason, detail, trade_id if isinstance(trade_id, str) else None)

    def _decode_bailed(
        self,
        buf: np.ndarray,
        base: int,
        end: int,
        final: bool,
        out: NativeOut,
        part: Part,
        rows: np.ndarray,
    ) -> None:
        """msgspec for the rows the parser left to it: each run of consecutive
        rows in bulk, one by one if that fails. A record that decodes fills
        its row (at flush); one that does not is skipped with its reason."""
        data = buf.data  # memoryview: slices without copies
        ndjson = self.mode == "ndjson"
        rec_start, rec_end = out.rec_start, out.rec_end
        for run_rows in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1):
            run_rows.shape[0]
            structs = self._decode_in_bulk(buf, rec_start[run_rows], rec_end[run_rows])
            if structs is not None:
                good = run_rows
            else:
                structs, kept = [], []
                for r in run_rows.tolist():
                    s, e = int(rec_start[r]), int(rec_end[r])
                    position = int(out.positions[r])
                    at_end = ndjson and final and _unterminated(buf, e, end)
                    struct, why = self._decode_one(buf, s, e, at_end, position)
                    if why is None:
                        structs.append(struct)
                        kept.append(r)
                        continue
                    reason, detail, trade_id = why
                    part.earlier.append((position, reason, detail, data[s:e], base + s, trade_id))
                    part.skip.append(r)
                good = np.asarray(kept, np.int64)
            if structs:
                part.id_rows.extend(good.tolist())
                part.ids.extend(map(_get_ids, structs))
                part.pending.append((good, structs))

    def _native(self, cap: int, keep: int = 0) -> NativeOut:
        """The part's output with room for ``cap`` rows (rows ``0..keep`` kept)."""
        out = self._out
        if out is None:
            out = self._out = NativeOut(max(cap, 1024))
        elif out.capacity < cap:
            out = self._out = out.grown(max(cap, min(2 * out.capacity, _PART_ROWS)), keep)
        return out

    def _decode_group(
        self,
        buf: np.ndarray,
        base: int,
        starts: np.ndarray,
        ends: np.ndarray,
        at_end: bool,
        out: NativeOut,
        part: Part,
    ) -> None:
        """msgspec for the records ``buf[starts[i]:ends[i]]`` (in bulk, then one
        by one if the group fails): each becomes a row of ``part`` or one of its
        quarantine entries."""
        n = starts.shape[0]
        first = self.position
        data = buf.data  # memoryview: slices without copies
        structs = self._decode_in_bulk(buf, starts, ends)
        if structs is not None:
            self._reserve_rows(structs, starts, ends, np.arange(first, first + n), out, part)
        else:
            structs, good = [], []
            for i in range(n):
                s, e = int(starts[i]), int(ends[i])
                struct, why = self._decode_one(buf, s, e, at_end and i == n - 1, first + i)
                if why is None:
                    structs.append(struct)
                    good.append(i)
                    continue
                reason, detail, trade_id = why
                part.earlier.append((first + i, reason, detail, data[s:e], base + s, trade_id))
            if structs:
                kept = np.asarray(good, np.int64)
                self._reserve_rows(structs, starts[kept], ends[kept], first + kept, out, part)
        self.position += n
        self.n_records += n

    @staticmethod
    def _reserve_rows(
        structs: list[Any],
        starts: np.ndarray,
        ends: np.ndarray,
        positions: np.ndarray,
        out: NativeOut,
        part: Part,
    ) -> None:
        """Rows ``part.k...`` for decoded records: spans, positions and trade
        ids now (ids must stay in row order in ``id_buf``), the rest at flush."""
        m = len(structs)
        k = part.k
        out.rec_start[k : k + m] = starts
        out.rec_end[k : k + m] = ends
        out.positions[k : k + m] = positions
        ids = list(map(_get_ids, structs))
        joined = "\n".join(ids)
        if joined.count("\n") != m - 1:  # an id holds a newline: it travels apart
            for i, trade_id in enumerate(ids):
                if "\n" in trade_id:
                    part.id_rows.append(k + i)
                    part.ids.append(trade_id)
                    ids[i] = ""
            joined = "\n".join(ids)
        data = np.frombuffer(joined.encode("utf-8", "surrogatepass") + b"\n", np.uint8)
        at = out.id_room(k, data.shape[0])
        out.id_buf[at : at + data.shape[0]] = data
        out.id_end[k : k + m] = at + np.flatnonzero(data == 10) + 1
        part.pending.append((np.arange(k, k + m), structs))
        part.k = k + m

    def _fill_pending(self, part: Part, q: Quarantine) -> None:
        """The fields of the rows msgspec decoded, in bulk: one gather per
        field, strings interned and hashed exactly as the parser does."""
        out = self._out
        assert out is not None
        run = self.run
        rows = np.concatenate([r for r, _ in part.pending])
        structs = [t for _, block in part.pending for t in block]
        m = len(structs)
        currency = list(map(_get_currency, structs))
        flags = list(map(_get_surveillance, structs))
        unset = msgspec.UNSET
        missing = currency.count(unset)
        if missing:
            q.defaulted["currency"] += missing
            currency = ["USD" if c is unset else c for c in currency]
        missing = flags.count(unset)
        if missing:
            q.defaulted["surveillance_required"] += missing
            flags = [False if f is unset else f for f in flags]
        id_buf, id_start, id_len = utf8_spans(list(map(_get_ids, structs)))
        id_hash = np.empty(m, np.uint64)
        fs.hash_spans(id_buf, id_start, id_len, id_hash)
        trader = utf8_spans(list(map(_get_trader, structs)))
        out.str_hash[fs.STR_TRADE_ID, rows] = id_hash
        out.str_len[fs.STR_TRADE_ID, rows] = id_len
        out.str_len[fs.STR_TRADER_ID, rows] = trader[2]
        out.codes[0, rows] = run.asset_class.intern(*utf8_spans(list(map(_get_asset, structs))))
        out.codes[1, rows] = run.currency.intern(*utf8_spans(currency))
        out.codes[2, rows] = run.trader.intern(*trader)
        out.floats[0, rows] = np.fromiter(map(_get_notional, structs), np.float64, m)
        out.floats[1, rows] = np.fromiter(map(_get_timestamp, structs), np.float64, m)
        out.flags[rows] = np.fromiter(flags, np.bool_, m)
        out.defaulted[rows] = 0  # counted above

    def _flush(
        self, part: Part, buf: np.ndarray, base: int, left: int, sink: Sink, q: Quarantine
    ) -> None:
        """Hand the part to ``native_part`` and start an empty one."""
        if part.pending:
            self._fill_pending(part, q)
        if part.k or part.earlier:
            hint = sink.n + part.k + int(1.02 * left * self._rows / max(self._bytes, 1))
            self.run.native_part(q, sink, buf, base, self._out, part.k, hint, part)  # type: ignore[arg-type]
        part.__init__()

    def _too_big(
        self, buf: np.ndarray, base: int, pos: int, end: int, final: bool, q: Quarantine
    ) -> tuple[int, bool]:
        """The record at ``pos`` is over ``max_record_bytes``: quarantine it and
        skip to its end, across reads if need be. Returns (pos, stop)."""
        while pos < end and _IS_BLANK[buf[pos]]:
            pos += 1
        self.skip = _Skip(base + pos, buf[pos : pos + self.limits.raw_bytes].tobytes())
        pos = self._skip_scan(buf, base, pos, end, final, q)
        return pos, self.skip is not None or self.mode == "after" or pos >= end

    def _skip_scan(
        self, buf: np.ndarray, base: int, pos: int, end: int, final: bool, q: Quarantine
    ) -> int:
        """Continue discarding the over-long record; returns where to resume."""
        skip = self.skip
        assert skip is not None
        if self.mode == "ndjson":
            hits = np.flatnonzero(buf[pos:end] == 10)
            sep = pos + int(hits[0]) if hits.size else -1
        else:
            sep, skip.in_string, skip.escaped, skip.depth = fs.scan_element(
                buf, pos, end, skip.in_string, skip.escaped, skip.depth
            )
        last = _last_nonblank(buf, pos, end if sep < 0 else sep)
        if last >= 0:
            skip.last = base + last
        if sep < 0 and not final:
            return end
        self.skip = None
        length = skip.last + 1 - skip.start
        self._reject(
            q,
            RECORD_TOO_LARGE,
            f"record of {length} bytes exceeds max_record_bytes={self.limits.max_record_bytes}",
            skip.excerpt,
            skip.start,
        )
        if sep < 0:  # the feed ended inside it
            if self.mode == "array":
                self._not_closed(q)
            return end
        if self.mode == "ndjson":
            return sep
        if buf[sep] == 93:
            self.mode = "after"
            return self._trailing(buf, base, sep + 1, end, final, q)
        self.expect = fs.EXPECT_ELEMENT
        return sep + 1

    def _final_element(
        self,
        buf: np.ndarray,
        base: int,
        pos: int,
        end: int,
        sink: Sink,
        q: Quarantine,
    ) -> None:
        """End of feed inside a JSON array: judge the unterminated last element
        (if any) like any other, then record that the array is not closed."""
        while pos < end and _IS_BLANK[buf[pos]]:
            pos += 1
        if pos < end:
            e = _last_nonblank(buf, pos, end) + 1
            if e - pos > self.limits.max_record_bytes:
                self._reject(
                    q,
                    RECORD_TOO_LARGE,
                    f"record of {e - pos} bytes exceeds max_record_bytes="
                    f"{self.limits.max_record_bytes}",
                    buf[pos : pos + self.limits.raw_bytes].tobytes(),
                    base + pos,
                )
            else:
                part = Part()
                out = self._native(1)
                self._decode_group(
                    buf, base, np.array([pos], np.int64), np.array([e], np.int64), True, out, part
                )
                self._flush(part, buf, base, 0, sink, q)
        self._not_closed(q)

    def _not_closed(self, q: Quarantine) -> None:
        self.mode = "after"
        self.trailing_reported = True
        self.n_markers += 1
        self.run.record(
            q,
            self.position,
            TRUNCATED,
            "the feed ends but its JSON array is not closed with ']': trades may be missing",
            b"",
        )

    def _trailing(
        self, buf: np.ndarray, base: int, pos: int, end: int, final: bool, q: Quarantine
    ) -> int:
        """After the closing ``]``: only blanks are allowed. Anything else (two
        arrays back to back, NDJSON whose first line is an array) is data we
        cannot account for, so the feed is refused rather than cut short."""
        if self.trailing_reported:
            return end
        while pos < end and _IS_BLANK[buf[pos]]:
            pos += 1
        if pos < end:
            raise FeedError(
                f"the feed continues after its JSON array is closed, at byte {base + pos}: "
                f"{buf[pos : pos + 40].tobytes()!r}; a feed is one JSON array or NDJSON "
                "(was it two arrays back to back, or NDJSON starting with an array line?)"
            )
        return end

    def _reject(self, q: Quarantine, reason: str, detail: str, raw: bytes, offset: int) -> None:
        if not self.first_problem:
            self.first_problem = f"record {self.position}: {reason}: {detail}"
        self.run.record(q, self.position, reason, detail, raw, offset)
        self.position += 1
        self.n_records += 1


def _as_bytes(data: Any) -> bytes | memoryview:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return memoryview(data).cast("B").toreadonly()
    raise FeedError(f"a feed must be JSON text (str) or bytes, not {type(data).__name__}")


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------
def decode_feed(
    data: bytes | bytearray | memoryview | str,
    desk: str | None = None,
    *,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
) -> tuple[TradeBatch, Quarantine]:
    """Decode one feed (JSON array or NDJSON) into columns and a quarantine.

    Raises :class:`FeedError` if the feed is not JSON at all, empty, or larger
    than ``limits.max_feed_bytes``. See the module docstring for the rules.
    """
    run = Run(desk, dictionaries, limits)
    raw = _as_bytes(data)
    if len(raw) > run.limits.max_feed_bytes:
        raise FeedError(
            f"the feed is {len(raw)} bytes, over max_feed_bytes={run.limits.max_feed_bytes}; "
            "stream it with iter_feed, or raise the limit"
        )
    state = FeedState(run)
    q = run.quarantine()
    sink = Sink(run.dictionaries)
    state.process(raw, 0, True, sink, q)
    state.finish()
    q.seen = state.seen
    log_quarantine(q, desk, "decode_feed")
    return sink.batch(), q


def iter_feed(
    source: str | os.PathLike[str] | BinaryIO | bytes | memoryview,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
) -> Iterator[tuple[TradeBatch, Quarantine]]:
    """Stream a feed: read ``chunk_size`` bytes at a time, yield the records
    completed so far as ``(TradeBatch, Quarantine)`` (chunks with neither
    trades nor quarantined records are not yielded).

    ``source`` is a path, a binary file object (anything with ``read(n)``),
    or the feed's bytes. Concatenating the batches and quarantines gives the
    same result as :func:`decode_feed` for every ``chunk_size``. Peak memory is
    about ``chunk_size + max_record_bytes`` of text plus the columns of one
    chunk; ``limits.max_feed_bytes`` does not apply (nothing is held whole).
    FeedError (not JSON, empty) is raised when it is detected: at the start,
    or at the end if no record was even JSON.
    """
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of bytes, got {chunk_size!r}")
    if not isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)) and not hasattr(
        source, "read"
    ):
        raise TypeError(
            f"iter_feed reads a path, a binary file or bytes, not {type(source).__name__}"
        )
    run = Run(desk, dictionaries, limits)
    return _stream(run, source, int(chunk_size))


class _BytesReader:
    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes | memoryview) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> memoryview:
        start = self._pos
        self._pos = min(start + n, len(self._view))
        return self._view[start : self._pos]


def _stream(run: Run, source: Any, chunk_size: int) -> Iterator[tuple[TradeBatch, Quarantine]]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield from _read_loop(run, _BytesReader(_as_bytes(source)).read, chunk_size)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield from _read_loop(run, f.read, chunk_size)
    else:
        yield from _read_loop(run, source.read, chunk_size)


def _read_loop(
    run: Run, read: Callable[[int], bytes | memoryview], chunk_size: int
) -> Iterator[tuple[TradeBatch, Quarantine]]:
    state = FeedState(run)
    pending: bytes | memoryview = b""
    base = 0
    while True:
        block = read(chunk_size)
        if isinstance(block, str):
            raise TypeError("iter_feed needs a binary file: open it with 'rb'")
        final = len(block) == 0
        data = bytes(pending) + bytes(block) if len(pending) else block
        q = run.quarantine()
        sink = Sink(run.dictionaries)
        consumed = state.process(data, base, final, sink, q)
        pending = data[consumed:]
        base += consumed
        if final:
            state.finish()
        q.seen = state.unreported()
        if sink.n or q or q.seen:
            log_quarantine(q, run.desk, "iter_feed")
            yield sink.batch(), q
        if final:
            return
