"""Tests of surv_kernel.ingest: feeds and legacy dicts -> TradeBatch + Quarantine.

The reference here (``reference_feed``) follows the documented rules
literally with the standard library: ``json.loads`` per record, type checks in
key order, value checks in the documented order, a Python set for duplicates,
``Fraction`` for the nanosecond conversion. The fast path must agree with it
record for record.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from fractions import Fraction
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surv_kernel import (
    ASSET_CLASS_FLOORS_USD,
    FX_RATES_USD,
    Dictionaries,
    TradeBatch,
    columns_from_dicts,
    decode_feed,
    iter_feed,
)
from surv_kernel import feedscan as fs
from surv_kernel.ingest import (
    DEFAULT_LIMITS,
    REASONS,
    FeedError,
    IngestLimits,
    Quarantine,
    QuarantineRecord,
    TradeIdSet,
)
from surv_kernel.schema import Trade

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SCHEMA = {
    "trade_id": "str",
    "asset_class": "str",
    "notional": "number",
    "currency": "str",
    "trader_id": "str",
    "timestamp": "number",
    "surveillance_required": "bool",
}


# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------
def trade(i: int, **override: Any) -> dict[str, Any]:
    """A valid trade dict; ``override`` replaces fields (``None`` drops one)."""
    t = {
        "trade_id": f"T{i:07d}",
        "asset_class": ("equity", "fixed_income", "derivative")[i % 3],
        "notional": 1000.0 + 37.25 * i,
        "currency": ("USD", "EUR", "GBP", "JPY")[i % 4],
        "trader_id": f"TR{i % 11:03d}",
        "timestamp": T0 + 0.123456 * i,
        "surveillance_required": i % 2 == 0,
    }
    for key, value in override.items():
        if value is None:
            t.pop(key, None)
        else:
            t[key] = value
    return t


def enc(record: Any) -> bytes:
    return record if isinstance(record, bytes) else msgspec.json.encode(record)


def array_feed(records: list[Any], sep: bytes = b",") -> bytes:
    return b"[" + sep.join(enc(r) for r in records) + b"]"


def ndjson_feed(records: list[Any]) -> bytes:
    return b"".join(enc(r) + b"\n" for r in records)


def ns_exact(seconds: float) -> int:
    """Nearest nanosecond of the float value, ties to even, in exact arithmetic."""
    return round(Fraction(seconds) * 10**9)


def rows_of(batch: TradeBatch) -> list[tuple[Any, ...]]:
    """Each row as plain Python values (codes decoded), for comparisons."""
    d = batch.dictionaries
    return list(
        zip(
            batch.trade_id.tolist(),
            d.asset_class.decode(batch.asset_class),
            d.currency.decode(batch.currency),
            d.trader.decode(batch.trader),
            batch.notional.tolist(),
            batch.notional_usd.tolist(),
            batch.timestamp_ns.tolist(),
            batch.surveillance_required.tolist(),
            d.desk.decode(batch.desk),
            strict=True,
        )
    )


def expected_row(t: dict[str, Any], desk: str = "") -> tuple[Any, ...]:
    notional = float(t["notional"])
    return (
        t["trade_id"],
        t["asset_class"],
        t.get("currency", "USD"),
        t["trader_id"],
        notional,
        notional * FX_RATES_USD[t.get("currency", "USD")],
        ns_exact(float(t["timestamp"])),
        bool(t.get("surveillance_required", False)),
        desk,
    )


def concat_stream(parts: list[tuple[TradeBatch, Quarantine]], d: Dictionaries):
    batches = [b for b, _ in parts if len(b)]
    batch = TradeBatch.concat(batches) if batches else TradeBatch.empty(d)
    q = Quarantine()
    for _, part in parts:
        q.extend(part)
    return batch, q


# ---------------------------------------------------------------------------
# The slow reference
# ---------------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def reference_record(
    text: bytes, seen: set[str], limits: IngestLimits = DEFAULT_LIMITS
) -> tuple[str | None, tuple[Any, ...] | None]:
    """(reason, None) or (None, expected row) for one record's text."""
    if len(text) > limits.max_record_bytes:
        return "record_too_large", None
    try:
        obj = json.loads(text.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return "bad_json", None
    if _has_surrogate(obj):
        return "bad_json", None  # msgspec rejects unpaired surrogate escapes
    if not isinstance(obj, dict):
        return "wrong_type", None
    for key, value in obj.items():  # msgspec checks types as it meets the keys
        kind = SCHEMA.get(key)
        if kind == "str" and type(value) is not str:
            return "wrong_type", None
        if kind == "bool" and type(value) is not bool:
            return "wrong_type", None
        if kind == "number":
            if type(value) not in (int, float):
                return "wrong_type", None
            try:
                as_float = float(value)
            except OverflowError:
                as_float = math.inf
            if math.isinf(as_float):  # msgspec: "Number out of range"
                return ("bad_timestamp" if key == "timestamp" else "bad_notional"), None
    if any(key not in obj for key in SCHEMA):
        return "missing_field", None
    if obj["trade_id"] == "" or obj["trader_id"] == "":
        return "empty_id", None
    if obj["currency"] not in FX_RATES_USD:
        return "unknown_currency", None
    if obj["asset_class"] not in ASSET_CLASS_FLOORS_USD:
        return "unknown_asset_class", None
    notional = float(obj["notional"])
    if not (notional > 0 and math.isfinite(notional)):
        return "bad_notional", None
    if not notional * FX_RATES_USD[obj["currency"]] <= limits.max_notional_usd:
        return "notional_too_large", None
    ts = float(obj["timestamp"])
    if not limits.min_timestamp <= ts < limits.max_timestamp:
        return "bad_timestamp", None
    if obj["trade_id"] in seen:
        return "duplicate_trade_id", None
    seen.add(obj["trade_id"])
    return None, expected_row(obj)


def reference_feed(
    texts: list[bytes], limits: IngestLimits = DEFAULT_LIMITS, seen: set[str] | None = None
) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    """Expected rows and (position, reason) of a feed given as record texts."""
    seen = set() if seen is None else seen
    rows, bad = [], []
    for position, text in enumerate(texts):
        reason, row = reference_record(text, seen, limits)
        if reason is None:
            rows.append(row)
        else:
            bad.append((position, reason))
    return rows, bad


def check_against_reference(
    feed: bytes, texts: list[bytes], limits: IngestLimits = DEFAULT_LIMITS
) -> tuple[TradeBatch, Quarantine]:
    batch, q = decode_feed(feed, limits=limits)
    rows, bad = reference_feed(texts, limits)
    assert rows_of(batch) == rows
    assert [(r.position, r.reason) for r in q] == bad
    assert q.counts == {reason: n for reason, n in _count(r for _, r in bad).items()}
    return batch, q


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["array", "array_pretty", "ndjson", "str"])
def test_round_trip_formats(fmt: str) -> None:
    trades = [trade(i) for i in range(200)]
    if fmt == "array":
        feed: bytes | str = array_feed(trades)
    elif fmt == "array_pretty":
        feed = json.dumps(trades, indent=2).encode()
    elif fmt == "ndjson":
        feed = ndjson_feed(trades)
    else:
        feed = json.dumps(trades)
    batch, q = decode_feed(feed, desk="eq-ny")
    assert len(q) == 0 and not q
    assert rows_of(batch) == [expected_row(t, "eq-ny") for t in trades]
    assert batch.timestamp_ns.dtype == np.int64 and batch.notional_usd.dtype == np.float64
    assert batch.trader.dtype == np.int32 and batch.trade_id.dtype == object


