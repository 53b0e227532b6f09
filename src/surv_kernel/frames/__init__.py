"""Frames in, frames out: Arrow, Parquet, CSV, polars and pandas.

Needs pyarrow (``pip install surv_kernel[arrow]``); polars and pandas are
used when the caller hands one of their frames. Nothing outside this package
imports pyarrow, so ``import surv_kernel`` stays numpy + numba + msgspec.

In: every reader parses into Arrow record batches and goes through the one
validation step, :func:`surv_kernel.validate_columns` (the JSON feed's rules:
value checks, quarantine reasons, duplicate ids, FX to USD, ns timestamps).

- :func:`read_frame` / :func:`iter_frame`: a polars or pandas DataFrame, an
  Arrow Table, RecordBatch or RecordBatchReader;
- :func:`iter_parquet`: a Parquet file or directory, one row group at a time;
- :func:`iter_csv`: a CSV file, one block at a time.

Out: :func:`detect_frame` (alerts and suppressed episodes as frames of the
caller's kind) and :func:`alerts_table` / :func:`suppressed_table` /
:func:`quarantine_table` (Arrow), which ``Detection.to_arrow`` and friends
use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..batch import Dictionaries, TradeBatch
from ..ingest import IngestLimits, Quarantine
from .arrow import arrow_columns, check_schema, iter_arrow, read_arrow
from .output import (
    FrameDetection,
    alerts_table,
    as_kind,
    detect_frame,
    quarantine_table,
    suppressed_table,
)
from .readers import frame_kind, hive_desk, iter_csv, iter_parquet, parquet_files, to_arrow

__all__ = [
    "FrameDetection",
    "alerts_table",
    "as_kind",
    "detect_frame",
    "quarantine_table",
    "suppressed_table",
    "arrow_columns",
    "check_schema",
    "frame_kind",
    "hive_desk",
    "iter_arrow",
    "iter_csv",
    "iter_frame",
    "iter_parquet",
    "parquet_files",
    "read_arrow",
    "read_frame",
    "to_arrow",
]


def iter_frame(
    data: Any,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
) -> Iterator[tuple[TradeBatch, Quarantine]]:
    """``(TradeBatch, Quarantine)`` per record batch of a polars or pandas
    DataFrame or Arrow data."""
    return iter_arrow(
        to_arrow(data),
        desk=desk,
        dictionaries=dictionaries,
        limits=limits,
        timestamp_unit=timestamp_unit,
    )


def read_frame(
    data: Any,
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
) -> tuple[TradeBatch, Quarantine]:
    """A polars or pandas DataFrame or Arrow data as one validated
    :class:`TradeBatch` and its :class:`Quarantine`."""
    return read_arrow(
        to_arrow(data),
        desk=desk,
        dictionaries=dictionaries,
        limits=limits,
        timestamp_unit=timestamp_unit,
    )
