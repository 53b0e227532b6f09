"""Arrow -> the columns :func:`surv_kernel.validate_columns` takes.

Zero-copy where Arrow's layout is already ingest's: a string column's UTF-8
data buffer is handed over as it is (only int32 offsets are widened), a
float64 column without nulls is viewed, not copied. Bit-packed booleans,
other numeric types and columns with nulls (their values must be filled
before NumPy sees them) are converted once per record batch.

Every reader in this package ends here: Parquet row groups, CSV blocks,
polars and pandas frames (via ``to_arrow`` / ``Table.from_pandas``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ..batch import Dictionaries, TradeBatch
from ..ingest import IngestLimits, Quarantine
from ..schema import FIELDS
from ..validate import STRING_FIELDS, ColumnError, Utf8Column, kind_error, validate_columns

__all__ = ["arrow_columns", "check_schema", "iter_arrow", "read_arrow"]


def _valid(arr: pa.Array) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _utf8(field: str, arr: pa.Array) -> Utf8Column:
    t = arr.type
    if pa.types.is_dictionary(t) and _is_text(t.value_type):
        arr = arr.cast(t.value_type)  # categorical / enum columns (polars, pandas)
        t = arr.type
    if pa.types.is_null(t):
        n = len(arr)
        return Utf8Column(np.empty(0, np.uint8), np.zeros(n + 1, np.int64), np.zeros(n, np.bool_))
    if pa.types.is_string_view(t):  # polars' newest layout: no offsets buffer to share
        arr = arr.cast(pa.large_string())
        t = arr.type
    if pa.types.is_string(t):
        offset_type = np.int32
    elif pa.types.is_large_string(t):
        offset_type = np.int64
    else:
        raise kind_error(field, f"Arrow {t}")
    _, offsets_buf, data_buf = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(offsets_buf, offset_type)[arr.offset : arr.offset + n + 1]
    data = np.empty(0, np.uint8) if data_buf is None else np.frombuffer(data_buf, np.uint8)
    # pyarrow makes the Python strings (only trade ids need them) in C++,
    # about twice as fast as Utf8Column's own decode-and-split
    return Utf8Column(
        data,
        offsets.astype(np.int64, copy=False),
        _valid(arr),
        decode=lambda: arr.to_numpy(zero_copy_only=False),
    )


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _masked(values: np.ndarray, valid: np.ndarray | None) -> Any:
    return values if valid is None else np.ma.MaskedArray(values, mask=~valid)


def _number(field: str, arr: pa.Array) -> Any:
    t = arr.type
    if pa.types.is_null(t):
        return np.ma.MaskedArray(np.zeros(len(arr)), mask=np.ones(len(arr), np.bool_))
    if pa.types.is_decimal(t) or pa.types.is_float16(t):
        arr = arr.cast(pa.float64())
    elif not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise kind_error(
            field,
            f"Arrow {t}",
            "bools are not numbers here, as in JSON feeds" if pa.types.is_boolean(t) else "",
        )
    valid = _valid(arr)
    if valid is not None:
        arr = arr.fill_null(0)
    return _masked(arr.to_numpy(zero_copy_only=False), valid)


def _timestamp(arr: pa.Array) -> Any:
    t = arr.type
    if pa.types.is_timestamp(t):
        # Arrow stores a tz-aware timestamp as the UTC instant and a naive one
        # as wall-clock time; both are the int64 values read here, so a naive
        # column is taken as UTC (documented), an aware one converts exactly
        valid = _valid(arr)
        ints = arr.cast(pa.int64())
        if valid is not None:
            ints = ints.fill_null(0)
        values = ints.to_numpy(zero_copy_only=False).view(f"datetime64[{t.unit}]")
        return _masked(values, valid)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t):
        return _number("timestamp", arr)
    hint = "parse them first, e.g. polars str.to_datetime or pd.to_datetime"
    if pa.types.is_date(t):
        hint = "a date is not a trade time: give the full timestamp"
    elif pa.types.is_duration(t):
        hint = "a duration has no epoch: convert it to seconds since 1970-01-01 UTC"
    raise kind_error("timestamp", f"Arrow {t}", hint)


def _flag(arr: pa.Array) -> Any:
    t = arr.type
    if pa.types.is_null(t):
        return np.ma.MaskedArray(np.zeros(len(arr), np.bool_), mask=np.ones(len(arr), np.bool_))
    if not pa.types.is_boolean(t):
        raise kind_error("surveillance_required", f"Arrow {t}", "no coercion, as in JSON feeds")
    valid = _valid(arr)
    if valid is not None:
        arr = arr.fill_null(False)
    return _masked(arr.to_numpy(zero_copy_only=False), valid)


def check_schema(schema: pa.Schema, where: str | None = None) -> None:
    """A :class:`ColumnError` now, before any row is read, if a schema field
    is missing or of a kind no rule accepts (e.g. a Parquet file's footer)."""
    at = "" if where is None else f"{where}: "
    names = set(schema.names)
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise ColumnError(
            f"{at}missing column(s) {', '.join(missing)}: a trade needs "
            f"{', '.join(FIELDS)} (found: {', '.join(schema.names) or 'none'})"
        )
    empty = {f: pa.array([], schema.field(f).type) for f in FIELDS}
    try:
        arrow_columns(empty)
    except ColumnError as exc:
        if where is None:
            raise
        raise ColumnError(f"{at}{exc}") from None


def arrow_columns(columns: Any) -> dict[str, Any]:
    """The schema fields of a record batch (or a mapping name -> Arrow array)
    as ``validate_columns`` columns; a missing field is left out (so
    ``validate_columns`` names it)."""
    get = columns.column if isinstance(columns, pa.RecordBatch) else columns.__getitem__
    names = columns.schema.names if isinstance(columns, pa.RecordBatch) else list(columns)
    out: dict[str, Any] = {}
    for f in FIELDS:
        if f not in names:
            continue
        arr = get(f)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if f in STRING_FIELDS:
            out[f] = _utf8(f, arr)
        elif f == "notional":
            out[f] = _number(f, arr)
        elif f == "timestamp":
            out[f] = _timestamp(arr)
        else:
            out[f] = _flag(arr)
    return out


def _record_batches(data: Any) -> Iterable[pa.RecordBatch]:
    if isinstance(data, pa.RecordBatch):
        return (data,)
    if isinstance(data, pa.Table):
        return data.to_batches()
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, Iterable):
        return data
    raise TypeError(f"expected an Arrow Table, RecordBatch or RecordBatchReader, got {type(data)}")