def test_received_api_call_payload() -> None:
    """What the received ``_api_call`` returns (json.dumps, int notional)."""
    payload = json.dumps(
        [
            {
                "trade_id": "T7001",
                "asset_class": "equity",
                "notional": 1500000,
                "currency": "USD",
                "trader_id": "TR001",
                "timestamp": 1767225600.25,
                "surveillance_required": True,
            }
        ]
    )
    batch, q = decode_feed(payload, desk="7")
    assert not q
    assert rows_of(batch) == [
        ("T7001", "equity", "USD", "TR001", 1.5e6, 1.5e6, 1767225600250000000, True, "7")
    ]


def test_empty_array_is_an_empty_feed() -> None:
    batch, q = decode_feed(b"  [ ]  ")
    assert len(batch) == 0 and not q


def test_extra_fields_key_order_escapes_and_unicode() -> None:
    """Everything the native parser leaves to msgspec still decodes exactly."""
    records = [
        trade(0, venue="XNYS", seq=7, ok=None, flag=False),  # scalar extras: native
        trade(1, meta={"book": [1, 2, {"x": "}"}]}),  # nested extra: msgspec
        dict(reversed(list(trade(2).items()))),  # another key order
        trade(3, trader_id="Zoë Ångström"),  # non-ASCII
        trade(4, trade_id='T"quoted"\\back'),  # escapes
        trade(5, trader_id="tab\there"),
        trade(6),  # notional gets > 19 significant digits below: msgspec rounds
        trade(7, notional=5e-324),  # subnormal: msgspec
        trade(8, timestamp=int(T0)),  # integer seconds
    ]
    texts = [enc(r) for r in records]
    texts[3] = json.dumps(records[3], ensure_ascii=True).encode()  # \u escapes
    texts[6] = texts[6].replace(b'"notional":1223.5', b'"notional":123456.789012345678901234567')
    feed = array_feed(texts)
    batch, q = check_against_reference(feed, texts)
    assert len(batch) == len(records) and not q
    assert batch.trader_ids()[3] == "Zoë Ångström"
    nd = b"\n".join(texts) + b"\n"
    batch2, _ = decode_feed(nd)
    assert rows_of(batch2) == rows_of(batch)


