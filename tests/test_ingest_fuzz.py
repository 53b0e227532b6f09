"""Fuzz: big feeds mixing good and malformed records, generated per example.

Hypothesis draws the seed, the format, the share of bad records and the chunk
size; each example builds a feed of a few thousand records from a catalogue of
corruptions whose expected quarantine reason is known. Checked for both
``decode_feed`` and ``iter_feed``: every good record comes out exactly once and
unchanged, every bad one is quarantined at its position with its reason, raw
text and byte offset, and no exception escapes. The wrapper test asserts the
examples together pushed at least 100k malformed records through.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surv_kernel import decode_feed, iter_feed
from surv_kernel.ingest import IngestLimits
from test_ingest import T0, concat_stream, expected_row, rows_of

LIMITS = IngestLimits(max_record_bytes=700, raw_bytes=120)
RECORDS_PER_EXAMPLE = 4000
MIN_MALFORMED_TOTAL = 100_000
TRADERS = ["TR001", "TR002", "Ωmega", "desk\\7", "李雷", "x" * 20]


def good_trade(rng: random.Random, i: int) -> dict[str, Any]:
    t: dict[str, Any] = {
        "trade_id": f"F{i:06d}" if rng.random() < 0.9 else f"F{i:06d}-é\u2028",
        "asset_class": rng.choice(["equity", "fixed_income", "derivative"]),
        "notional": round(rng.lognormvariate(10, 2), rng.choice([0, 2, 6]))
        if rng.random() < 0.9
        else rng.randrange(1, 10**9),
        "currency": rng.choice(["USD", "EUR", "GBP", "JPY"]),
        "trader_id": rng.choice(TRADERS),
        "timestamp": T0 + rng.uniform(0, 86400) if rng.random() < 0.9 else int(T0) + i,
        "surveillance_required": rng.random() < 0.5,
    }
    if t["notional"] <= 0:
        t["notional"] = 1.5
    r = rng.random()
    if r < 0.1:
        t["venue"] = rng.choice(["XNYS", 7, None, True, 1.5e-3])
    elif r < 0.15:
        t["meta"] = {"book": [1, {"k": "v,}"}], "s": "]"}
    if rng.random() < 0.1:
        items = list(t.items())
        rng.shuffle(items)
        t = dict(items)
    return t


def render(rng: random.Random, obj: Any) -> bytes:
    r = rng.random()
    if r < 0.75:
        return msgspec.json.encode(obj)
    if r < 0.9:
        return json.dumps(obj, ensure_ascii=False).encode()
    return json.dumps(obj, ensure_ascii=True).encode()


# Each corruption: (rng, good trade, index, earlier good ids) -> (text, reason).
Corruption = Callable[[random.Random, dict[str, Any], int, list[str]], tuple[bytes, str]]


def _missing(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    t = dict(t)
    del t[rng.choice(["trade_id", "asset_class", "notional", "currency", "trader_id", "timestamp"])]
    return render(rng, t), "missing_field"


def _wrong_type(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    t = dict(t)
    field, value = rng.choice(
        [
            ("notional", "1500"),
            ("notional", True),
            ("notional", None),
            ("timestamp", "2026-01-01"),
            ("timestamp", [1]),
            ("trade_id", i),
            ("trader_id", {"id": 1}),
            ("currency", None),
            ("surveillance_required", "yes"),
            ("surveillance_required", 1),
        ]
    )
    t[field] = value
    return render(rng, t), "wrong_type"


def _not_object(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    return rng.choice([b"123", b'"trade"', b"null", b"[1, 2]", b"true", b"[]"]), "wrong_type"


def _value(field: str, values: list[Any], reason: str) -> Corruption:
    def corrupt(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
        t = dict(t)
        t[field] = rng.choice(values)
        if reason == "notional_too_large":
            t["currency"] = "USD"
        return render(rng, t), reason

    return corrupt


def _out_of_range(
    rng: random.Random, t: dict[str, Any], i: int, ids: list[str]
) -> tuple[bytes, str]:
    field = rng.choice(["notional", "timestamp"])
    t = dict(t)
    # a sentinel no other value can contain (a bare 12345.0 also matched inside
    # a notional such as 112345.0 and made the record invalid JSON: bad_json)
    t[field] = "@OUT_OF_RANGE@"
    text = msgspec.json.encode(t).replace(b'"@OUT_OF_RANGE@"', rng.choice([b"1e400", b"-2e999"]))
    return text, "bad_notional" if field == "notional" else "bad_timestamp"


def _duplicate(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    if not ids:
        return _missing(rng, t, i, ids)
    t = dict(t)
    t["trade_id"] = rng.choice(ids)
    return render(rng, t), "duplicate_trade_id"


def _syntax(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    """Invalid JSON that keeps quotes and brackets balanced (so array element
    boundaries survive; NDJSON gets unbalanced damage too, below)."""
    text = msgspec.json.encode(t)
    edits: list[Callable[[bytes], bytes]] = [
        lambda s: s.replace(b'"notional":', b'"notional":NaN,"x":', 1),
        lambda s: s.replace(b":", b"=", 1),
        lambda s: s[:-1] + b",}",
        lambda s: s.replace(b'","', b'" "', 1),
        lambda s: s.replace(b"true", b"tru").replace(b"false", b"fals"),
        lambda s: s.replace(b'"trade_id"', b"'trade_id'"),
        lambda s: s.replace(b'"trader_id":"', b'"trader_id":"\xff\xfe', 1),
        lambda s: s.replace(b'"trader_id":"', b'"trader_id":"\x01', 1),
        lambda s: s + b" {}",
        lambda s: b"{" + s + b"}",
        lambda s: s.replace(b'"trade_id":', b'"trade_id":-', 1),
    ]
    return rng.choice(edits)(text), "bad_json"


def _too_large(rng: random.Random, t: dict[str, Any], i: int, ids: list[str]) -> tuple[bytes, str]:
    t = dict(t)
    t["note"] = "z" * rng.randrange(LIMITS.max_record_bytes, 3 * LIMITS.max_record_bytes)
    return render(rng, t), "record_too_large"


def _ndjson_only(
    rng: random.Random, t: dict[str, Any], i: int, ids: list[str]
) -> tuple[bytes, str]:
    """Damage only a line-oriented format survives: unbalanced quotes/brackets."""
    text = msgspec.json.encode(t)
    r = rng.random()
    if r < 0.5:
        return text[: rng.randrange(1, len(text) - 1)], "bad_json"  # cut short
    if r < 0.8:
        return rng.choice([b'{"' + text[1:], text[:-1] + b"[}", text + b'"']), "bad_json"
    return text + b" " + text, "bad_json"


COMMON: list[Corruption] = [
    _missing,
    _wrong_type,
    _not_object,
    _value("trade_id", [""], "empty_id"),
    _value("trader_id", [""], "empty_id"),
    _value("currency", ["XAU", "usd", "", "EURO"], "unknown_currency"),
    _value("asset_class", ["crypto", "Equity", ""], "unknown_asset_class"),
    _value("notional", [0, 0.0, -1, -1e9], "bad_notional"),
    _value("notional", [1.5e12, 9e300], "notional_too_large"),
    _value("timestamp", [T0 * 1000, 0, -5.0, 5e9, 946_684_799.999], "bad_timestamp"),
    _out_of_range,
    _duplicate,
    _syntax,
    _too_large,
]


def make_feed(
    seed: int, fmt: str, bad_fraction: float, n: int
) -> tuple[bytes, list[tuple[Any, ...]], list[tuple[int, str, bytes, int]]]:
    """(feed, expected rows, expected (position, reason, text, offset))."""
    rng = random.Random(seed)
    corruptions = COMMON + ([_ndjson_only] * 3 if fmt == "ndjson" else [])
    texts: list[bytes] = []
    rows: list[tuple[Any, ...]] = []
    bad: list[tuple[int, str, bytes]] = []
    ids: list[str] = []
    for i in range(n):
        t = good_trade(rng, i)
        # (an NDJSON feed must not start with an array line: that is an array feed)
        if rng.random() < bad_fraction and not (fmt == "ndjson" and i == 0):
            text, reason = rng.choice(corruptions)(rng, t, i, ids)
            bad.append((i, reason, text))
        else:
            text = render(rng, t)
            rows.append(expected_row(t, "fuzz"))
            ids.append(t["trade_id"])
        texts.append(text)
    # join, remembering where each record starts
    offsets, parts, at = [], [], 0
    if fmt == "array":
        parts.append(b"[")
        at = 1
    for i, text in enumerate(texts):
        if i and fmt == "array":
            sep = rng.choice([b",", b", ", b",\n  "])
            parts.append(sep)
            at += len(sep)
        offsets.append(at)
        parts.append(text)
        at += len(text)
        if fmt == "ndjson":
            sep = rng.choice([b"\n", b"\r\n", b"\n\n", b"  \n"])
            parts.append(sep)
            at += len(sep)
    if fmt == "array":
        parts.append(b"]")
    return b"".join(parts), rows, [(p, r, x, offsets[p]) for p, r, x in bad]


def check(
    feed: bytes, rows: list[tuple[Any, ...]], bad: list[tuple[int, str, bytes, int]], chunk: int
) -> None:
    batch, q = decode_feed(feed, desk="fuzz", limits=LIMITS)
    assert rows_of(batch) == rows
    assert [(r.position, r.reason) for r in q] == [(p, r) for p, r, _, _ in bad]
    for record, (_, _, text, offset) in zip(q, bad, strict=True):
        assert record.offset == offset
        assert record.raw == text[: LIMITS.raw_bytes].decode("utf-8", "replace")
        assert record.desk == "fuzz" and record.detail
    assert q.total == len(bad) and not q.dropped
    # conservation, counted by ingest itself: every record delimited is kept or quarantined
    assert q.seen == len(rows) + len(bad)
    parts = list(iter_feed(feed, chunk_size=chunk, desk="fuzz", limits=LIMITS))
    sbatch, sq = concat_stream(parts, parts[0][0].dictionaries)
    assert rows_of(sbatch) == rows
    assert list(sq) == list(q)
    assert sum(part_q.seen for _, part_q in parts) == q.seen


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # thousands of per-chunk quarantine warnings: checked in test_ingest.py
    caplog.set_level(logging.ERROR, logger="surv_kernel.ingest")


def test_fuzz_mixed_feeds() -> None:
    total = {"malformed": 0, "good": 0, "examples": 0}

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        seed=st.integers(0, 2**32 - 1),
        fmt=st.sampled_from(["array", "ndjson"]),
        bad_fraction=st.floats(0.45, 0.9),
        chunk=st.integers(64, 1 << 16),
    )
    def run(seed: int, fmt: str, bad_fraction: float, chunk: int) -> None:
        feed, rows, bad = make_feed(seed, fmt, bad_fraction, RECORDS_PER_EXAMPLE)
        check(feed, rows, bad, chunk)
        total["malformed"] += len(bad)
        total["good"] += len(rows)
        total["examples"] += 1

    run()
    print(f"fuzz totals: {total}")  # shown with pytest -s
    assert total["malformed"] >= MIN_MALFORMED_TOTAL, total


def test_fuzz_tiny_chunks() -> None:
    """Byte-at-a-time reads over a smaller mixed feed of each format."""
    for fmt in ("array", "ndjson"):
        feed, rows, bad = make_feed(11, fmt, 0.5, 300)
        check(feed, rows, bad, chunk=1)
