"""Regression tests for the ingest defects an independent differential check
found (issue 11, item 7), each named after the failure. Every test runs the
same feed through ``decode_feed`` and ``iter_feed`` at several chunk sizes:
the outcome must not depend on how the bytes arrived."""

from __future__ import annotations

import logging

import pytest

from surv_kernel.ingest import (
    MAX_DETAIL_CHARS,
    MAX_NESTING,
    FeedError,
    IngestLimits,
    decode_feed,
    iter_feed,
)

CHUNKS = (None, 1, 16, 64, 4096)


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR, logger="surv_kernel.ingest")


def trade(i: int, extra: bytes = b"", notional: bytes | None = None, ts: bytes = b"1.7e9") -> bytes:
    n = notional if notional is not None else f"{i + 1}.0".encode()
    return (
        b'{"trade_id":"T%d","trader_id":"tA","timestamp":%s,"notional":%s,"currency":"USD",'
        b'"asset_class":"equity","surveillance_required":true%s}' % (i, ts, n, extra)
    )


def outcomes(feed: bytes, **kw):
    """(kept ids, notionals, [(position, reason, trade_id)]) per chunking."""
    out = []
    for chunk in CHUNKS:
        if chunk is None:
            parts = [decode_feed(feed, "D", **kw)]
        else:
            parts = list(iter_feed(feed, chunk, desk="D", **kw))
        ids = [t for b, _ in parts for t in b.trade_id.tolist()]
        notional = [x for b, _ in parts for x in b.notional.tolist()]
        q = [(r.position, r.reason, r.trade_id) for _, q in parts for r in q]
        out.append((ids, notional, q))
    assert all(o == out[0] for o in out), out
    return out[0]


def test_ndjson_wrapped_record_next_to_two_objects_on_a_line_does_not_shift_values():
    # The bulk fallback split on whitespace (msgspec decode_lines): three scanner
    # lines decoded to three structs and were kept, values on other rows.
    t3 = trade(3)
    lines = [trade(0), trade(1) + b" " + trade(2), t3[:-1], b"}", trade(4)]
    ids, notional, q = outcomes(b"\n".join(lines))
    assert ids == ["T0", "T4"] and notional == [1.0, 5.0]
    assert [(p, r) for p, r, _ in q] == [(1, "bad_json"), (2, "bad_json"), (3, "bad_json")]


def test_array_elements_that_json_splits_differently_are_decoded_one_by_one():
    feed = b"[" + trade(0) + b"," + trade(1)[:-1] + b',"x":{"a":1}}' + b"," + trade(2) + b"]"
    ids, _, q = outcomes(feed)
    assert ids == ["T0", "T1", "T2"] and not q  # a nested extra: valid, kept


@pytest.mark.parametrize("where", [b',"x":"\xff\xfe"', b',"\xff":1', b',"x":["\xc3"]'])
def test_invalid_utf8_in_unknown_fields_is_bad_json(where):
    ids, _, q = outcomes(b"\n".join([trade(0), trade(1, where), trade(2)]))
    assert ids == ["T0", "T2"] and [(p, r) for p, r, _ in q] == [(1, "bad_json")]


@pytest.mark.parametrize("depth", [MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1, 300, 5000])
def test_nesting_limit_is_a_fixed_depth(depth):
    inner = depth - 1  # the record object is level 1
    extra = b',"x":' + b"[" * inner + b"]" * inner
    ids, _, q = outcomes(b"\n".join([trade(0), trade(1, extra), trade(2)]))
    if depth <= MAX_NESTING:
        assert ids == ["T0", "T1", "T2"] and not q
    else:
        assert ids == ["T0", "T2"] and [(p, r) for p, r, _ in q] == [(1, "bad_json")]


def test_nesting_limit_does_not_depend_on_the_callers_stack():
    feed = b"\n".join([trade(0), trade(1, b',"x":' + b"[" * 600 + b"]" * 600)])

    def deep(n: int):
        return deep(n - 1) if n else decode_feed(feed, "D")

    b, q = deep(800)  # most of Python's recursion budget used by the caller
    assert b.trade_id.tolist() == ["T0"] and q.counts == {"bad_json": 1}


def test_range_errors_keep_the_trade_id():
    feed = b"\n".join([trade(0), trade(1, notional=b"1e400"), trade(2, ts=b"1e400")])
    _, _, q = outcomes(feed)
    assert q == [(1, "bad_notional", "T1"), (2, "bad_timestamp", "T2")]


def test_quarantine_detail_is_bounded():
    huge = b'"' + b"E" * 60_000 + b'"'
    feed = b"\n".join([trade(0), trade(1).replace(b'"USD"', b'"' + b"Q" * 60_000 + b'"')])
    b, q = decode_feed(feed, "D")
    assert q.counts == {"unknown_currency": 1}
    assert len(q[0].detail) <= MAX_DETAIL_CHARS
    b, q = decode_feed(b"\n".join([trade(0), trade(1, notional=huge)]), "D")
    assert all(len(r.detail) <= MAX_DETAIL_CHARS for r in q)


def test_a_feed_of_only_over_long_records_is_the_same_on_every_path():
    pad = b',"pad":"' + b"p" * 200 + b'"'
    limits = IngestLimits(max_record_bytes=200, raw_bytes=40)
    for feed in (
        trade(0, pad) + b"\n" + trade(1, pad),
        b"[" + trade(0, pad) + b",\n" + trade(1, pad) + b"]",
    ):
        _, _, q = outcomes(feed, limits=limits)
        assert [(p, r) for p, r, _ in q] == [(0, "record_too_large"), (1, "record_too_large")]


def test_whitespace_after_a_record_does_not_count_towards_its_size():
    rec = trade(1)
    limits = IngestLimits(max_record_bytes=len(rec), raw_bytes=40)
    for feed in (
        b"\n".join([trade(0), rec + b" " * 300 + b"\t", trade(2)]),
        b"[" + trade(0) + b",\n" + rec + b" " * 300 + b"," + trade(2) + b"]",
    ):
        ids, _, q = outcomes(feed, limits=limits)
        assert ids == ["T0", "T1", "T2"] and not q


def test_a_feed_of_only_bad_json_is_still_not_json():
    for chunk in CHUNKS[1:]:
        with pytest.raises(FeedError, match="not JSON"):
            list(iter_feed(b"{oops}\n{nope}\n", chunk, desk="D"))