def test_native_and_msgspec_paths_agree() -> None:
    """The same trades with and without escapes (msgspec vs native) decode equal."""
    trades = [
        trade(i, notional=float(np.float64(10.0) ** (i % 13) * 1.000001 * (i + 1)))
        for i in range(300)
    ]
    plain = array_feed(trades)
    escaped = json.dumps(trades, ensure_ascii=True).replace('"T', '"\\u0054').encode()
    assert b"\\u0054" in escaped
    a, _ = decode_feed(plain)
    b, _ = decode_feed(escaped)
    assert rows_of(a) == rows_of(b)


def test_timestamps_are_the_nearest_nanosecond() -> None:
    rng = np.random.default_rng(1)
    seconds = np.concatenate(
        [
            T0 + rng.uniform(0, 86400 * 365, 2000),
            np.floor(T0) + np.array([0.5e-9, 1.5e-9, 0.999999999, 1e-9, 0.0]),
            [946_684_800.0, 4_102_444_799.999999],
        ]
    )
    trades = [trade(i, timestamp=float(s)) for i, s in enumerate(seconds)]
    batch, q = decode_feed(array_feed(trades))
    assert not q
    assert batch.timestamp_ns.tolist() == [ns_exact(float(s)) for s in seconds]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=1e-300, max_value=1e300, allow_nan=False),
            st.integers(min_value=1, max_value=10**25),
            st.decimals(min_value="1e-20", max_value="1e20", allow_nan=False, places=None).filter(
                lambda d: d > 0
            ),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_numbers_round_like_float(values: list[Any]) -> None:
    """Notionals parse exactly as ``float(text)`` (Clinger / Eisel-Lemire)."""
    texts = []
    for i, v in enumerate(values):
        number = repr(v) if isinstance(v, float) else str(v)
        record = enc(trade(i, notional=1.0)).replace(
            b'"notional":1.0', b'"notional":' + number.encode()
        )
        texts.append(record)
    limits = IngestLimits(max_notional_usd=math.inf)
    batch, q = decode_feed(array_feed(texts), limits=limits)
    expected = [float(t.split(b'"notional":')[1].split(b",")[0]) for t in texts]
    assert not q
    assert batch.notional.tolist() == expected


def test_decimal_to_double_hard_cases() -> None:
    """Halfway cases, long mantissas and exponent extremes vs ``float``."""
    rng = np.random.default_rng(7)
    cases: list[tuple[int, int]] = []
    for _ in range(20000):
        digits = int(rng.integers(1, 20))
        w = int(rng.integers(10 ** (digits - 1), 10**digits, dtype=np.uint64))
        q = int(rng.integers(-340, 300))
        cases.append((w, q))
    # exact halfway points between doubles: (2m+1) * 2**(e-1)
    for m in (2**52, 2**53 - 1, 4503599627370497):
        for e in (-20, 0, 3, 10):
            x = Fraction(2 * m + 1) * Fraction(2) ** (e - 1)
            text = f"{x.numerator * 10**30 // x.denominator}e-30"
            w_s, q_s = text.split("e")
            w_s = w_s.rstrip("0") or "0"
            if len(w_s) <= 19:
                cases.append((int(w_s), int(q_s) + len(text.split("e")[0]) - len(w_s)))
    for w, q in cases:
        ok, got = fs.decimal_to_double(np.uint64(w), q, False)
        want = float(f"{w}e{q}")
        if ok:
            assert got == want, (w, q)
        else:  # only subnormal/zero or overflow may be declined
            assert want == 0.0 or want < 2.2250738585072014e-308 or math.isinf(want), (w, q)