def iter_arrow(
    data: Any,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
    first_position: int = 0,
) -> Iterator[tuple[TradeBatch, Quarantine]]:
    """Validate Arrow record batches one by one: ``(TradeBatch, Quarantine)``
    per record batch (a Table's chunks, a reader's batches), positions
    counted across them. Memory follows one record batch."""
    d = dictionaries if dictionaries is not None else Dictionaries()
    position = first_position
    schema_checked = False
    for rb in _record_batches(data):
        if not schema_checked:
            check_schema(rb.schema)
            schema_checked = True
        yield validate_columns(
            arrow_columns(rb),
            desk=desk,
            dictionaries=d,
            limits=limits,
            timestamp_unit=timestamp_unit,
            first_position=position,
        )
        position += rb.num_rows
    if not schema_checked and isinstance(data, (pa.Table, pa.RecordBatchReader)):
        check_schema(data.schema)  # an empty table still has to be a trade table


def read_arrow(
    data: Any,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
) -> tuple[TradeBatch, Quarantine]:
    """All of ``data`` (Table, RecordBatch, reader) as one batch and quarantine."""
    d = dictionaries if dictionaries is not None else Dictionaries()
    lim = limits if limits is not None else IngestLimits()
    batches: list[TradeBatch] = []
    q = Quarantine(max_records=lim.max_quarantine_records)
    for batch, part in iter_arrow(
        data, desk=desk, dictionaries=d, limits=lim, timestamp_unit=timestamp_unit
    ):
        if len(batch):
            batches.append(batch)
        q.extend(part)
    if len(batches) == 1:
        return batches[0], q
    batch = TradeBatch.concat(batches) if batches else TradeBatch.empty(d)
    return batch, q
