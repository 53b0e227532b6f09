"""Readers: Parquet files and directories, CSV files, polars and pandas frames.

Each one only parses into Arrow record batches and hands them to
:func:`~surv_kernel.frames.arrow.iter_arrow`, which goes through the one
validation step (:func:`surv_kernel.validate_columns`).

- Parquet: one row group at a time (``ParquetFile.read_row_group`` of the
  seven schema columns only), so memory follows the row group, not the file.
  A directory is read file by file in sorted path order; in a hive layout
  (``.../desk=NAME/part-0.parquet``) the ``desk=`` component names the desk.
- CSV: pyarrow's streaming reader, ``block_size`` bytes per batch. The four
  string fields are read as strings (a trade id ``007`` stays ``"007"``, an
  empty cell is ``""`` as in JSON, hence ``empty_id``), ``notional`` as
  float64, the flag as a boolean (``true``/``false``/``1``/``0``); only an
  empty cell is null (so ``nan`` is a NaN notional: ``bad_notional``).
  ``timestamp`` cells are epoch seconds or ISO 8601 datetimes (with an
  offset or ``Z``: converted to UTC; without: taken as UTC), decided per
  block. A cell that does not parse as its column's type fails the file
  with pyarrow's message (:class:`~surv_kernel.ingest.FeedError`): unlike a
  JSON record, a CSV row has no per-field type to quarantine on.
- polars / pandas: converted to Arrow (polars shares its buffers; pandas
  copies object columns), then as Arrow.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..batch import Dictionaries, TradeBatch
from ..ingest import FeedError, IngestLimits, Quarantine
from ..schema import FIELDS
from ..validate import STRING_FIELDS, ColumnError, kind_error
from .arrow import check_schema, iter_arrow

__all__ = [
    "DEFAULT_CSV_BLOCK",
    "frame_kind",
    "hive_desk",
    "iter_csv",
    "iter_parquet",
    "parquet_files",
    "to_arrow",
]

#: CSV bytes per record batch (pyarrow's reader works in blocks).
DEFAULT_CSV_BLOCK = 1 << 20

Chunks = Iterator[tuple[TradeBatch, Quarantine]]


# ---------------------------------------------------------------------------
# DataFrames
# ---------------------------------------------------------------------------
def frame_kind(data: Any) -> str:
    """``"polars"``, ``"pandas"`` or ``"arrow"`` (by the object's module, so
    neither polars nor pandas is imported to find out)."""
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        return "polars"
    if module == "pandas":
        return "pandas"
    if isinstance(data, (pa.Table, pa.RecordBatch, pa.RecordBatchReader)):
        return "arrow"
    raise TypeError(
        "expected a polars or pandas DataFrame, or an Arrow Table / RecordBatch / "
        f"RecordBatchReader, got {type(data).__module__}.{type(data).__name__}"
    )


def to_arrow(data: Any) -> Any:
    """A polars or pandas DataFrame as an Arrow Table (Arrow input as it is)."""
    kind = frame_kind(data)
    if kind == "polars":
        if type(data).__name__ == "LazyFrame":
            data = data.collect()
        return data.to_arrow()
    if kind == "pandas":
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            # e.g. an object column mixing str and int: name it, say why
            raise ColumnError(f"the pandas DataFrame does not convert to Arrow: {exc}") from None
    return data


# ---------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------
def hive_desk(path: Path) -> str | None:
    """The ``NAME`` of a ``desk=NAME`` directory on ``path``, if any."""
    for part in reversed(path.parent.parts):
        if part.startswith("desk="):
            return part[len("desk=") :]
    return None


def parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """A Parquet file, or the ``*.parquet`` files under a directory (sorted)."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*.parquet") if f.is_file())
    return [p]


def iter_parquet(
    path: str | os.PathLike[str] | BinaryIO,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
) -> Chunks:
    """Validated ``(TradeBatch, Quarantine)`` per row group of a Parquet file
    (or of every file under a directory, in sorted order; positions count
    across them). Only the seven schema columns are read."""
    d = dictionaries if dictionaries is not None else Dictionaries()
    files: list[Any] = [path] if not isinstance(path, (str, os.PathLike)) else parquet_files(path)
    position = 0
    for f in files:
        where = str(f) if isinstance(f, Path) else "Parquet input"
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FeedError(f"{where} is not a readable Parquet file: {exc}") from None
        check_schema(pf.schema_arrow, where)
        for i in range(pf.num_row_groups):
            group = pf.read_row_group(i, columns=list(FIELDS))
            yield from iter_arrow(
                group,
                desk=desk,
                dictionaries=d,
                limits=limits,
                timestamp_unit=timestamp_unit,
                first_position=position,
            )
            position += group.num_rows
            del group  # the next row group replaces it, not joins it


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------
_CSV_TYPES = {
    **{f: pa.string() for f in STRING_FIELDS},
    "notional": pa.float64(),
    # read as text and parsed per block below: seconds or ISO 8601
    "timestamp": pa.string(),
    "surveillance_required": pa.bool_(),
}


def _csv_timestamp(arr: pa.Array) -> pa.Array:
    """Epoch seconds if every cell is a number, else ISO 8601 datetimes (an
    offset or Z: the instant; none: taken as UTC); "" is null."""
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    for target in (pa.float64(), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            return arr.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    bad = next((v for v in arr.to_pylist() if v is not None and not _parses(v)), "?")
    raise kind_error(
        "timestamp",
        f"CSV text such as {bad!r}",
        "write epoch seconds or ISO 8601, e.g. 2026-01-05T09:30:00Z",
    )


def _parses(text: str) -> bool:
    for target in (pa.float64(), pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            pa.array([text]).cast(target)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return False


def iter_csv(
    source: str | os.PathLike[str] | BinaryIO | bytes,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    block_size: int = DEFAULT_CSV_BLOCK,
) -> Chunks:
    """Validated ``(TradeBatch, Quarantine)`` per CSV block (a header row
    naming the columns; see the module doc for the cell rules)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    where = str(source) if isinstance(source, (str, os.PathLike)) else "CSV input"
    d = dictionaries if dictionaries is not None else Dictionaries()
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=block_size),
            # a quoted cell may hold a newline (a JSON string may): slower
            # block splitting, but a row is never cut inside a cell
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=_CSV_TYPES,
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(where, exc) from None
    names = reader.schema.names
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise ColumnError(
            f"{where}: missing column(s) {', '.join(missing)}: a trade needs "
            f"{', '.join(FIELDS)} (header: {', '.join(names) or 'none'})"
        )

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise _csv_error(where, exc) from None
            ts = _csv_timestamp(rb.column("timestamp"))
            yield rb.set_column(rb.schema.get_field_index("timestamp"), "timestamp", ts)

    yield from iter_arrow(batches(), desk=desk, dictionaries=d, limits=limits)


def _csv_error(where: str, exc: Exception) -> FeedError:
    return FeedError(f"{where}: not a usable CSV trade file: {exc}")