# ---------------------------------------------------------------------------
# Quarantine: every reason
# ---------------------------------------------------------------------------
REASON_CASES: list[tuple[str, bytes]] = [
    ("bad_json", b'{"trade_id": "X1", "notional": NaN}'),
    ("bad_json", b'{"trade_id" = "X1"}'),
    (
        "bad_json",
        b'{"trade_id":"X1","asset_class":"equity","notional":5,"currency":"USD",'
        b'"trader_id":"A","timestamp":1767225600,"surveillance_required":true} {"x":1}',
    ),
    (
        "bad_json",
        b'{"trade_id":"X\xff","asset_class":"equity","notional":5,"currency":"USD",'
        b'"trader_id":"A","timestamp":1767225600,"surveillance_required":true}',
    ),
    ("wrong_type", enc(trade(900, notional="1500000"))),
    ("wrong_type", enc(trade(900, trade_id=900))),
    ("wrong_type", enc(trade(900, surveillance_required="true"))),
    ("wrong_type", enc(trade(900, timestamp=None) | {"timestamp": None})),
    ("wrong_type", b"12345"),
    ("wrong_type", b'["T1", "equity"]'),
    ("missing_field", enc(trade(900, currency=None))),
    ("missing_field", b"{}"),
    ("empty_id", enc(trade(900, trade_id=""))),
    ("empty_id", enc(trade(900, trader_id=""))),
    ("unknown_currency", enc(trade(900, currency="XAU"))),
    ("unknown_currency", enc(trade(900, currency="usd"))),
    ("unknown_asset_class", enc(trade(900, asset_class="crypto"))),
    ("bad_notional", enc(trade(900, notional=0))),
    ("bad_notional", enc(trade(900, notional=-5.5))),
    ("bad_notional", enc(trade(900)).replace(b'"notional":34525.0', b'"notional":1e400')),
    ("bad_notional", enc(trade(900)).replace(b'"notional":34525.0', b'"notional":-0.0')),
    ("notional_too_large", enc(trade(900, notional=2e12, currency="USD"))),
    ("notional_too_large", enc(trade(900, notional=1e300, currency="GBP"))),
    ("bad_timestamp", enc(trade(900, timestamp=T0 * 1000))),  # milliseconds
    ("bad_timestamp", enc(trade(900, timestamp=0))),
    ("bad_timestamp", enc(trade(900, timestamp=4_102_444_800.0))),
    ("duplicate_trade_id", enc(trade(1))),
]


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
@pytest.mark.parametrize(("reason", "bad"), REASON_CASES)
def test_each_quarantine_reason(fmt: str, reason: str, bad: bytes) -> None:
    assert reason in REASONS
    texts = [enc(trade(0)), enc(trade(1)), bad, enc(trade(2))]
    feed = array_feed(texts) if fmt == "array" else b"\n".join(texts) + b"\n"
    batch, q = check_against_reference(feed, texts)
    assert [t for t in batch.trade_id] == ["T0000000", "T0000001", "T0000002"]
    (record,) = q
    assert record.reason == reason and record.position == 2 and record.detail
    assert record.raw == bad.decode("utf-8", "replace")
    assert feed[record.offset : record.offset + len(bad)] == bad


def test_duplicate_keeps_first_and_ignores_rejected_ids() -> None:
    texts = [
        enc(trade(5, notional=-1)),  # rejected: does not reserve T0000005
        enc(trade(5)),  # kept
        enc(trade(5, notional=2.0)),  # duplicate
        enc(trade(6)),
        enc(trade(6)),  # duplicate
    ]
    batch, q = check_against_reference(array_feed(texts), texts)
    assert batch.trade_id.tolist() == ["T0000005", "T0000006"]
    assert batch.notional[0] == trade(5)["notional"]
    assert [(r.position, r.reason, r.trade_id) for r in q] == [
        (0, "bad_notional", "T0000005"),
        (2, "duplicate_trade_id", "T0000005"),
        (4, "duplicate_trade_id", "T0000006"),
    ]


def test_duplicates_across_desks_and_calls_of_one_run() -> None:
    d = Dictionaries()
    a, qa = decode_feed(array_feed([trade(1), trade(2)]), desk="A", dictionaries=d)
    b, qb = decode_feed(ndjson_feed([trade(2), trade(3)]), desk="B", dictionaries=d)
    c = columns_from_dicts([trade(3), trade(4)], desk="C", dictionaries=d)
    assert a.trade_id.tolist() == ["T0000001", "T0000002"] and not qa
    assert b.trade_id.tolist() == ["T0000003"]
    assert [(r.desk, r.position, r.reason) for r in qb] == [("B", 0, "duplicate_trade_id")]
    assert c.trade_id.tolist() == ["T0000004"]
    assert len(d.trade_ids) == 4
    # a new run forgets them
    again, q = decode_feed(array_feed([trade(1)]))
    assert len(again) == 1 and not q


