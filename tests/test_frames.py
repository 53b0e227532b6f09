"""Frames in: Arrow, Parquet, CSV, polars and pandas through validate_columns.

The reference is the JSON path itself: the same trades written as a JSON feed
(msgspec, keys in schema order) and decoded by ``decode_feed`` must give the
same TradeBatch columns, dictionaries and quarantine records (position,
reason, detail, raw excerpt, trade id) as every frame reader, for any row
group / block size, and the same alerts.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import surv_kernel as sk
from surv_kernel import Dictionaries, TradeBatch, decode_feed, detect
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.frames import iter_arrow, iter_csv, iter_parquet, read_frame
from surv_kernel.ingest import IngestLimits, Quarantine
from surv_kernel.schema import FIELDS
from surv_kernel.validate import ColumnError, Utf8Column, validate_columns

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
COLUMNS = (
    "timestamp_ns",
    "notional_usd",
    "notional",
    "trader",
    "asset_class",
    "currency",
    "desk",
    "surveillance_required",
    "trade_id",
)
SCHEMA = pa.schema(
    [
        ("trade_id", pa.string()),
        ("asset_class", pa.string()),
        ("notional", pa.float64()),
        ("currency", pa.string()),
        ("trader_id", pa.string()),
        ("timestamp", pa.float64()),
        ("surveillance_required", pa.bool_()),
    ]
)
POLARS_SCHEMA = {
    "trade_id": pl.String,
    "asset_class": pl.String,
    "notional": pl.Float64,
    "currency": pl.String,
    "trader_id": pl.String,
    "timestamp": pl.Float64,
    "surveillance_required": pl.Boolean,
}


def trade(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "trade_id": f"T{i}",
        "asset_class": "equity",
        "notional": 1000.0 + i,
        "currency": "USD",
        "trader_id": f"tr{i % 3}",
        "timestamp": T0 + i,
        "surveillance_required": bool(i % 2),
    }
    row.update(kw)
    return row


# ---------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------
def qrecords(q: Quarantine, raw: bool = True) -> list[tuple[Any, ...]]:
    return [(r.desk, r.position, r.reason, r.detail, r.raw if raw else None, r.trade_id) for r in q]


def assert_same_batch(a: TradeBatch, b: TradeBatch) -> None:
    assert len(a) == len(b)
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), name
    for d in ("trader", "asset_class", "currency", "desk"):
        assert getattr(a.dictionaries, d).values == getattr(b.dictionaries, d).values, d


def concat(chunks: Any, d: Dictionaries) -> tuple[TradeBatch, Quarantine]:
    batches, q = [], Quarantine()
    for batch, part in chunks:
        batches.append(batch)
        q.extend(part)
    nonempty = [b for b in batches if len(b)]
    return (TradeBatch.concat(nonempty) if nonempty else TradeBatch.empty(d)), q


def csv_text(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV the way a bank's export would write them: repr floats
    (round-trip exact), true/false, an empty cell for a null."""
    import csv

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(FIELDS)
    for r in rows:
        cells = []
        for f in FIELDS:
            v = r[f]
            if v is None:
                cells.append("")
            elif isinstance(v, bool):
                cells.append("true" if v else "false")
            elif isinstance(v, float):
                cells.append(repr(v))
            else:
                cells.append(v)
        w.writerow(cells)
    return out.getvalue().encode()


def every_reader(
    rows: list[dict[str, Any]], tmp: Path, chunk: int, *, csv: bool = True
) -> dict[str, tuple[TradeBatch, Quarantine]]:
    """The rows through every frame reader (one Dictionaries each)."""
    out = {}
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    d = Dictionaries()
    out["arrow"] = concat(
        iter_arrow(table.to_reader(max_chunksize=chunk), desk="D", dictionaries=d), d
    )
    path = tmp / "feed.parquet"
    pq.write_table(table, path, row_group_size=chunk)
    d = Dictionaries()
    out["parquet"] = concat(iter_parquet(path, desk="D", dictionaries=d), d)
    out["polars"] = read_frame(pl.DataFrame(rows, schema=POLARS_SCHEMA, orient="row"), desk="D")
    out["pandas"] = read_frame(pd.DataFrame(rows, columns=list(FIELDS)), desk="D")
    if csv:
        d = Dictionaries()
        # small blocks: several CSV batches even for a handful of rows
        block = max(512, chunk * 60)
        out["csv"] = concat(
            iter_csv(io.BytesIO(csv_text(rows)), desk="D", dictionaries=d, block_size=block), d
        )
    return out


# ---------------------------------------------------------------------------
# The oracle: JSON and every frame reader agree, record by record
# ---------------------------------------------------------------------------
_ids = st.sampled_from(["T1", "T2", "T3", "é-7", "", "a\nb"])
_string = st.sampled_from(["equity", "fixed_income", "crypto", "", "x"])
_currency = st.sampled_from(["USD", "EUR", "JPY", "XXX", ""])
_trader = st.sampled_from(["tr1", "tr2", "", "ü"])
_notional = st.one_of(
    st.floats(-1e6, 1e7, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e300, 1e12, 1.5e12, 5e-324, 1e15, 7.0]),
)
_timestamp = st.one_of(
    st.floats(T0 - 1e5, T0 + 1e5, allow_nan=False),
    st.sampled_from([946_684_800.0, 946_684_799.999, 4_102_444_800.0, 1.7e12, -1.0, 0.0]),
)


