"""Sinks: where a run's alerts, suppressed episodes, quarantine and summary go.

A sink has ``write(result) -> {name: where}``; :func:`surv_kernel.pipeline.run`
calls the given sinks in order and collects what they wrote in
``result.outputs``. The files today: alerts, suppressed episodes and
quarantined records as JSON lines (:class:`JsonLinesSink`), the HTML report
(:class:`ReportSink`) and ``summary.json`` (:class:`SummarySink`). The alert
store is another sink.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from ..errors import OutputError
from .run import RunResult
from .summary import summary_dict

__all__ = [
    "JsonLinesSink",
    "ReportSink",
    "SummarySink",
    "atomic_open",
    "json_safe",
    "write_alerts",
    "write_quarantine",
    "write_suppressed",
]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _encoder() -> msgspec.json.Encoder:
    return msgspec.json.Encoder(enc_hook=_json_default)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """Write to ``path.tmp``, fsync, rename: a reader never sees half a file,
    and an interrupted write (Ctrl-C, SIGTERM, an error) leaves no ``.tmp``.
    A failure to write is an :class:`~surv_kernel.errors.OutputError`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def write_alerts(result: RunResult, out: IO[bytes]) -> list[dict[str, Any]]:
    """Alerts as JSON lines (``Alert.to_dict()`` plus ``desks``, the desks
    that booked the peak window's trades); returns the dicts."""
    enc = _encoder()
    dicts = result.alert_dicts()
    for d in dicts:
        out.write(enc.encode(d) + b"\n")
    out.flush()
    return dicts


def write_quarantine(records: Sequence[Any], path: str | Path) -> None:
    enc = _encoder()
    with atomic_open(path) as f:
        for r in records:
            f.write(enc.encode(msgspec.to_builtins(r)) + b"\n")


def write_suppressed(items: Sequence[Any], path: str | Path) -> None:
    """Suppressed episodes as JSON lines, with the explanation's sentence."""
    enc = _encoder()
    with atomic_open(path) as f:
        for item in items:
            d = msgspec.to_builtins(item)
            d["explanation"]["text"] = item.explanation.describe()
            f.write(enc.encode(d) + b"\n")


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, recursively (summary.json is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class JsonLinesSink:
    """Alerts (to a file, or a binary stream such as stdout), then the
    quarantined records and the suppressed episodes, each as JSON lines.
    Alerts go first: the run's lag ends when the last alert is written."""

    def __init__(
        self,
        alerts: str | Path | IO[bytes],
        *,
        quarantine: str | Path | None = None,
        suppressed: str | Path | None = None,
        shown_as: Callable[[Path], str] = str,
    ) -> None:
        self.alerts = alerts
        self.quarantine = quarantine
        self.suppressed = suppressed
        self.shown_as = shown_as
        self.alert_dicts: list[dict[str, Any]] = []

    def write(self, result: RunResult) -> dict[str, str]:
        t0 = time.perf_counter()
        outputs: dict[str, str] = {}
        if isinstance(self.alerts, (str, Path)):
            with atomic_open(self.alerts) as f:
                self.alert_dicts = write_alerts(result, f)
            outputs["alerts"] = self.shown_as(Path(self.alerts))
        else:
            self.alert_dicts = write_alerts(result, self.alerts)
            outputs["alerts"] = "stdout"
        result.alerts_written_at = time.perf_counter()
        if self.quarantine is not None:
            write_quarantine(result.quarantine, self.quarantine)
            outputs["quarantine"] = self.shown_as(Path(self.quarantine))
        if self.suppressed is not None:
            write_suppressed(result.detection.suppressed, self.suppressed)
            outputs["suppressed"] = self.shown_as(Path(self.suppressed))
        result.stages["write"] = result.stages.get("write", 0.0) + time.perf_counter() - t0
        return outputs


class ReportSink:
    """The self-contained HTML report (:mod:`surv_kernel.report`).

    ``cases``: where each alert's case status and disposition come from, any
    object with ``cases(alert_ids) -> {alert_id: {"status": ..., "disposition":
    ...}}``: the run's :class:`~surv_kernel.store.StoreSink` (or an open
    :class:`~surv_kernel.store.Store`; the pipeline layer does not import the
    store). Put that StoreSink before this sink, so the run's alerts are in
    the store when the report is drawn; without ``cases`` the report says
    "not stored"."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_charts: int = 50,
        title: str = "surv-kernel run",
        extra: dict[str, Any] | None = None,
        shown_as: Callable[[Path], str] = str,
        cases: Any = None,
    ) -> None:
        self.cases = cases
        self.path = Path(path)
        self.max_charts = max_charts
        self.title = title
        self.extra = extra
        self.shown_as = shown_as

    def write(self, result: RunResult) -> dict[str, str]:
        from .. import report

        t0 = time.perf_counter()
        result.outputs["report"] = self.shown_as(self.path)
        summary = summary_dict(result, extra=self.extra)
        cases = None
        if self.cases is not None:
            cases = self.cases.cases([a.alert_id for a in result.detection.alerts])
        try:
            report.write_report(
                self.path,
                batch=result.batch,
                alerts=result.detection.alerts,
                suppressed=result.detection.suppressed,
                config=result.config,
                summary=summary,
                max_charts=self.max_charts,
                title=self.title,
                desks=result.home_desks(),
                cases=cases,
            )
        except OSError as exc:
            raise OutputError(f"cannot write report {self.path}: {exc.strerror or exc}") from None
        result.stages["report"] = time.perf_counter() - t0
        return {"report": self.shown_as(self.path)}


class SummarySink:
    """``summary.json``: the run summary as strict JSON (NaN -> null)."""

    def __init__(self, path: str | Path, *, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.extra = extra

    def write(self, result: RunResult) -> dict[str, str]:
        summary = json_safe(summary_dict(result, extra=self.extra))
        with atomic_open(self.path) as f:
            f.write(json.dumps(summary, indent=2, default=str, allow_nan=False).encode() + b"\n")
        return {}