class _ReadSpy(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.reads.append(-1 if n is None else n)
        return super().read(n)


def test_record_too_large_is_skipped_not_buffered() -> None:
    limits = IngestLimits(max_record_bytes=1024, raw_bytes=100)
    big = enc(trade(1, note="x" * 50_000))
    texts = [enc(trade(0)), big, enc(trade(2))]
    for feed in (array_feed(texts), b"\n".join(texts)):
        batch, q = check_against_reference(feed, texts, limits)
        assert q[0].reason == "record_too_large" and len(q[0].raw) == 100
        assert f"record of {len(big)} bytes" in q[0].detail
        spy = _ReadSpy(feed)
        parts = list(iter_feed(spy, chunk_size=256, limits=limits))
        sb, sq = concat_stream(parts, parts[0][0].dictionaries)
        assert rows_of(sb) == rows_of(batch) and list(sq) == list(q)
        assert set(spy.reads) == {256}


def test_truncated_feeds() -> None:
    t0, t1 = enc(trade(0)), enc(trade(1))
    # cut inside the second record
    batch, q = decode_feed(b"[" + t0 + b"," + t1[:40])
    assert batch.trade_id.tolist() == ["T0000000"]
    assert [(r.position, r.reason) for r in q] == [(1, "truncated"), (2, "truncated")]
    assert "not closed" in q[1].detail
    # cut right after a complete record: it is kept, the array is reported
    batch, q = decode_feed(b"[" + t0 + b"," + t1)
    assert batch.trade_id.tolist() == ["T0000000", "T0000001"]
    assert [(r.position, r.reason) for r in q] == [(2, "truncated")]
    # NDJSON cut inside the last line
    batch, q = decode_feed(t0 + b"\n" + t1[:-3])
    assert [(r.position, r.reason) for r in q] == [(1, "truncated")]
    # but a malformed line in the middle is bad_json
    batch, q = decode_feed(t0 + b"\n" + t1[:-3] + b"\n" + t0.replace(b"T0000000", b"T9"))
    assert [(r.position, r.reason) for r in q] == [(1, "bad_json")]
    assert len(batch) == 2


def test_data_after_the_array_and_junk_between_records() -> None:
    t0, t1 = enc(trade(0)), enc(trade(1))
    for feed in (b"[" + t0 + b"]\n[" + t1 + b"]", b"[1]\n" + t1 + b"\n", b"[" + t0 + b"] x"):
        with pytest.raises(FeedError, match="continues after its JSON array"):
            decode_feed(feed)
        with pytest.raises(FeedError, match="continues after its JSON array"):
            list(iter_feed(feed, chunk_size=5))
    assert len(decode_feed(b"[" + t0 + b"] \r\n\t ")[0]) == 1
    # a missing comma makes one bad element of both records, on every path
    batch, q = decode_feed(b"[" + t0 + b" " + t1 + b"," + enc(trade(2)) + b"]")
    assert batch.trade_id.tolist() == ["T0000002"]
    assert [(r.position, r.reason) for r in q] == [(0, "bad_json")]
    # a trailing comma is an empty element
    batch, q = decode_feed(b"[" + t0 + b",]")
    assert [(r.position, r.reason) for r in q] == [(1, "bad_json")]


def test_deep_nesting_is_bad_json_not_an_exception() -> None:
    """msgspec raises RecursionError past ~1000 levels, well inside 64 KiB."""
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    for feed in (array_feed([trade(0), deep, trade(1)]), ndjson_feed([trade(0), deep, trade(1)])):
        batch, q = decode_feed(feed)
        assert batch.trade_id.tolist() == ["T0000000", "T0000001"]
        assert [(r.position, r.reason) for r in q] == [(1, "bad_json")]
        assert "levels deep, more than the 32 allowed" in q[0].detail
    nested: Any = 1
    for _ in range(5000):
        nested = {"a": nested}
    _, q = columns_from_dicts([trade(0, meta=nested), trade(1)], return_quarantine=True)
    assert [(r.position, r.reason) for r in q] == [(0, "wrong_type")]


# ---------------------------------------------------------------------------
# Feed errors: loud, never an empty batch
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "feed",
    [
        b"",
        b"   \n\t ",
        b"<html>502 Bad Gateway</html>",
        b"null",
        b"42",
        b"\xff\xfe[",
        "Error: timeout",
    ],
)
def test_not_json_is_a_feed_error(feed: bytes | str) -> None:
    with pytest.raises(FeedError, match="not JSON|empty"):
        decode_feed(feed)
    with pytest.raises(FeedError):
        list(iter_feed(feed.encode() if isinstance(feed, str) else feed, chunk_size=3))


def test_feed_of_garbage_lines_is_a_feed_error() -> None:
    with pytest.raises(FeedError, match="none of its 3 record"):
        decode_feed(b"{oops\n{still not json\n{nope}\n")
    with pytest.raises(FeedError, match="none of its 1 record"):
        decode_feed(b"[{truncated")
    # one valid JSON record (even a useless one) makes it a feed
    batch, q = decode_feed(b'{oops\n{"error": "upstream down"}\n')
    assert len(batch) == 0 and [r.reason for r in q] == ["bad_json", "missing_field"]