def _maybe(s: st.SearchStrategy[Any], nulls: bool) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s) if nulls else s


@st.composite
def feed_rows(draw: Any, nulls: bool = True) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 30))
    return [
        {
            "trade_id": draw(_maybe(_ids, nulls)),
            "asset_class": draw(_maybe(_string, nulls)),
            "notional": draw(_maybe(_notional, nulls)),
            "currency": draw(_maybe(_currency, nulls)),
            "trader_id": draw(_maybe(_trader, nulls)),
            "timestamp": draw(_maybe(_timestamp, nulls)),
            "surveillance_required": draw(_maybe(st.booleans(), nulls)),
        }
        for _ in range(n)
    ]


def json_reference(rows: list[dict[str, Any]]) -> tuple[TradeBatch, Quarantine]:
    if not rows:
        return TradeBatch.empty(), Quarantine()
    return decode_feed(msgspec.json.encode(rows), desk="D")


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=feed_rows(), chunk=st.integers(1, 12))
def test_every_reader_matches_the_json_path(rows, chunk, tmp_path):
    ref_batch, ref_q = json_reference(rows)
    for name, (batch, q) in every_reader(rows, tmp_path, chunk, csv=False).items():
        assert_same_batch(ref_batch, batch)
        # pandas stores a null float as NaN: the excerpt of such a row still
        # says null, but a None flag makes an object column; compare it all
        assert qrecords(q) == qrecords(ref_q), name
        assert q.counts == ref_q.counts, name


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=feed_rows(nulls=False), chunk=st.integers(1, 12))
def test_csv_matches_the_json_path(rows, chunk, tmp_path):
    # a CSV cell cannot tell a null string from "" (both are empty): strings
    # are never null here, numbers and flags are covered by the null test below
    ref_batch, ref_q = json_reference(rows)
    batch, q = every_reader(rows, tmp_path, chunk)["csv"]
    assert_same_batch(ref_batch, batch)
    assert qrecords(q) == qrecords(ref_q)


def test_csv_empty_cells_are_nulls_for_numbers_and_flags():
    rows = [trade(0), trade(1, notional=None), trade(2, timestamp=None), trade(3)]
    rows[3]["surveillance_required"] = None
    ref_batch, ref_q = json_reference(rows)
    batch, q = concat(iter_csv(csv_text(rows), desk="D"), Dictionaries())
    assert_same_batch(ref_batch, batch)
    assert [(r.position, r.reason, r.detail) for r in q] == [
        (r.position, r.reason, r.detail) for r in ref_q
    ]
    assert [r.reason for r in q] == ["wrong_type"] * 3


def test_nan_and_inf_are_bad_values_as_on_the_dict_path():
    # JSON cannot hold NaN or inf; the dict path (which applies the feed
    # rules) is the reference for them
    rows = [
        trade(0, notional=math.nan),
        trade(1, notional=math.inf),
        trade(2, notional=-math.inf),
        trade(3, timestamp=math.nan),
        trade(4, timestamp=math.inf),
        trade(5),
    ]
    _, ref_q = sk.columns_from_dicts(rows, desk="D", return_quarantine=True)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    batch, q = read_frame(table, desk="D")
    assert [(r.position, r.reason) for r in q] == [(r.position, r.reason) for r in ref_q]
    assert [r.reason for r in q] == ["bad_notional"] * 3 + ["bad_timestamp"] * 2
    assert batch.trade_id.tolist() == ["T5"]
    # polars keeps NaN apart from null
    _, q = read_frame(pl.DataFrame(rows, schema=POLARS_SCHEMA, orient="row"), desk="D")
    assert [r.reason for r in q] == ["bad_notional"] * 3 + ["bad_timestamp"] * 2


def test_duplicates_across_row_groups_files_and_calls(tmp_path):
    rows = [trade(i % 7) for i in range(20)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=3)
    d = Dictionaries()
    chunks = list(iter_parquet(tmp_path / "a.parquet", desk="D", dictionaries=d))
    assert len(chunks) == 7  # one per row group
    batch, q = concat(chunks, d)
    assert batch.trade_id.tolist() == [f"T{i}" for i in range(7)]
    assert [r.position for r in q] == list(range(7, 20))
    assert {r.reason for r in q} == {"duplicate_trade_id"}
    # the same Dictionaries makes a second source's copies duplicates too
    batch2, q2 = read_frame(pl.DataFrame([trade(3), trade(99)]), desk="E", dictionaries=d)
    assert batch2.trade_id.tolist() == ["T99"]
    assert [(r.position, r.reason, r.desk) for r in q2] == [(0, "duplicate_trade_id", "E")]


def test_parquet_directory_in_sorted_order_with_hive_desk(tmp_path):
    from surv_kernel.frames import hive_desk, parquet_files

    for desk, start in (("b", 10), ("a", 0)):
        part = tmp_path / f"desk={desk}"
        part.mkdir()
        rows = [trade(i) for i in range(start, start + 4)]
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), part / "part-0.parquet")
    files = parquet_files(tmp_path)
    assert [hive_desk(f) for f in files] == ["a", "b"]
    batch, q = concat(iter_parquet(tmp_path), Dictionaries())
    assert batch.trade_id.tolist() == [f"T{i}" for i in (0, 1, 2, 3, 10, 11, 12, 13)]
    assert not q


