"""A sink (the pipeline's seam) writing alerts, suppressed episodes and
quarantine as Parquet or CSV, for ``surv-kernel run --format``.

The columns are :func:`~surv_kernel.frames.output.alerts_table`'s (and the
others'), plus ``desks`` on alerts (the desks that booked the peak window's
trades, as in the JSON lines). CSV has no list type, so a list cell
(``trades``, ``desks``) is written as its JSON array text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..pipeline.sinks import atomic_open
from .output import alerts_table, quarantine_table, suppressed_table

__all__ = ["FORMATS", "FrameSink", "write_table"]

#: ``--format`` values this sink writes (``jsonl`` is the JSON lines sink).
FORMATS = ("csv", "parquet")

_JSON = msgspec.json.Encoder()


def _csv_ready(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            text = [_JSON.encode(v).decode() for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def write_table(table: pa.Table, out: IO[bytes], fmt: str) -> None:
    """``table`` to a binary stream as ``fmt`` (``csv`` or ``parquet``)."""
    if fmt == "parquet":
        pq.write_table(table, out)
    elif fmt == "csv":
        pacsv.write_csv(_csv_ready(table), out)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out.flush()


class FrameSink:
    """Like :class:`~surv_kernel.pipeline.JsonLinesSink` (alerts first, to a
    file or a binary stream such as stdout; then quarantine and suppressed
    episodes to files), in ``fmt``."""

    def __init__(
        self,
        alerts: str | Path | IO[bytes],
        *,
        fmt: str,
        quarantine: str | Path | None = None,
        suppressed: str | Path | None = None,
        shown_as: Callable[[Path], str] = str,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.alerts = alerts
        self.fmt = fmt
        self.quarantine = quarantine
        self.suppressed = suppressed
        self.shown_as = shown_as

    def write(self, result: Any) -> dict[str, str]:
        t0 = time.perf_counter()
        outputs: dict[str, str] = {}
        table = alerts_table(result.detection.alerts)
        table = table.append_column("desks", pa.array(result.alert_desks(), pa.list_(pa.string())))
        if isinstance(self.alerts, (str, Path)):
            with atomic_open(self.alerts) as f:
                write_table(table, f, self.fmt)
            outputs["alerts"] = self.shown_as(Path(self.alerts))
        else:
            write_table(table, self.alerts, self.fmt)
            outputs["alerts"] = "stdout"
        result.alerts_written_at = time.perf_counter()
        for name, path, make in (
            ("quarantine", self.quarantine, lambda: quarantine_table(result.quarantine)),
            ("suppressed", self.suppressed, lambda: suppressed_table(result.detection.suppressed)),
        ):
            if path is not None:
                with atomic_open(path) as f:
                    write_table(make(), f, self.fmt)
                outputs[name] = self.shown_as(Path(path))
        result.stages["write"] = result.stages.get("write", 0.0) + time.perf_counter() - t0
        return outputs