def test_feed_size_limit_and_types() -> None:
    limits = IngestLimits(max_feed_bytes=1000)
    with pytest.raises(FeedError, match="max_feed_bytes=1000"):
        decode_feed(array_feed([trade(i) for i in range(20)]), limits=limits)
    with pytest.raises(FeedError, match="list"):
        decode_feed([trade(0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        iter_feed(b"[]", chunk_size=0)
    with pytest.raises(TypeError, match="path, a binary file or bytes"):
        iter_feed(12345)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_record_bytes"):
        IngestLimits(max_record_bytes=10)


def test_bom_and_buffer_types() -> None:
    feed = array_feed([trade(0), trade(1)])
    want = rows_of(decode_feed(feed)[0])
    assert rows_of(decode_feed(b"\xef\xbb\xbf" + feed)[0]) == want
    assert rows_of(decode_feed(bytearray(feed))[0]) == want
    assert rows_of(decode_feed(memoryview(feed))[0]) == want
    for size in (1, 2, 5):
        parts = list(iter_feed(b"\xef\xbb\xbf" + feed, chunk_size=size))
        assert rows_of(concat_stream(parts, parts[0][0].dictionaries)[0]) == want


# ---------------------------------------------------------------------------
# Streaming: any chunking gives the same columns and the same quarantine
# ---------------------------------------------------------------------------
def mixed_texts(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    texts = []
    bad = [case for _, case in REASON_CASES]
    for i in range(n):
        r = rng.random()
        if r < 0.15:
            texts.append(bad[int(rng.integers(len(bad)))].replace(b"X1", b"X%d" % i))
        elif r < 0.25:
            texts.append(json.dumps(trade(i, trader_id="Ünï"), ensure_ascii=bool(i % 2)).encode())
        else:
            texts.append(enc(trade(i)))
    return texts


@pytest.mark.parametrize("fmt", ["array", "ndjson"])
def test_chunking_invariance(fmt: str, tmp_path: Any) -> None:
    texts = mixed_texts(400, seed=3)
    feed = array_feed(texts, b",\n ") if fmt == "array" else b"\n\n".join(texts) + b"\n"
    whole, wq = check_against_reference(feed, texts)
    whole_codes = (whole.trader.copy(), whole.asset_class.copy(), whole.currency.copy())
    path = tmp_path / "feed.json"
    path.write_bytes(feed)
    sources = [(feed, s) for s in (1, 2, 3, 7, 64, 1000, 10**7)] + [(path, 97), (str(path), 4096)]
    for source, size in sources:
        parts = list(iter_feed(source, chunk_size=size, desk=None))
        batch, q = concat_stream(parts, parts[0][0].dictionaries)
        assert rows_of(batch) == rows_of(whole), size
        assert (
            batch.trader.tolist(),
            batch.asset_class.tolist(),
            batch.currency.tolist(),
        ) == tuple(c.tolist() for c in whole_codes)
        assert list(q) == list(wq), size
        assert q.counts == wq.counts
    with open(path, "rb") as f:
        parts = list(iter_feed(f, chunk_size=500))
    assert rows_of(concat_stream(parts, parts[0][0].dictionaries)[0]) == rows_of(whole)


def test_iter_feed_yields_bounded_chunks() -> None:
    trades = [trade(i) for i in range(3000)]
    feed = array_feed(trades)
    sizes = [len(b) for b, _ in iter_feed(feed, chunk_size=16 * 1024)]
    assert sum(sizes) == 3000 and len(sizes) > 10
    per_record = len(feed) / 3000
    assert max(sizes) <= 16 * 1024 / per_record + 2


def test_iter_feed_needs_binary_files(tmp_path: Any) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps([trade(0)]))
    with open(path) as f, pytest.raises(TypeError, match="rb"):
        list(iter_feed(f))


# ---------------------------------------------------------------------------
# Reference vs fast path on hypothesis-drawn records
# ---------------------------------------------------------------------------
_GOOD = {
    "trade_id": st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
    "asset_class": st.sampled_from(sorted(ASSET_CLASS_FLOORS_USD)),
    "notional": st.floats(min_value=0.01, max_value=1e9),
    "currency": st.sampled_from(sorted(FX_RATES_USD)),
    "trader_id": st.text(min_size=1, max_size=8),
    "timestamp": st.floats(min_value=DEFAULT_LIMITS.min_timestamp, max_value=4.1e9),
    "surveillance_required": st.booleans(),
}
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["", "XAU", "crypto", "equity", "USD"]),
)


@st.composite
def records(draw: Any) -> bytes:
    obj: dict[str, Any] = {}
    for key, good in _GOOD.items():
        mode = draw(st.sampled_from(["good"] * 6 + ["odd", "missing"]))
        if mode == "good":
            obj[key] = draw(good)
        elif mode == "odd":
            obj[key] = draw(_ODD)
    if draw(st.booleans()):
        obj[draw(st.text(max_size=5))] = draw(_ODD)
    keys = list(obj)
    if draw(st.booleans()):
        keys = draw(st.permutations(keys))
    text = json.dumps({k: obj[k] for k in keys}, ensure_ascii=draw(st.booleans())).encode()
    text = text.replace(b"Infinity", b"1e999")  # json.dumps writes JSON-invalid Infinity
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=30), st.integers(1, 300))
def test_hypothesis_records_match_reference(texts: list[bytes], chunk: int) -> None:
    for feed in (array_feed(texts, b", "), b"\n".join(texts)):
        try:
            whole, wq = check_against_reference(feed, texts)
        except FeedError:
            assert all(reference_record(t, set())[0] == "bad_json" for t in texts)
            continue
        parts = list(iter_feed(feed, chunk_size=chunk))
        batch, q = concat_stream(
            parts, whole.dictionaries if not parts else parts[0][0].dictionaries
        )
        assert rows_of(batch) == rows_of(whole)
        assert list(q) == list(wq)


