"""Differential check: ingest against the slow reference decoder
(``tests/reference_decoder.py``, built on ``json.loads``), record by record,
for ``decode_feed`` and ``iter_feed`` across chunk sizes.

The generated feeds hold what broke ingest before (issue 11): records wrapped
over two lines, several objects on one line, ill-formed UTF-8 in unknown
fields and keys, deep nesting, blanks after records, every number form,
escapes, over-long records, duplicates and each value defect. Over 200,000
records per run.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from reference_decoder import Row, decode_records, ndjson_records
from surv_kernel.ingest import MAX_NESTING, IngestLimits, decode_feed, iter_feed

LIMITS = IngestLimits(max_record_bytes=1024, raw_bytes=64)
FEEDS, RECORDS = 22, 10_000  # 220,000 records
NUMBER_FORMS = ("{}", "{}.0", "{}e0", "{}E+0", "{}0e-1", "{}.000", "0.{}e1")


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR, logger="surv_kernel.ingest")


def _num(rng: random.Random, value: float) -> str:
    if rng.random() < 0.7:
        return repr(float(value))
    whole = int(value)
    form = rng.choice(NUMBER_FORMS)
    if form.startswith("0."):
        digits = str(whole)
        return f"0.{digits}e{len(digits)}"
    return form.format(whole)


def _record(rng: random.Random, i: int, kind: str) -> str:
    f = {
        "trade_id": f'"T{i}"' if rng.random() < 0.9 else f'"\\u0054{i}"',
        "trader_id": f'"tr{rng.randrange(50)}"',
        "timestamp": _num(rng, 1_700_000_000 + rng.randrange(86_400_000) / 1000),
        "notional": _num(rng, rng.randrange(1, 5_000_000)),
        "currency": f'"{rng.choice(["USD", "EUR", "GBP", "JPY"])}"',
        "asset_class": f'"{rng.choice(["equity", "fixed_income", "derivative"])}"',
        "surveillance_required": rng.choice(["true", "false"]),
    }
    extra = []
    if kind == "good" and rng.random() < 0.3:
        extra.append(rng.choice(['"venue": "XLON"', '"qty": 100', '"note": null', '"x": 1.5e3']))
    if kind == "good" and rng.random() < 0.05:
        extra.append('"nested": {"a": [1, 2, {"b": "c"}]}')
    if kind == "bad_utf8_value":
        extra.append('"venue": "\udcff\udcfe"')
    elif kind == "bad_utf8_key":
        extra.append('"\udcc3": 1')
    elif kind == "deep":
        d = MAX_NESTING + rng.randrange(0, 4)  # beyond the limit (record is level 1)
        extra.append('"deep": ' + "[" * d + "]" * d)
    elif kind == "deep_ok":
        d = MAX_NESTING - 1
        extra.append('"deep": ' + "[" * d + "]" * d)
    elif kind == "too_large":
        extra.append('"pad": "' + "p" * 1100 + '"')
    elif kind == "missing_field":
        del f[rng.choice(["trader_id", "timestamp", "notional", "asset_class"])]
    elif kind == "wrong_type":
        key = rng.choice(["notional", "surveillance_required", "trader_id"])
        f[key] = {"notional": '"100"', "surveillance_required": "1", "trader_id": "7"}[key]
    elif kind == "empty_id":
        f["trade_id"] = '""'
    elif kind == "unknown_currency":
        f["currency"] = '"XXX"'
    elif kind == "unknown_asset_class":
        f["asset_class"] = '"crypto"'
    elif kind == "bad_notional":
        f["notional"] = rng.choice(["0", "-5.0", "1e400", "-0.0"])
    elif kind == "too_large_usd":
        f["notional"] = "2e12"
        f["currency"] = '"USD"'
    elif kind == "bad_timestamp":
        f["timestamp"] = rng.choice(["1700000000000", "1e400", "12.5"])
    items = [f"{json_key(k)}: {v}" for k, v in f.items()] + extra
    if rng.random() < 0.3:
        rng.shuffle(items)
    sep = rng.choice([",", ", ", " ,"])
    text = "{" + sep.join(items) + "}"
    if kind == "bad_json":
        text = rng.choice([text.replace(",", " ", 1), text[:-1], text + "}", "{nope}", "NaN"])
    return text


def json_key(k: str) -> str:
    return f'"{k}"'


KINDS = (
    ["good"] * 30
    + ["dup", "bad_json", "bad_utf8_value", "bad_utf8_key", "deep", "deep_ok", "too_large"]
    + ["missing_field", "wrong_type", "empty_id", "unknown_currency", "unknown_asset_class"]
    + ["bad_notional", "too_large_usd", "bad_timestamp", "wrapped", "two_on_a_line"]
)


def make_ndjson(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    lines: list[bytes] = []
    done: list[str] = []
    i = 0
    while len(lines) < n:
        kind = rng.choice(KINDS)
        if kind == "dup" and done:
            text = rng.choice(done)
        elif kind == "wrapped":
            text = _record(rng, i, "good")
            cut = text.index(",") + 1
            text = text[:cut] + "\n" + text[cut:]
        elif kind == "two_on_a_line":
            text = _record(rng, i, "good") + rng.choice(["", " "]) + _record(rng, i + 1, "good")
            i += 1
        else:
            text = _record(rng, i, "good" if kind == "dup" else kind)
            if kind in ("good", "deep_ok") and rng.random() < 0.1:
                done.append(text)
        i += 1
        tail = rng.choice(["\n", "\n", "\r\n", "  \n", "\t\n", "\n\n", " " * 40 + "\n"])
        lines.append(text.encode("utf-8", "surrogateescape") + tail.encode())
    lines.append(_record(rng, i, "good").encode() + b"\n")  # never ends inside a record
    return b"".join(lines)


def make_array(seed: int, n: int) -> tuple[bytes, list[bytes]]:
    rng = random.Random(seed)
    elements: list[bytes] = []
    for i in range(n):
        kind = rng.choice([k for k in KINDS if k not in ("bad_json", "wrapped", "two_on_a_line")])
        kind = "good" if kind == "dup" else kind
        elements.append(_record(rng, i, kind).encode("utf-8", "surrogateescape"))
    if elements:
        elements.append(elements[rng.randrange(len(elements))])  # one duplicate at the end
    joins = [rng.choice([b",", b",\n", b" , ", b",\r\n  "]) for _ in elements]
    body = b"".join(e + j for e, j in zip(elements, joins, strict=True))[: -len(joins[-1])]
    return b"[" + body + b"]\n", elements


def rows_of(parts) -> list[Row]:
    out = []
    for b, _ in parts:
        d = b.dictionaries
        for j in range(len(b)):
            out.append(
                Row(
                    b.trade_id[j],
                    d.trader[int(b.trader[j])],
                    int(b.timestamp_ns[j]),
                    float(b.notional[j]),
                    float(b.notional_usd[j]),
                    d.currency[int(b.currency[j])],
                    d.asset_class[int(b.asset_class[j])],
                    bool(b.surveillance_required[j]),
                )
            )
    return out


def quarantine_of(parts) -> list[tuple[int, str]]:
    return [(r.position, r.reason) for _, q in parts for r in q]


def check(feed: bytes, expected_rows, expected_q, chunks) -> int:
    parts = [decode_feed(feed, "D", limits=LIMITS)]
    got_rows, got_q = rows_of(parts), quarantine_of(parts)
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(got_q, expected_q, strict=False)) if a != b), None
    )
    assert got_q == expected_q, (first_diff, got_q[first_diff or 0], expected_q[first_diff or 0])
    assert got_rows == expected_rows
    assert parts[0][1].seen == len(expected_rows) + len(expected_q)
    for chunk in chunks:
        parts = list(iter_feed(feed, chunk, desk="D", limits=LIMITS))
        assert quarantine_of(parts) == expected_q, chunk
        assert rows_of(parts) == expected_rows, chunk
    return len(expected_rows) + len(expected_q)


def test_ndjson_against_the_reference():
    total = 0
    for seed in range(FEEDS // 2):
        feed = make_ndjson(seed, RECORDS)
        rows, q = decode_records(ndjson_records(feed), LIMITS)
        assert {r for _, r in q} >= {"bad_json", "duplicate_trade_id", "record_too_large"}
        rng = np.random.default_rng(seed)
        total += check(feed, rows, q, [int(rng.integers(200, 5000)), 1 << 16])
    assert total >= FEEDS // 2 * RECORDS


def test_arrays_against_the_reference():
    total = 0
    for seed in range(FEEDS // 2):
        feed, elements = make_array(1000 + seed, RECORDS)
        rows, q = decode_records(elements, LIMITS)
        rng = np.random.default_rng(seed)
        total += check(feed, rows, q, [int(rng.integers(200, 5000)), 1 << 16])
    assert total >= FEEDS // 2 * RECORDS


def test_tiny_chunks_against_the_reference():
    feed = make_ndjson(99, 400)
    rows, q = decode_records(ndjson_records(feed), LIMITS)
    check(feed, rows, q, [1, 7, 61])
    feed, elements = make_array(99, 400)
    rows, q = decode_records(elements, LIMITS)
    check(feed, rows, q, [1, 7, 61])
