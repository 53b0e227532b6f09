"""The common tail of every reader: value checks, FX to USD, seconds -> ns,
duplicate ids, interning and the output columns (``Run.finish``), and
:func:`ingest_columns` for columns from other readers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import feedscan as fs
from ..batch import COLUMNS, Dictionaries, TradeBatch
from ..reference import (
    ReferenceData,
    ReferenceDataError,
    UnknownAssetClassError,
    UnknownCurrencyError,
    active_reference,
)
from ..reference.tables import ALWAYS, DAY_NS
from .quarantine import (
    BAD_JSON,
    BAD_NOTIONAL,
    BAD_TIMESTAMP,
    DEFAULT_LIMITS,
    DUPLICATE_TRADE_ID,
    EMPTY_ID,
    MAX_DETAIL_CHARS,
    NOTIONAL_TOO_LARGE,
    RECORD_TOO_LARGE,
    TRUNCATED,
    UNKNOWN_ASSET_CLASS,
    UNKNOWN_CURRENCY,
    IngestLimits,
    Quarantine,
    QuarantineRecord,
    log_quarantine,
)
from .tables import RUN_LOCK, StringTable, TradeIdSet

log = logging.getLogger("surv_kernel.ingest")  # one logger for the package

# value checks on columns, as uint8 codes (0 = keep), in priority order
_V_TOO_LARGE, _V_EMPTY_ID, _V_CURRENCY, _V_ASSET, _V_NOTIONAL, _V_USD, _V_TIME, _V_DUP = range(1, 9)
_V_REASON = {
    _V_TOO_LARGE: RECORD_TOO_LARGE,
    _V_EMPTY_ID: EMPTY_ID,
    _V_CURRENCY: UNKNOWN_CURRENCY,
    _V_ASSET: UNKNOWN_ASSET_CLASS,
    _V_NOTIONAL: BAD_NOTIONAL,
    _V_USD: NOTIONAL_TOO_LARGE,
    _V_TIME: BAD_TIMESTAMP,
    _V_DUP: DUPLICATE_TRADE_ID,
}


class Run:
    """The state of one ingest call: limits, desk, string tables, duplicates."""

    def __init__(
        self, desk: str | None, dictionaries: Dictionaries | None, limits: IngestLimits | None
    ) -> None:
        self.desk = desk
        self.dictionaries = dictionaries if dictionaries is not None else Dictionaries()
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        d = self.dictionaries
        with RUN_LOCK:
            self.desk_code = d.desk.code(desk if desk is not None else "")
            if d.trade_ids is None:
                d.trade_ids = TradeIdSet()
        self.asset_class = StringTable(d.asset_class)
        self.currency = StringTable(d.currency)
        self.trader = StringTable(d.trader)
        self.not_json = 0  # records quarantined as bad_json or truncated
        #: (position, reason, detail, raw, offset) -> the same, for records whose
        #: source is not the bytes we parsed (legacy dicts)
        self.rewrite: (
            Callable[
                [int, str, str, bytes | str, int | None],
                tuple[str, str, bytes | str, int | None],
            ]
            | None
        ) = None

    def quarantine(self) -> Quarantine:
        return Quarantine(max_records=self.limits.max_quarantine_records)

    def record(
        self,
        q: Quarantine,
        position: int,
        reason: str,
        detail: str,
        raw: bytes | str,
        offset: int | None = None,
        trade_id: str | None = None,
    ) -> None:
        if self.rewrite is not None:
            reason, detail, raw, offset = self.rewrite(position, reason, detail, raw, offset)
        if reason in (BAD_JSON, TRUNCATED):
            self.not_json += 1
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw[: self.limits.raw_bytes]).decode("utf-8", "replace")
        if len(detail) > MAX_DETAIL_CHARS:
            # the offending value can be the size of the record: the raw
            # excerpt has its start, the detail keeps the reason readable
            detail = detail[: MAX_DETAIL_CHARS - 1] + "\u2026"
        q.add(
            QuarantineRecord(
                desk=self.desk,
                position=int(position),
                reason=reason,
                detail=detail,
                raw=raw,
                offset=offset,
                trade_id=trade_id,
            )
        )

    # -- the common tail of every path: value checks, duplicates, codes -----
    def finish(
        self,
        q: Quarantine,
        sink: Sink,
        *,
        positions: np.ndarray,
        lengths: np.ndarray,
        notional: np.ndarray,
        timestamp: np.ndarray,
        surveillance: np.ndarray,
        asset_class: np.ndarray,
        currency: np.ndarray,
        trader: np.ndarray,
        id_hash: np.ndarray,
        id_len: np.ndarray,
        trader_len: np.ndarray,
        ids_of: Callable[[np.ndarray], np.ndarray],
        raw_of: Callable[[int], bytes | str],
        offset_of: Callable[[int], int | None],
        skip: np.ndarray,
        earlier: Sequence[tuple[int, str, str, bytes | str, int | None, str | None]] = (),
        hint: int = 0,
        timestamp_ns: np.ndarray | None = None,
    ) -> None:
        """Check values, drop duplicates, intern, and append one part's kept
        rows to ``sink`` (``hint``: rows the sink may expect in total).

        ``asset_class``/``currency``/``trader`` are local codes of this call's
        string tables; ``ids_of(rows)`` gives the trade ids of ``rows`` (all
        rows for None); ``earlier`` holds records the part already rejected
        while decoding (position, reason, detail, raw, offset, trade_id); all
        quarantine records of the part are added in position order.
        ``timestamp_ns``: exact nanoseconds for readers whose timestamps are
        integers or datetimes (``timestamp`` then only serves the range check
        and messages); None converts ``timestamp`` seconds.
        """
        lim = self.limits
        n = positions.shape[0]
        reason = np.empty(n, np.uint8)
        usd = np.empty(n, np.float64)
        ref = active_reference()
        rate, rate_of_row, days = _fx_rates(
            ref, self.currency.values, currency, skip, timestamp, timestamp_ns, lim
        )
        known_asset = np.array([v in ref.floors for v in self.asset_class.values], np.bool_)
        fs.check_values(
            skip,
            lengths,
            lim.max_record_bytes,
            id_len,
            trader_len,
            rate_of_row,
            rate,
            asset_class,
            known_asset,
            notional,
            timestamp,
            lim.max_notional_usd,
            lim.min_timestamp,
            lim.max_timestamp,
            reason,
            usd,
        )
        with RUN_LOCK:
            duplicate = self.dictionaries.trade_ids.mark_duplicates(id_hash, reason == 0)
            reason[duplicate] = _V_DUP
            keep = reason == 0
            self.trader.assign(trader, keep)
            self.asset_class.assign(asset_class, keep)
            self.currency.assign(currency, keep)

        bad = np.flatnonzero(~keep & ~skip)  # skipped rows' entries are in earlier
        entries = list(earlier)
        if bad.size:
            bad_ids = ids_of(bad)
            for row, trade_id in zip(bad.tolist(), bad_ids.tolist(), strict=True):
                code = int(reason[row])
                entries.append(
                    (
                        int(positions[row]),
                        _V_REASON[code],
                        self._detail(
                            code,
                            row,
                            lengths,
                            notional,
                            usd,
                            timestamp,
                            currency,
                            asset_class,
                            trade_id,
                            ref,
                            None if days is None else int(days[row]),
                        ),
                        raw_of(row),
                        offset_of(row),
                        # an over-long record is skipped unread when streamed,
                        # so it never reports an id (the same on every path)
                        None if code == _V_TOO_LARGE else trade_id,
                    )
                )
        entries.sort(key=lambda e: e[0])
        for position, why, detail, raw, offset, trade_id in entries:
            self.record(q, position, why, detail, raw, offset, trade_id)

        # the kept rows straight into the batch's columns (no concatenation)
        every = bool(keep.all())
        rows = None if every else np.flatnonzero(keep)
        m = n if rows is None else rows.shape[0]
        if not m:
            return
        a = sink.reserve(m, hint)
        b = a + m
        cols = sink.cols
        if timestamp_ns is not None:
            _put(cols["timestamp_ns"][a:b], timestamp_ns, rows)
        else:
            fs.seconds_to_ns(
                timestamp, np.arange(n) if rows is None else rows, cols["timestamp_ns"][a:b]
            )
        _put(cols["notional_usd"][a:b], usd, rows)
        _put(cols["notional"][a:b], notional, rows)
        _put(cols["trader"][a:b], self.trader.lut, trader if every else trader[rows])
        _put(
            cols["asset_class"][a:b],
            self.asset_class.lut,
            asset_class if every else asset_class[rows],
        )
        _put(cols["currency"][a:b], self.currency.lut, currency if every else currency[rows])
        cols["desk"][a:b] = self.desk_code
        _put(cols["surveillance_required"][a:b], surveillance, rows)
        sink.ids[a:b] = ids_of(rows)
        sink.n = b

    def _detail(
        self,
        code: int,
        row: int,
        lengths: np.ndarray,
        notional: np.ndarray,
        usd: np.ndarray,
        timestamp: np.ndarray,
        currency: np.ndarray,
        asset_class: np.ndarray,
        trade_id: str,
        ref: ReferenceData | None = None,
        day: int | None = None,
    ) -> str:
        lim = self.limits
        if code == _V_TOO_LARGE:
            return f"record of {int(lengths[row])} bytes exceeds max_record_bytes={lim.max_record_bytes}"
        if code == _V_EMPTY_ID:
            return "trade_id is empty" if trade_id == "" else "trader_id is empty"
        if code == _V_CURRENCY:
            value = self.currency.values[currency[row]]
            try:  # the reference's own words: unknown currency, or no rate that day
                (ref or active_reference()).fx_rate(value, day)
            except ReferenceDataError as exc:
                return str(exc)
            return str(UnknownCurrencyError(value))
        if code == _V_ASSET:
            return str(UnknownAssetClassError(self.asset_class.values[asset_class[row]]))
        if code == _V_NOTIONAL:
            return f"notional {float(notional[row])!r} is not a positive finite amount"
        if code == _V_USD:
            return (
                f"notional {float(notional[row])!r} {self.currency.values[currency[row]]} = "
                f"{float(usd[row]):.6g} USD exceeds max_notional_usd={lim.max_notional_usd:g}"
            )
        if code == _V_TIME:
            return (
                f"timestamp {float(timestamp[row])!r} is outside [{lim.min_timestamp:.0f}, "
                f"{lim.max_timestamp:.0f}) epoch seconds"
            )
        return f"trade_id {trade_id!r} was already accepted earlier in this run; first kept"

    # -- parts -------------------------------------------------------------
    def native_part(
        self,
        q: Quarantine,
        sink: Sink,
        buf: np.ndarray,
        base: int,
        out: NativeOut,
        k: int,
        hint: int,
        part: Part,
    ) -> None:
        """Rows ``0..k`` of the native output, with ``part``'s quarantine
        entries, rejected rows and trade ids that are not in ``out.id_buf``."""
        earlier = part.earlier
        if not k:
            for position, reason, detail, raw, offset, trade_id in earlier:
                self.record(q, position, reason, detail, raw, offset, trade_id)
            return
        rs = out.rec_start[:k]
        sl = out.str_len[:, :k]
        for table in (self.asset_class, self.currency, self.trader):
            table.sync()
        defaulted = out.defaulted[:k]
        if defaulted.any():
            q.defaulted["currency"] += int(np.count_nonzero(defaulted & fs.DEFAULTED_CURRENCY))
            q.defaulted["surveillance_required"] += int(
                np.count_nonzero(defaulted & fs.DEFAULTED_FLAG)
            )
        # every id of the part at once: one decode and one split, no loop
        text = out.id_buf[: out.id_end[k - 1] - 1].tobytes().decode("utf-8", "surrogatepass")
        ids = _object_array(text.split("\n"))
        if part.id_rows:
            ids[np.asarray(part.id_rows, np.int64)] = _object_array(part.ids)
        skip = np.zeros(k, np.bool_)
        if part.skip:
            skip[np.asarray(part.skip, np.int64)] = True
        self.finish(
            q,
            sink,
            hint=hint,
            earlier=earlier,
            positions=out.positions[:k],
            lengths=out.rec_end[:k] - rs,
            notional=out.floats[0, :k],
            timestamp=out.floats[1, :k],
            surveillance=out.flags[:k],
            asset_class=out.codes[0, :k],
            currency=out.codes[1, :k],
            trader=out.codes[2, :k],
            id_hash=out.str_hash[fs.STR_TRADE_ID, :k],
            id_len=sl[fs.STR_TRADE_ID],
            trader_len=sl[fs.STR_TRADER_ID],
            ids_of=lambda rows: ids if rows is None else ids[rows],
            skip=skip,
            raw_of=lambda row: buf[rs[row] : out.rec_end[row]].tobytes(),
            offset_of=lambda row: base + int(rs[row]),
        )


def _fx_rates(
    ref: ReferenceData,
    names: Sequence[str],
    currency: np.ndarray,
    skip: np.ndarray,
    timestamp: np.ndarray,
    timestamp_ns: np.ndarray | None,
    lim: IngestLimits,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(rate, index, days)`` for ``check_values``: row ``i`` converts at
    ``rate[index[i]]`` USD per unit (NaN: no rate, ``unknown_currency``).

    Undated tables (the embedded default holds one rate per currency for all
    time) give one rate per currency, indexed by the currency codes: no
    per-row work. Dated tables give each row its currency's rate on its own
    UTC trading date (``ReferenceData.rates_for``; ``days`` says which day).
    A row whose timestamp is outside the accepted range has no trading date:
    it takes its currency's latest rate, so it is still judged by the checks
    after the currency's (``bad_timestamp``), exactly as with undated tables.
    """
    series = [ref.rates.get(v) for v in names]
    latest = np.array(
        [np.nan if s is None or not len(s.days) else float(s.usd_per_unit[-1]) for s in series],
        np.float64,
    )
    if all(s is None or (len(s.days) == 1 and s.days[0] == ALWAYS) for s in series):
        return latest, currency, None
    n = currency.shape[0]
    codes = np.where(skip, 0, currency)  # skipped rows' fields are not set
    in_range = ~skip & (timestamp >= lim.min_timestamp) & (timestamp < lim.max_timestamp)
    if timestamp_ns is not None:
        days = np.where(in_range, timestamp_ns, 0) // DAY_NS
    else:
        # whole seconds first: floor(t) is exact, so no float division puts a
        # trade a rounding error before midnight on the next day
        whole = np.floor(np.where(in_range, timestamp, 0.0)).astype(np.int64)
        days = whole // 86_400
    rate = ref.rates_for(names, codes, days * DAY_NS)
    if len(latest):
        rate = np.where(in_range, rate, latest[codes])
    return rate, np.arange(n), days