# ---------------------------------------------------------------------------
# Legacy dicts
# ---------------------------------------------------------------------------
def test_columns_from_dicts_matches_feed_path() -> None:
    trades = [trade(i) for i in range(500)]
    a = columns_from_dicts(trades)
    b, _ = decode_feed(array_feed(trades))
    assert rows_of(a) == rows_of(b)
    assert trades[0] == trade(0)  # inputs untouched


def test_columns_from_dicts_legacy_defaults(caplog: pytest.LogCaptureFixture) -> None:
    trades = [trade(0, currency=None), trade(1, surveillance_required=None), trade(2)]
    with caplog.at_level(logging.WARNING, logger="surv_kernel.ingest"):
        batch, q = columns_from_dicts(trades, return_quarantine=True)
    assert rows_of(batch) == [expected_row(t) for t in trades]
    assert batch.dictionaries.currency.decode(batch.currency)[0] == "USD"
    assert not batch.surveillance_required[1]
    assert q.defaulted == {"currency": 1, "surveillance_required": 1} and len(q) == 0
    assert "legacy defaults" in caplog.text


def test_columns_from_dicts_quarantine() -> None:
    trades: list[Any] = [
        trade(0),
        trade(1, currency="XAU"),  # unknown: quarantined, never USD
        trade(2, notional="1000"),  # strings are not numbers
        trade(3, notional=True),  # nor are bools
        trade(4, asset_class=None),
        None,
        trade(6, notional=np.float32(2.5), timestamp=np.int64(int(T0))),  # numpy scalars are
        trade(7, notional=10**400),
        trade(8, trade_id=8),
        trade(9, notional=float("nan")),
        trade(10, surveillance_required=np.bool_(True)),
        trade(0),
    ]
    batch, q = columns_from_dicts(trades, return_quarantine=True)
    assert batch.trade_id.tolist() == ["T0000000", "T0000006", "T0000010"]
    assert batch.notional.tolist()[1] == 2.5 and batch.timestamp_ns[1] == int(T0) * 10**9
    assert [(r.position, r.reason) for r in q] == [
        (1, "unknown_currency"),
        (2, "wrong_type"),
        (3, "wrong_type"),
        (4, "missing_field"),
        (5, "wrong_type"),
        (7, "bad_notional"),
        (8, "wrong_type"),
        (9, "bad_notional"),
        (11, "duplicate_trade_id"),
    ]
    assert q[0].offset is None and "XAU" in q[0].raw
    assert columns_from_dicts([]).timestamp_ns.shape == (0,)
    assert len(columns_from_dicts(iter([trade(0)]))) == 1


def test_columns_from_dicts_many_blocks_match_reference() -> None:
    """Past one block (16k dicts) the dicts are encoded and parsed in a
    pipeline; order, positions, duplicates and defaults must not care."""
    rng = np.random.default_rng(5)
    trades: list[Any] = []
    for i in range(40_000):
        r = rng.random()
        if r < 0.01:
            trades.append(trade(i, notional=-1.0))
        elif r < 0.02:
            trades.append(trade(int(rng.integers(0, max(i, 1)))))  # maybe a duplicate
        elif r < 0.03:
            trades.append(trade(i, currency=None))  # legacy default
        else:
            trades.append(trade(i))
    batch, q = columns_from_dicts(trades, return_quarantine=True)
    texts = [enc(t if "currency" in t else t | {"currency": "USD"}) for t in trades]
    rows, bad = reference_feed(texts)
    assert rows_of(batch) == rows
    assert [(r.position, r.reason) for r in q] == bad
    assert q.defaulted["currency"] == sum("currency" not in t for t in trades)
    assert all(r.offset is None and r.raw.startswith("{") for r in q)


