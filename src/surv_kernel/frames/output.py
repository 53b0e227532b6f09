"""Frames out: alerts, suppressed episodes and quarantine as Arrow tables,
polars or pandas frames, and :func:`detect_frame` (a frame in, frames of the
same kind out).

One row per record; an alert's :class:`~surv_kernel.model.Explanation`
fields are flattened next to its own (no name is shared), ``explanation`` is
its one-sentence text, and each ``*_ns`` time also appears as a UTC
timestamp column (``start``, ``end``, ``peak``) for frame users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import pyarrow as pa

from ..batch import Dictionaries
from ..ingest import IngestLimits, QuarantineRecord
from ..model import Alert, Baselines, Detection, DetectionConfig, Explanation, SuppressedEpisode
from ..model import detect as detect_batch
from .arrow import read_arrow
from .readers import frame_kind, to_arrow

__all__ = [
    "KINDS",
    "FrameDetection",
    "alerts_table",
    "as_kind",
    "detect_frame",
    "quarantine_table",
    "suppressed_table",
]

#: Output kinds.
KINDS = ("arrow", "polars", "pandas")

_UTC_NS = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    list[str]: pa.list_(pa.string()),
    str | None: pa.string(),
    int | None: pa.int64(),
}


def _struct_table(records: Sequence[Any], cls: type, times: Sequence[str] = ()) -> pa.Table:
    """The fields of ``cls`` records as columns (explanations flattened)."""
    columns: dict[str, pa.Array] = {}
    for field in msgspec.structs.fields(cls):
        name = field.name
        if field.type is Explanation:
            explanations = [getattr(r, name) for r in records]
            for sub in msgspec.structs.fields(Explanation):
                values = [getattr(e, sub.name) for e in explanations]
                columns[sub.name] = pa.array(values, _ARROW_TYPES[sub.type])
            columns["explanation"] = pa.array([e.describe() for e in explanations], pa.string())
            continue
        values = [getattr(r, name) for r in records]
        columns[name] = pa.array(values, _ARROW_TYPES[field.type])
        if name in times:
            columns[name[: -len("_ns")]] = pa.array(values, pa.int64()).cast(_UTC_NS)
    return pa.table(columns)


def alerts_table(alerts: Sequence[Alert]) -> pa.Table:
    """One row per alert (``trades``: a list of trade ids)."""
    return _struct_table(alerts, Alert, ("start_ns", "end_ns", "peak_ns"))


def suppressed_table(suppressed: Sequence[SuppressedEpisode]) -> pa.Table:
    """One row per suppressed (floor-passing, not alerted) episode."""
    return _struct_table(suppressed, SuppressedEpisode, ("start_ns", "end_ns", "peak_ns"))


def quarantine_table(quarantine: Sequence[QuarantineRecord]) -> pa.Table:
    """One row per quarantined record (kept ones: see ``Quarantine.dropped``)."""
    return _struct_table(list(quarantine), QuarantineRecord)


def as_kind(table: pa.Table, kind: str) -> Any:
    """``table`` as ``kind`` (``"arrow"``, ``"polars"`` or ``"pandas"``)."""
    if kind == "arrow":
        return table
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(table)
    if kind == "pandas":
        return table.to_pandas()
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def detection_frame(detection: Detection, what: str, kind: str) -> Any:
    """``Detection.to_arrow`` and friends: ``what`` is alerts or suppressed."""
    if what == "alerts":
        return as_kind(alerts_table(detection.alerts), kind)
    if what == "suppressed":
        return as_kind(suppressed_table(detection.suppressed), kind)
    raise ValueError(f"what must be 'alerts' or 'suppressed', got {what!r}")


class FrameDetection(NamedTuple):
    """What :func:`detect_frame` returns: frames of the input's kind, and the
    :class:`Detection` they came from."""

    alerts: Any
    suppressed: Any
    quarantine: Any
    detection: Detection


def detect_frame(
    data: Any,
    config: DetectionConfig | None = None,
    baselines: Baselines | None = None,
    *,
    desk: str | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
) -> FrameDetection:
    """Detect on a polars or pandas DataFrame or Arrow data in one call:
    alerts, suppressed episodes and quarantined rows come back as frames of
    the same kind (polars in, polars out; pandas -> pandas; Arrow -> Arrow).

    The rows go through :func:`surv_kernel.validate_columns` (the JSON feed's
    rules) and :func:`surv_kernel.detect` with ``config`` and ``baselines``;
    a quarantined row is never analysed and is in ``quarantine``.
    """
    kind = frame_kind(data)
    batch, q = read_arrow(
        to_arrow(data),
        desk=desk,
        dictionaries=Dictionaries(),
        limits=limits,
        timestamp_unit=timestamp_unit,
    )
    detection = detect_batch(batch, config, baselines)
    return FrameDetection(
        as_kind(alerts_table(detection.alerts), kind),
        as_kind(suppressed_table(detection.suppressed), kind),
        as_kind(quarantine_table(q), kind),
        detection,
    )