def _object_array(values: list[Any]) -> np.ndarray:
    return np.fromiter(values, object, len(values))


def _put(dst: np.ndarray, src: np.ndarray, rows: np.ndarray | None) -> None:
    """``dst[:] = src[rows]`` (all of ``src`` for None) without a temporary."""
    if rows is None:
        dst[...] = src
    else:
        np.take(src, rows, out=dst)


_OUT_COLUMNS = tuple(COLUMNS.items())  # (name, dtype), the TradeBatch's own


class Sink:
    """The columns of one output batch, preallocated and filled part by part,
    so a feed decoded in many parts is not concatenated (copied) at the end.
    Grows by half when an estimate falls short."""

    __slots__ = ("cols", "dictionaries", "ids", "n")

    def __init__(self, dictionaries: Dictionaries, capacity: int = 0) -> None:
        self.dictionaries = dictionaries
        self.n = 0
        self.cols = {name: np.empty(capacity, dtype) for name, dtype in _OUT_COLUMNS}
        self.ids = np.empty(capacity, object)

    def reserve(self, m: int, hint: int = 0) -> int:
        """Room for ``m`` more rows (``hint``: the total to expect); returns
        the first free row."""
        need = self.n + m
        capacity = self.ids.shape[0]
        if need > capacity:
            new = max(need, hint, capacity + capacity // 2)
            n = self.n
            for name, col in self.cols.items():
                grown = np.empty(new, col.dtype)
                grown[:n] = col[:n]
                self.cols[name] = grown
            ids = np.empty(new, object)
            ids[:n] = self.ids[:n]
            self.ids = ids
        return self.n

    def batch(self) -> TradeBatch:
        n = self.n
        if not n:
            return TradeBatch.empty(self.dictionaries)
        return TradeBatch(
            trade_id=self.ids[:n],
            dictionaries=self.dictionaries,
            **{name: col[:n] for name, col in self.cols.items()},
        )


def utf8_spans(values: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTF-8 bytes of ``values`` in one buffer, with their (start, length) spans."""
    n = len(values)
    if n == 0:
        return np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64)
    joined = "\n".join(values)
    if joined.count("\n") == n - 1:
        data = joined.encode("utf-8", "surrogatepass")
        buf = np.frombuffer(data, np.uint8)
        newlines = np.flatnonzero(buf == 10)
        starts = np.empty(n, np.int64)
        starts[0] = 0
        starts[1:] = newlines + 1
        ends = np.empty(n, np.int64)
        ends[:-1] = newlines
        ends[-1] = buf.shape[0]
        return buf, starts, ends - starts
    # a value holds a newline: encode one by one (rare)
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    lengths = np.fromiter(map(len, encoded), np.int64, n)
    buf = np.frombuffer(b"".join(encoded), np.uint8)
    return buf, np.cumsum(lengths) - lengths, lengths


# ---------------------------------------------------------------------------
# Columns from other readers (Arrow, Parquet, CSV, DataFrames)
# ---------------------------------------------------------------------------
def ingest_columns(
    *,
    desk: str | None,
    dictionaries: Dictionaries | None,
    limits: IngestLimits | None,
    positions: np.ndarray,
    strings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    trade_ids: Callable[[np.ndarray | None], np.ndarray],
    notional: np.ndarray,
    timestamp: np.ndarray,
    timestamp_ns: np.ndarray | None,
    surveillance: np.ndarray,
    skip: np.ndarray,
    earlier: Sequence[tuple[int, str, str, bytes | str, int | None, str | None]],
    raw_of: Callable[[int], bytes | str],
) -> tuple[TradeBatch, Quarantine]:
    """The tail every feed goes through, for columns a non-JSON reader built:
    the value checks, duplicate ids, FX conversion and interning of ``Run.finish``.

    Called by :func:`surv_kernel.validate.validate_columns` (use that: it
    checks the columns' kinds and turns nulls into ``wrong_type`` records).
    ``strings`` maps ``trade_id``, ``asset_class``, ``currency`` and
    ``trader_id`` to UTF-8 spans ``(buf, starts, lengths)``; rows with
    ``skip`` were rejected by the caller (their entries are in ``earlier``).
    A columnar row has no record text, so ``record_too_large`` never applies.
    """
    run = Run(desk, dictionaries, limits)
    q = run.quarantine()
    sink = Sink(run.dictionaries, int(positions.shape[0]))
    id_buf, id_start, id_len = strings["trade_id"]
    id_hash = np.empty(id_start.shape[0], np.uint64)
    fs.hash_spans(id_buf, id_start, id_len, id_hash)
    trader = strings["trader_id"]
    run.finish(
        q,
        sink,
        positions=positions,
        lengths=np.zeros(positions.shape[0], np.int64),
        notional=notional,
        timestamp=timestamp,
        timestamp_ns=timestamp_ns,
        surveillance=surveillance,
        asset_class=run.asset_class.intern(*strings["asset_class"]),
        currency=run.currency.intern(*strings["currency"]),
        trader=run.trader.intern(*trader),
        id_hash=id_hash,
        id_len=id_len,
        trader_len=trader[2],
        ids_of=trade_ids,
        raw_of=raw_of,
        offset_of=lambda row: None,
        skip=skip,
        earlier=earlier,
    )
    q.seen = int(positions.shape[0])  # every row is a record seen (reconciliation)
    log_quarantine(q, desk, "validate_columns")
    return sink.batch(), q


class NativeOut:
    """Rows of one part: what the native parser writes, plus the records the
    fallback decoded in between (see ``FeedState._decode_group``)."""

    _ROWS = (
        "rec_start",
        "rec_end",
        "positions",
        "flags",
        "defaulted",
        "bailed",
        "id_end",
    )
    _COLS = ("str_start", "str_len", "str_hash", "str_words", "floats", "codes")
    __slots__ = (*_ROWS, *_COLS, "id_buf")

    def __init__(self, cap: int) -> None:
        self.rec_start = np.empty(cap, np.int64)
        self.rec_end = np.empty(cap, np.int64)
        self.positions = np.empty(cap, np.int64)
        self.flags = np.empty(cap, np.bool_)
        self.defaulted = np.zeros(cap, np.uint8)
        self.bailed = np.zeros(cap, np.bool_)
        self.id_end = np.empty(cap, np.int64)
        self.str_start = np.empty((4, cap), np.int64)
        self.str_len = np.empty((4, cap), np.int64)
        self.str_hash = np.empty((4, cap), np.uint64)
        self.str_words = np.empty((4, 2, cap), np.uint64)
        self.floats = np.empty((2, cap), np.float64)
        self.codes = np.empty((3, cap), np.int64)
        self.id_buf = np.empty(16 * cap, np.uint8)

    @property
    def capacity(self) -> int:
        return self.rec_start.shape[0]

    def grown(self, cap: int, keep: int) -> NativeOut:
        """A larger copy holding rows ``0..keep``."""
        new = NativeOut(cap)
        for name in self._ROWS:
            getattr(new, name)[:keep] = getattr(self, name)[:keep]
        for name in self._COLS:
            getattr(new, name)[..., :keep] = getattr(self, name)[..., :keep]
        used = int(self.id_end[keep - 1]) if keep else 0
        if used > new.id_buf.shape[0]:
            new.id_buf = np.empty(2 * used, np.uint8)
        new.id_buf[:used] = self.id_buf[:used]
        return new

    def id_room(self, k: int, length: int) -> int:
        """Where row ``k``'s id goes, growing ``id_buf`` to fit ``length`` bytes."""
        start = int(self.id_end[k - 1]) if k else 0
        if start + length > self.id_buf.shape[0]:
            grown = np.empty(2 * (start + length), np.uint8)
            grown[:start] = self.id_buf[:start]
            self.id_buf = grown
        return start


class Part:
    """What one ``native_part`` call will take: rows ``0..k`` of the native
    output, records msgspec decoded among them (their fields are filled in
    bulk at flush), and quarantine entries of records already rejected."""

    __slots__ = ("earlier", "id_rows", "ids", "k", "pending", "skip")

    def __init__(self) -> None:
        self.k = 0
        self.earlier: list[tuple[int, str, str, bytes | str, int | None, str | None]] = []
        self.pending: list[tuple[np.ndarray, list[Any]]] = []  # (rows, Trades) decoded
        self.id_rows: list[int] = []  # rows whose trade id is not in out.id_buf ...
        self.ids: list[str] = []  # ... and their ids
        self.skip: list[int] = []  # rows msgspec rejected (their entry is in earlier)