def test_columns_from_dicts_odd_values() -> None:
    class Opaque:
        pass

    trades: list[Any] = [
        trade(0, notional=float("inf")),
        trade(1, timestamp=float("nan")),
        trade(2, venue=Opaque()),  # not encodable: the whole record is refused
        trade(3, notional=np.float64(7.5), surveillance_required=np.bool_(False)),
        "T4",
        trade(5),
    ]
    batch, q = columns_from_dicts(trades, return_quarantine=True)
    assert batch.trade_id.tolist() == ["T0000003", "T0000005"]
    assert [(r.position, r.reason) for r in q] == [
        (0, "bad_notional"),
        (1, "bad_timestamp"),
        (2, "wrong_type"),
        (4, "wrong_type"),
    ]
    assert "inf" in q[0].detail and "nan" in q[1].detail and "Opaque" in q[2].detail


def test_dict_raw_is_bounded() -> None:
    _, q = columns_from_dicts([trade(0, currency="X" * 10_000)], return_quarantine=True)
    assert len(q[0].raw) < 1000


# ---------------------------------------------------------------------------
# Run state, threads, limits, logging
# ---------------------------------------------------------------------------
def test_threads_share_one_run() -> None:
    d = Dictionaries()
    feeds = {
        f"desk{k}": array_feed(
            [trade(i, trader_id=f"TR{(i * 7 + k) % 50}") for i in range(k * 1000, k * 1000 + 1500)]
        )
        for k in range(4)
    }
    results: dict[str, tuple[TradeBatch, Quarantine]] = {}

    def work(desk: str) -> None:
        results[desk] = decode_feed(feeds[desk], desk=desk, dictionaries=d)

    threads = [threading.Thread(target=work, args=(k,)) for k in feeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = [tid for b, _ in results.values() for tid in b.trade_id.tolist()]
    assert sorted(kept) == sorted({f"T{i:07d}" for i in range(0, 4500)})  # each id once
    assert sum(len(q) for _, q in results.values()) == 4 * 1500 - 4500
    for desk, (batch, _) in results.items():
        expected = {t["trade_id"]: t["trader_id"] for t in json.loads(feeds[desk])}
        assert [expected[i] for i in batch.trade_id] == batch.trader_ids()
        assert set(d.desk.decode(batch.desk)) == {desk}


def test_trade_id_set_grows_and_is_compact() -> None:
    s = TradeIdSet(16)
    hashes = np.arange(1, 100_001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    dup = s.mark_duplicates(hashes, np.ones(hashes.shape[0], bool))
    assert not dup.any() and len(s) == 100_000
    assert s.nbytes <= 8 * 4 * 100_000
    dup = s.mark_duplicates(hashes[::-1].copy(), np.ones(hashes.shape[0], bool))
    assert dup.all() and len(s) == 100_000


def test_quarantine_keeps_counting_beyond_its_cap() -> None:
    limits = IngestLimits(max_quarantine_records=5)
    texts = [enc(trade(i, notional=-1)) for i in range(50)] + [enc(trade(99))]
    batch, q = decode_feed(array_feed(texts), limits=limits)
    assert len(batch) == 1 and len(q) == 5 and q.dropped == 45 and q.total == 50
    assert q.counts == {"bad_notional": 50}
    other = Quarantine(max_records=3)
    other.extend(q)
    assert len(other) == 3 and other.total == 50 and other.dropped == 47


def test_quarantine_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="surv_kernel.ingest"):
        decode_feed(array_feed([trade(0), trade(1, currency="XAU")]), desk="fx")
    assert "desk 'fx'" in caplog.text and "unknown_currency" in caplog.text


def test_custom_limits_apply() -> None:
    limits = IngestLimits(max_notional_usd=5000.0, min_timestamp=T0, max_timestamp=T0 + 10)
    texts = [enc(trade(0)), enc(trade(1, notional=6000.0)), enc(trade(2, timestamp=T0 + 11))]
    _, q = check_against_reference(array_feed(texts), texts, limits)
    assert [r.reason for r in q] == ["notional_too_large", "bad_timestamp"]


def test_quarantine_record_is_a_struct() -> None:
    _, q = decode_feed(array_feed([trade(0, currency="XAU")]) + b"")
    record = q[0]
    assert isinstance(record, QuarantineRecord)
    assert msgspec.json.decode(msgspec.json.encode(record), type=QuarantineRecord) == record
    assert "XAU" in record.detail and "FX_RATES_USD" in record.detail


def test_schema_struct() -> None:
    t = msgspec.json.decode(enc(trade(0, extra=1)), type=Trade)
    assert t.trade_id == "T0000000" and t.notional == 1000.0