# ---------------------------------------------------------------------------
# Alerts: the same day as JSON, NDJSON, CSV, Parquet, Arrow, polars, pandas
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def day() -> list[dict[str, Any]]:
    scenario = generate_day(3)
    return scenario.trades()


def test_the_same_day_in_every_format_gives_identical_alerts(day, tmp_path):
    ref_batch, ref_q = decode_feed(msgspec.json.encode(day), desk="D")
    ref = detect(ref_batch)
    assert len(ref.alerts) > 5
    ndjson = b"\n".join(msgspec.json.encode(r) for r in day)
    nd_batch, _ = decode_feed(ndjson, desk="D")
    results = {"ndjson": nd_batch}
    for name, (batch, q) in every_reader(day, tmp_path, 5000).items():
        assert not q, name
        results[name] = batch
    expected = msgspec.json.encode(ref)
    for name, batch in results.items():
        assert_same_batch(ref_batch, batch)
        assert msgspec.json.encode(detect(batch)) == expected, name


# ---------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------
def test_datetime_columns_tz_aware_naive_and_integer_units():
    ns = np.array([1_767_225_600_123_456_789, 1_767_229_200_000_000_001], np.int64)
    base = {
        "trade_id": ["a", "b"],
        "asset_class": ["equity"] * 2,
        "notional": [1.0, 2.0],
        "currency": ["USD"] * 2,
        "trader_id": ["t", "t"],
        "surveillance_required": [True, False],
    }
    utc = pd.to_datetime(ns, utc=True)
    cases = {
        "pandas aware UTC": pd.DataFrame({**base, "timestamp": utc}),
        "pandas aware Tokyo": pd.DataFrame({**base, "timestamp": utc.tz_convert("Asia/Tokyo")}),
        "pandas naive": pd.DataFrame({**base, "timestamp": utc.tz_localize(None)}),
        "polars aware": pl.DataFrame({**base, "timestamp": pl.Series(ns).cast(pl.Datetime("ns"))})
        .with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
        .with_columns(pl.col("timestamp").dt.convert_time_zone("America/New_York")),
        "polars naive": pl.DataFrame({**base, "timestamp": pl.Series(ns).cast(pl.Datetime("ns"))}),
        "arrow int ns": pa.table({**base, "timestamp": pa.array(ns)}),
    }
    for name, frame in cases.items():
        unit = "ns" if name == "arrow int ns" else "s"
        batch, q = read_frame(frame, timestamp_unit=unit)
        assert not q, name
        assert batch.timestamp_ns.tolist() == ns.tolist(), name
    # microseconds: exact, scaled without a float
    us = pa.table({**base, "timestamp": pa.array(ns // 1000).cast(pa.timestamp("us", "UTC"))})
    batch, _ = read_frame(us)
    assert batch.timestamp_ns.tolist() == (ns // 1000 * 1000).tolist()
    # NumPy datetime64 straight into validate_columns
    batch, _ = validate_columns({**base, "timestamp": ns.view("datetime64[ns]")})
    assert batch.timestamp_ns.tolist() == ns.tolist()


def test_integer_time_bounds_are_exact():
    lo_ns = 946_684_800 * 10**9
    hi_ns = 4_102_444_800 * 10**9
    values = np.array([lo_ns - 1, lo_ns, hi_ns - 1, hi_ns], np.int64)
    cols = {
        "trade_id": ["a", "b", "c", "d"],
        "asset_class": ["equity"] * 4,
        "notional": np.ones(4),
        "currency": ["USD"] * 4,
        "trader_id": ["t"] * 4,
        "timestamp": values,
        "surveillance_required": np.zeros(4, bool),
    }
    batch, q = validate_columns(cols, timestamp_unit="ns")
    # lo_ns - 1 is 1 ns before the bound: its float seconds round onto it
    assert batch.trade_id.tolist() == ["b", "c"]
    assert batch.timestamp_ns.tolist() == [lo_ns, hi_ns - 1]
    assert [(r.position, r.reason) for r in q] == [(0, "bad_timestamp"), (3, "bad_timestamp")]
    # NaT is a null
    dt = values.view("datetime64[ns]").copy()
    dt[1] = np.datetime64("NaT")
    _, q = validate_columns({**cols, "timestamp": dt})
    assert (1, "wrong_type") in [(r.position, r.reason) for r in q]


def test_integer_seconds_are_the_json_integers():
    rows = [trade(i, timestamp=int(T0) + i, notional=1000 + i) for i in range(5)]
    ref_batch, _ = decode_feed(msgspec.json.encode(rows))
    table = pa.Table.from_pylist(rows)  # int64 timestamp and notional
    assert table.schema.field("timestamp").type == pa.int64()
    batch, q = read_frame(table)
    assert not q
    assert_same_batch(ref_batch, batch)


# ---------------------------------------------------------------------------
# A column of the wrong kind: one clear error
# ---------------------------------------------------------------------------
def _frame(**override: Any) -> pl.DataFrame:
    df = pl.DataFrame([trade(0), trade(1)], schema=POLARS_SCHEMA, orient="row")
    return df.with_columns(**override) if override else df


@pytest.mark.parametrize(
    ("frame", "column", "kind"),
    [
        (lambda: _frame(timestamp=pl.col("timestamp").cast(pl.String)), "timestamp", "string"),
        (lambda: _frame(trade_id=pl.lit(7)), "trade_id", "int32"),
        (lambda: _frame(notional=pl.lit(True)), "notional", "bool"),
        (lambda: _frame(surveillance_required=pl.lit(1)), "surveillance_required", "int32"),
        (lambda: _frame(timestamp=pl.lit(None, pl.Date)), "timestamp", "date32"),
        (
            lambda: pd.DataFrame([trade(0)]).assign(timestamp="2026-01-01T00:00:00Z"),
            "timestamp",
            "string",
        ),
    ],
)
def test_a_column_of_the_wrong_kind_is_one_clear_error(frame, column, kind):
    with pytest.raises(ColumnError) as info:
        read_frame(frame())
    message = str(info.value)
    assert f"column {column!r}" in message
    assert kind in message
    assert "accepted:" in message
    assert isinstance(info.value, sk.DataError)
    assert isinstance(info.value, sk.FeedError)


def test_missing_columns_are_named(tmp_path):
    df = _frame().drop("currency", "timestamp")
    with pytest.raises(ColumnError, match="missing column\\(s\\) currency, timestamp"):
        read_frame(df)
    pq.write_table(df.to_arrow(), tmp_path / "x.parquet")
    with pytest.raises(ColumnError, match=r"x\.parquet: missing column\(s\) currency"):
        list(iter_parquet(tmp_path / "x.parquet"))
    with pytest.raises(ColumnError, match="missing column\\(s\\) currency, timestamp"):
        list(iter_csv(b"trade_id,asset_class,notional,trader_id,surveillance_required\n"))


def test_parquet_schema_is_checked_before_any_row_group(tmp_path):
    table = pa.Table.from_pylist([trade(0)], schema=SCHEMA)
    bad = table.set_column(5, "timestamp", pa.array(["2026-01-01"]))
    pq.write_table(bad, tmp_path / "bad.parquet")
    chunks = iter_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ColumnError, match=r"bad\.parquet: column 'timestamp' holds Arrow string"):
        next(chunks)


def test_csv_timestamps_seconds_or_iso_and_garbage_is_an_error():
    text = (
        "trade_id,asset_class,notional,currency,trader_id,timestamp,surveillance_required\n"
        "a,equity,1,USD,t,2026-01-01T00:00:01.5Z,true\n"
        "b,equity,1,USD,t,2026-01-01T01:00:00+01:00,false\n"
    )
    batch, q = concat(iter_csv(text.encode()), Dictionaries())
    assert not q
    assert batch.timestamp_ns.tolist() == [int(T0) * 10**9 + 1_500_000_000, int(T0) * 10**9]
    with pytest.raises(ColumnError, match="column 'timestamp' holds CSV text such as 'soon'"):
        list(iter_csv(text.replace("2026-01-01T00:00:01.5Z", "soon").encode()))
    with pytest.raises(sk.FeedError, match="not a usable CSV"):
        list(iter_csv(text.replace(",1,USD", ",one,USD", 1).encode()))


# ---------------------------------------------------------------------------
# Shapes: empty, one row, sliced Arrow, categoricals, string views
# ---------------------------------------------------------------------------
def test_empty_and_one_row_frames(tmp_path):
    empty = pa.Table.from_pylist([], schema=SCHEMA)
    batch, q = read_frame(empty)
    assert len(batch) == 0 and not q
    pq.write_table(empty, tmp_path / "e.parquet")
    assert concat(iter_parquet(tmp_path / "e.parquet"), Dictionaries())[0].trade_id.size == 0
    batch, q = read_frame(pl.DataFrame([trade(0)], schema=POLARS_SCHEMA, orient="row"))
    assert batch.trade_id.tolist() == ["T0"] and not q
    with pytest.raises(ColumnError, match="missing column"):
        read_frame(pa.table({"trade_id": pa.array([], pa.string())}))


def test_sliced_categorical_and_view_strings():
    rows = [trade(i, asset_class=["equity", "fixed_income"][i % 2]) for i in range(10)]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    ref, _ = decode_feed(msgspec.json.encode(rows[3:8]))
    sliced = table.slice(3, 5)  # Arrow offsets that do not start at 0
    assert_same_batch(ref, read_frame(sliced)[0])
    cat = pl.from_arrow(sliced).with_columns(
        pl.col("asset_class").cast(pl.Categorical), pl.col("trader_id").cast(pl.Categorical)
    )
    assert_same_batch(ref, read_frame(cat)[0])
    views = sliced.cast(
        pa.schema([(f.name, pa.string_view() if f.type == pa.string() else f.type) for f in SCHEMA])
    )
    assert_same_batch(ref, read_frame(views)[0])
    pdcat = pd.DataFrame(rows[3:8]).astype({"currency": "category"})
    assert_same_batch(ref, read_frame(pdcat)[0])


def test_utf8_column_strings_with_newlines_and_nulls():
    col = Utf8Column.from_strings("trade_id", ["a", None, "b\nc", "", "é"])
    assert col.strings().tolist() == ["a", None, "b\nc", "", "é"]
    col = Utf8Column.from_strings("trade_id", ["x", "yy", None])
    assert col.strings().tolist() == ["x", "yy", None]
    with pytest.raises(ColumnError, match="column 'trade_id' holds a int at row 1"):
        Utf8Column.from_strings("trade_id", ["a", 5])


def test_validate_columns_from_plain_numpy_and_masked_arrays():
    rows = [trade(i) for i in range(4)]
    cols = {f: [r[f] for r in rows] for f in FIELDS}
    cols["notional"] = np.ma.MaskedArray(cols["notional"], mask=[False, True, False, False])
    cols["timestamp"] = np.asarray(cols["timestamp"])
    cols["surveillance_required"] = np.asarray(cols["surveillance_required"])
    batch, q = validate_columns(cols, desk="D", first_position=100)
    assert batch.trade_id.tolist() == ["T0", "T2", "T3"]
    assert [(r.position, r.reason, r.detail) for r in q] == [
        (101, "wrong_type", "Expected `float`, got `null` - at `$.notional`")
    ]
    with pytest.raises(ColumnError, match="different lengths"):
        validate_columns({**cols, "trade_id": ["a"]})
    with pytest.raises(ValueError, match="timestamp_unit"):
        validate_columns(cols, timestamp_unit="h")


def test_limits_apply_as_on_the_json_path():
    rows = [trade(0, notional=2e6), trade(1)]
    lim = IngestLimits(max_notional_usd=1e6)
    _, ref_q = decode_feed(msgspec.json.encode(rows), limits=lim)
    _, q = read_frame(pa.Table.from_pylist(rows, schema=SCHEMA), limits=lim)
    assert qrecords(q) == qrecords(ref_q)
    assert [r.reason for r in q] == ["notional_too_large"]


def test_core_import_does_not_import_pyarrow():
    code = (
        "import sys, surv_kernel as sk\n"
        "sk.decode_feed; sk.detect; sk.validate_columns; sk.Detection\n"
        "import surv_kernel.cli, surv_kernel.pipeline\n"
        "bad = [m for m in ('pyarrow', 'polars', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# Frames out: detect_frame, Detection.to_*, reprs
# ---------------------------------------------------------------------------
def test_detect_frame_returns_frames_of_the_callers_kind(day):
    ref = detect(decode_feed(msgspec.json.encode(day), desk="D")[0])
    ref_ids = [a.alert_id for a in ref.alerts]
    table = pa.Table.from_pylist(day, schema=SCHEMA)
    inputs = {
        "arrow": (table, pa.Table),
        "polars": (pl.from_arrow(table), pl.DataFrame),
        "pandas": (table.to_pandas(), pd.DataFrame),
    }
    for name, (frame, kind) in inputs.items():
        out = sk.detect_frame(frame, desk="D")
        assert isinstance(out.alerts, kind), name
        assert isinstance(out.suppressed, kind), name
        assert isinstance(out.quarantine, kind), name
        assert msgspec.json.encode(out.detection) == msgspec.json.encode(ref), name
        alerts = pa.Table.from_pandas(out.alerts) if name == "pandas" else out.alerts
        if name == "polars":
            alerts = alerts.to_arrow()
        assert alerts.column("alert_id").to_pylist() == ref_ids, name
        assert alerts.column("trades").to_pylist() == [a.trades for a in ref.alerts], name
        assert alerts.column("z").to_pylist() == [a.explanation.z for a in ref.alerts], name
        assert alerts.column("explanation").to_pylist() == [
            a.explanation.describe() for a in ref.alerts
        ], name
        assert len(out.suppressed) == len(ref.suppressed), name
        assert len(out.quarantine) == 0, name
    # the UTC timestamp columns are the ns columns
    first = sk.detect_frame(table).alerts
    assert first.column("start").cast(pa.int64()).to_pylist() == [a.start_ns for a in ref.alerts]
    assert str(first.schema.field("peak").type) == "timestamp[ns, tz=UTC]"


def test_detect_frame_quarantine_frame_and_a_bad_column():
    rows = [trade(0), trade(1, notional=-5.0), trade(0)]
    out = sk.detect_frame(pl.DataFrame(rows, schema=POLARS_SCHEMA, orient="row"))
    assert out.quarantine["reason"].to_list() == ["bad_notional", "duplicate_trade_id"]
    assert out.quarantine["position"].to_list() == [1, 2]
    assert out.alerts.height == 0 and list(out.alerts.columns)[0] == "alert_id"
    with pytest.raises(ColumnError, match="column 'timestamp'"):
        sk.detect_frame(pd.DataFrame(rows).assign(timestamp="noon"))


def test_detection_to_frames_and_short_reprs(day):
    det = detect(decode_feed(msgspec.json.encode(day))[0])
    assert repr(det) == (
        f"Detection(alerts={len(det.alerts)}, suppressed={len(det.suppressed)}, "
        f"n_trades={det.n_trades}, n_floor_episodes={det.n_floor_episodes})"
    )
    assert len(repr(det)) < 120
    html = det._repr_html_()
    assert f"{len(det.alerts)} alerts" in html and html.count("<tr>") == 11
    top = max(det.alerts, key=lambda a: a.score)
    assert top.alert_id in html
    assert det.to_arrow().num_rows == len(det.alerts)
    assert det.to_polars("suppressed").height == len(det.suppressed)
    assert len(det.to_pandas()) == len(det.alerts)
    with pytest.raises(ValueError, match="what must be"):
        det.to_arrow("trades")
    empty = detect(TradeBatch.empty())
    assert repr(empty) == "Detection(alerts=0, suppressed=0, n_trades=0, n_floor_episodes=0)"
    assert "<table>" not in empty._repr_html_()
    assert empty.to_arrow().num_rows == 0


def test_repr_html_escapes_trader_names():
    rows = [trade(i, trader_id="<b>x</b>", notional=9e6, timestamp=T0 + i) for i in range(3)]
    det = detect(decode_feed(msgspec.json.encode(rows))[0])
    assert det.alerts, "a floor-only burst must alert"
    html = det._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


# ---------------------------------------------------------------------------
# Sources and the command line
# ---------------------------------------------------------------------------
def _run_cli(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "surv_kernel", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def desk_feeds(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("feeds")
    feeds = generate_day(1, n_traders=60).feeds()
    for fmt in ("json", "parquet", "csv", "hive"):
        (root / fmt).mkdir()
    for desk, data in feeds.items():
        rows = msgspec.json.decode(data)
        (root / "json" / f"{desk}.json").write_bytes(data)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        pq.write_table(table, root / "parquet" / f"{desk}.parquet", row_group_size=500)
        (root / "csv" / f"{desk}.csv").write_bytes(csv_text(rows))
        part = root / "hive" / f"desk={desk}"
        part.mkdir()
        half = len(rows) // 2
        pq.write_table(table.slice(0, half), part / "part-0.parquet")
        pq.write_table(table.slice(half), part / "part-1.parquet")
    return root, feeds


def test_resolve_feeds_picks_the_source_by_format(desk_feeds):
    from surv_kernel.frames.sources import CsvSource, ParquetSource, StdinSource
    from surv_kernel.pipeline import FileSource, resolve_feeds

    root, feeds = desk_feeds
    kinds = {
        "json": FileSource,
        "parquet": ParquetSource,
        "csv": CsvSource,
        "hive": ParquetSource,
    }
    for fmt, cls in kinds.items():
        sources = resolve_feeds([root / fmt])
        assert [type(s) for s in sources] == [cls] * len(feeds), fmt
        assert sorted(s.desk for s in sources) == sorted(feeds), fmt
    one = next(iter(feeds))
    assert resolve_feeds([root / "hive" / f"desk={one}"])[0].desk == one
    assert isinstance(resolve_feeds(["-"])[0], StdinSource)


def test_run_gives_the_same_alerts_for_every_feed_format(desk_feeds, tmp_path):
    root, feeds = desk_feeds
    outputs = {}
    for fmt in ("json", "parquet", "csv", "hive"):
        res = _run_cli("run", str(root / fmt), "--out", str(tmp_path / fmt), cwd=tmp_path)
        assert res.returncode == 0, res.stderr.decode()
        outputs[fmt] = (tmp_path / fmt / "alerts.jsonl").read_bytes()
    assert outputs["json"].count(b"\n") > 3
    for fmt, text in outputs.items():
        assert text == outputs["json"], fmt


def test_run_reads_stdin_in_each_format(desk_feeds, tmp_path):
    root, feeds = desk_feeds
    desk = max(feeds, key=lambda d: len(feeds[d]))
    ref = _run_cli("run", str(root / "json" / f"{desk}.json"), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr.decode()
    # the desk name differs (stdin): compare the alerts without it
    expected = [
        {k: v for k, v in json.loads(x).items() if k != "desks"} for x in ref.stdout.splitlines()
    ]
    assert expected
    for fmt in ("json", "parquet", "csv"):
        data = (root / fmt / f"{desk}.{fmt}").read_bytes()
        res = _run_cli("run", "-", cwd=tmp_path, stdin=data)
        assert res.returncode == 0, (fmt, res.stderr.decode())
        got = [
            {k: v for k, v in json.loads(x).items() if k != "desks"}
            for x in res.stdout.splitlines()
        ]
        assert got == expected, fmt
        assert all(json.loads(x)["desks"] == ["stdin"] for x in res.stdout.splitlines())


def test_run_writes_parquet_and_csv_outputs(desk_feeds, tmp_path):
    root, _ = desk_feeds
    res = _run_cli("run", str(root / "json"), "--out", str(tmp_path / "j"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    ref = [json.loads(x) for x in (tmp_path / "j" / "alerts.jsonl").read_text().splitlines()]
    n_supp = len((tmp_path / "j" / "suppressed.jsonl").read_text().splitlines())
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt
        res = _run_cli("run", str(root / "json"), "--out", str(out), "--format", fmt, cwd=tmp_path)
        assert res.returncode == 0, res.stderr.decode()
        read = pq.read_table if fmt == "parquet" else pacsv_read
        alerts = read(out / f"alerts.{fmt}")
        assert alerts.column("alert_id").to_pylist() == [a["alert_id"] for a in ref]
        desks = alerts.column("desks").to_pylist()
        if fmt == "csv":
            desks = [json.loads(d) for d in desks]
        assert desks == [a["desks"] for a in ref]
        assert read(out / f"suppressed.{fmt}").num_rows == n_supp
        assert (out / f"quarantine.{fmt}").exists()


def pacsv_read(path: Path) -> pa.Table:
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path)


def test_calibrate_on_parquet_history_equals_json(desk_feeds, tmp_path):
    root, _ = desk_feeds
    for fmt in ("json", "parquet"):
        res = _run_cli(
            "calibrate", str(root / fmt), "--out", str(tmp_path / f"{fmt}.json"), cwd=tmp_path
        )
        assert res.returncode == 0, res.stderr.decode()
    assert (tmp_path / "json.json").read_bytes() == (tmp_path / "parquet.json").read_bytes()


def test_run_on_a_parquet_feed_with_a_string_timestamp_fails_the_desk(tmp_path):
    table = pa.Table.from_pylist([trade(0)], schema=SCHEMA)
    bad = table.set_column(5, "timestamp", pa.array(["2026-01-01"]))
    pq.write_table(bad, tmp_path / "d.parquet")
    res = _run_cli("run", str(tmp_path / "d.parquet"), cwd=tmp_path)
    assert res.returncode == 4, res.stderr.decode()
    assert "column 'timestamp' holds Arrow string" in res.stderr.decode()


# ---------------------------------------------------------------------------
# FX by trade date (reference tables from files), the same on every path
# ---------------------------------------------------------------------------
FX_BY_DATE = """date,currency,usd_per_unit,source
2024-03-11,EUR,1.0900,ECB
2024-03-12,EUR,1.0910,ECB
2024-03-13,EUR,1.0920,ECB
2024-03-14,EUR,1.0930,ECB
2024-03-15,EUR,1.0940,ECB
2024-03-11,CHF,1.1300,SNB
2024-03-12,CHF,1.1310,SNB
2024-03-13,CHF,1.1320,SNB
2024-03-14,CHF,1.1330,SNB
2024-03-15,CHF,1.1340,SNB
"""
FLOORS_FILE = """asset_class,floor_usd,effective_from,effective_to,source
equity,1000000,2024-01-01,,policy
fixed_income,5000000,2024-01-01,,policy
derivative,2000000,,,received
commodity,3000000,2024-01-01,,policy 2024-03
"""


@pytest.fixture
def dated_reference(tmp_path):
    from surv_kernel.reference import use_reference

    (tmp_path / "fx_rates.csv").write_text(FX_BY_DATE)
    (tmp_path / "floors.csv").write_text(FLOORS_FILE)
    yield use_reference(tmp_path)
    use_reference(None)


def _epoch(iso: str) -> float:
    return float(np.datetime64(iso, "ns").astype(np.int64)) / 1e9


def test_each_trade_converts_at_its_own_dates_rate_on_every_path(dated_reference, tmp_path):
    midnight = _epoch("2024-03-12T00:00:00")
    rows = [
        trade(0, currency="EUR", notional=100.0, timestamp=_epoch("2024-03-12T10:00:00")),
        trade(1, currency="EUR", notional=100.0, timestamp=_epoch("2024-03-14T10:00:00")),
        trade(2, currency="EUR", notional=100.0, timestamp=midnight - 1e-6),  # still the 11th
        trade(3, currency="EUR", notional=100.0, timestamp=midnight),
        trade(4, currency="CHF", notional=100.0, timestamp=_epoch("2024-03-13T09:00:00")),
        trade(5, currency="EUR", notional=100.0, timestamp=_epoch("2024-03-25T09:00:00")),
        trade(6, currency="JPY", notional=100.0, timestamp=_epoch("2024-03-12T09:00:00")),
        trade(7, currency="EUR", notional=100.0, timestamp=1e12),  # no trading date
        trade(8, asset_class="commodity", timestamp=_epoch("2024-03-12T11:00:00")),
        trade(9, currency="USD", notional=100.0, timestamp=_epoch("2024-03-12T11:00:00")),
    ]
    ref_batch, ref_q = decode_feed(msgspec.json.encode(rows), desk="D")
    assert ref_batch.trade_id.tolist() == ["T0", "T1", "T2", "T3", "T4", "T8", "T9"]
    assert ref_batch.notional_usd[:5].tolist() == [
        100 * 1.091,
        100 * 1.093,
        100 * 1.090,
        100 * 1.091,
        100 * 1.132,
    ]
    assert [(r.trade_id, r.reason) for r in ref_q] == [
        ("T5", "unknown_currency"),
        ("T6", "unknown_currency"),
        ("T7", "bad_timestamp"),
    ]
    assert "no FX rate for EUR on day 2024-03-25" in ref_q[0].detail
    assert "'JPY'" in ref_q[1].detail and "fx_rates.csv" in ref_q[1].detail
    for name, (batch, q) in every_reader(rows, tmp_path, 3).items():
        assert_same_batch(ref_batch, batch)
        assert qrecords(q) == qrecords(ref_q), name
    # and datetimes in ns: the trade 1 us before midnight is still on the 11th
    table = pa.Table.from_pylist(rows[:4], schema=SCHEMA)
    ns = (np.asarray([r["timestamp"] for r in rows[:4]]) * 1e9).astype(np.int64)
    ns[2] = int(midnight) * 10**9 - 1
    table = table.set_column(5, "timestamp", pa.array(ns).cast(pa.timestamp("ns", "UTC")))
    batch, q = read_frame(table)
    assert not q
    assert batch.notional_usd.tolist() == [100 * 1.091, 100 * 1.093, 100 * 1.090, 100 * 1.091]


def test_undated_tables_keep_the_per_currency_path(tmp_path):
    # the embedded default: one rate per currency for all time, any date
    rows = [trade(0, currency="EUR", timestamp=1e9), trade(1, currency="GBP", timestamp=4e9)]
    batch, q = read_frame(pa.Table.from_pylist(rows, schema=SCHEMA))
    assert not q
    assert batch.notional_usd.tolist() == [1000.0 * 1.08, 1001.0 * 1.27]


def test_frame_sources_run_through_the_pipeline_like_json_feeds(day):
    from surv_kernel.frames.sources import FrameSource
    from surv_kernel.pipeline import BytesSource, run

    half = len(day) // 2
    parts = {"a": day[:half], "b": day[half:]}
    ref = run([BytesSource(k, msgspec.json.encode(v)) for k, v in parts.items()])
    frames = {"a": pl.DataFrame(parts["a"]), "b": pd.DataFrame(parts["b"])}
    got = run([FrameSource(k, v) for k, v in frames.items()])
    assert msgspec.json.encode(got.detection) == msgspec.json.encode(ref.detection)
    assert got.alert_dicts() == ref.alert_dicts()
    assert [r.quarantine.seen for r in got.reads] == [len(parts["a"]), len(parts["b"])]


def test_masked_and_unsigned_columns():
    rows = [trade(i) for i in range(3)]
    cols = {f: [r[f] for r in rows] for f in FIELDS}
    ns = (np.asarray(cols["timestamp"]) * 1e9).astype(np.int64).view("datetime64[ns]")
    cols["timestamp"] = np.ma.MaskedArray(ns, mask=[False, True, False])
    cols["notional"] = np.asarray([5, 6, 7], np.uint16)
    cols["surveillance_required"] = np.ma.MaskedArray([True, False, True], mask=[0, 0, 1])
    batch, q = validate_columns(cols)
    assert batch.trade_id.tolist() == ["T0"]
    assert batch.notional.tolist() == [5.0]
    assert [(r.position, r.detail) for r in q] == [
        (1, "Expected `float`, got `null` - at `$.timestamp`"),
        (2, "Expected `bool`, got `null` - at `$.surveillance_required`"),
    ]


@settings(max_examples=200, deadline=None)
@given(
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    offsets=st.lists(st.integers(-3, 3), min_size=1, max_size=12),
    lo_side=st.booleans(),
    nulls=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_integer_timestamps_against_an_exact_reference(unit, offsets, lo_side, nulls):
    # values a few units either side of a bound: the exact rule is
    # min_timestamp <= v / k < max_timestamp, decided here with Fraction
    from fractions import Fraction

    k = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    lim = IngestLimits()
    bound = (lim.min_timestamp if lo_side else lim.max_timestamp) * k
    values = np.array([int(bound) + o for o in offsets], np.int64)
    n = len(values)
    mask = np.array(nulls[:n])
    cols = {
        "trade_id": [f"T{i}" for i in range(n)],
        "asset_class": ["equity"] * n,
        "notional": np.ones(n),
        "currency": ["USD"] * n,
        "trader_id": ["t"] * n,
        "timestamp": np.ma.MaskedArray(values, mask=mask),
        "surveillance_required": np.zeros(n, bool),
    }
    batch, q = validate_columns(cols, timestamp_unit=unit)
    lo, hi = Fraction(lim.min_timestamp), Fraction(lim.max_timestamp)
    expect_kept = [
        i for i, v in enumerate(values.tolist()) if not mask[i] and lo <= Fraction(v, k) < hi
    ]
    assert batch.trade_id.tolist() == [f"T{i}" for i in expect_kept]
    assert batch.timestamp_ns.tolist() == [int(values[i]) * (10**9 // k) for i in expect_kept]
    reasons = {r.position: r.reason for r in q}
    for i in range(n):
        if mask[i]:
            assert reasons[i] == "wrong_type"
        elif i not in expect_kept:
            assert reasons[i] == "bad_timestamp"


def test_python_lists_with_none_are_nulls_and_mixed_kinds_are_one_error():
    rows = [trade(i) for i in range(4)]
    cols = {f: [r[f] for r in rows] for f in FIELDS}
    cols["notional"] = [5, None, 7.5, 8]
    cols["timestamp"] = [int(T0), int(T0) + 1, None, int(T0) + 3]
    cols["surveillance_required"] = [True, False, True, None]
    batch, q = validate_columns(cols)
    assert batch.trade_id.tolist() == ["T0"]
    assert batch.timestamp_ns.tolist() == [int(T0) * 10**9]
    assert [r.detail.split(" - ")[1] for r in q] == [
        "at `$.notional`",
        "at `$.timestamp`",
        "at `$.surveillance_required`",
    ]
    batch, q = validate_columns({**cols, "surveillance_required": [None] * 4})
    assert len(batch) == 0 and q.counts == {"wrong_type": 4}
    with pytest.raises(ColumnError, match=r"column 'notional' holds Python objects .*bool, int"):
        validate_columns({**cols, "notional": [1, True, 2, 3]})
    with pytest.raises(ColumnError, match=r"column 'timestamp' holds Python objects .*str"):
        validate_columns({**cols, "timestamp": ["2026-01-01", None, None, None]})
