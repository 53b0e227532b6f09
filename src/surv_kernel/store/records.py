"""What the store writes, as plain rows: built from a :class:`RunResult`, a
stream's events, or (the benchmark, the tests) directly.

Kept apart from the SQL so the mapping from the pipeline's objects to rows is
one small, testable place: the alert's row columns are what the case queue
filters on; everything else about the alert is in its JSON ``content``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import numpy as np

from ..model.alerts import Explanation, SuppressedEpisode

__all__ = ["DeskRow", "RunRecord", "alert_row", "decode_explanation", "run_record", "trading_date"]


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


#: msgspec JSON (NaN and inf become null, as in the JSON-lines files)
ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(obj: Any) -> str:
    return ENCODER.encode(obj).decode()


def trading_date(ns: int) -> str:
    """The UTC calendar date of a nanosecond timestamp, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d")


@dataclasses.dataclass(frozen=True)
class DeskRow:
    """One desk's reconciliation in a run: records seen = trades analysed + quarantined."""

    desk: str
    outcome: str  # "ok", "partial" or the failure kind (bad_feed, timeout, ...)
    error: str | None  # the failure, or why partial
    seen: int  # records read
    trades: int  # analysed
    quarantined: int
    alerts: int
    seconds: float | None


@dataclasses.dataclass
class RunRecord:
    """Everything one run puts in the store, in one transaction."""

    kind: str  # "batch" (a pipeline run) or "stream"
    config: dict[str, Any]
    summary: dict[str, Any]
    #: Alert.to_dict() + "desks", "desk" (the home desk) and "peak_trades"
    alerts: list[dict[str, Any]]
    suppressed: Sequence[SuppressedEpisode]
    desks: list[DeskRow]
    quarantine: list[tuple[str, str, int]]  # (desk, reason, count)
    n_trades: int
    n_quarantined: int
    first_date: str | None = None
    last_date: str | None = None


def alert_row(d: dict[str, Any], *, final: bool, stream_status: str) -> tuple[Any, ...]:
    """The ``alerts`` columns from an alert dict (see :data:`ALERT_COLUMNS`)."""
    return (
        d["alert_id"],
        d["trader_id"],
        d["asset_class"],
        d.get("typology", "volume_burst"),
        d.get("desk") or "",
        trading_date(d["start_ns"]),
        int(d["start_ns"]),
        int(d["end_ns"]),
        int(d["peak_ns"]),
        float(d["score"]),
        float(d["peak_window_sum_usd"]),
        encode(d),
        int(final),
        stream_status,
    )


ALERT_COLUMNS = (
    "alert_id",
    "trader_id",
    "asset_class",
    "typology",
    "desk",
    "trading_date",
    "start_ns",
    "end_ns",
    "peak_ns",
    "score",
    "peak_window_sum_usd",
    "content",
    "final",
    "stream_status",
)

_EXPL_FIELDS = Explanation.__struct_fields__
_EXPL_FLOATS = {
    name
    for name, kind in zip(_EXPL_FIELDS, Explanation.__annotations__.values(), strict=True)
    if kind in ("float", float)
}

SUPPRESSED_COLUMNS = (
    "run_no",
    "seq",
    "trader_id",
    "asset_class",
    "typology",
    "start_ns",
    "end_ns",
    "peak_ns",
    "peak_window_sum_usd",
    "n_trades",
    "reason",
    *_EXPL_FIELDS,
)


def suppressed_rows(run_no: int, items: Sequence[SuppressedEpisode]) -> Iterator[tuple[Any, ...]]:
    """``suppressed`` rows, lazily (a million rows are never all in memory as
    tuples): the episode's fields, then its explanation's in field order."""
    astuple = msgspec.structs.astuple
    for seq, s in enumerate(items):
        yield (
            run_no,
            seq,
            s.trader_id,
            s.asset_class,
            s.typology,
            s.start_ns,
            s.end_ns,
            s.peak_ns,
            s.peak_window_sum_usd,
            s.n_trades,
            s.reason,
            *astuple(s.explanation),
        )


def decode_explanation(values: Sequence[Any]) -> Explanation:
    """The stored explanation columns back to an :class:`Explanation` (NULL -> NaN)."""
    return Explanation(
        *(
            float("nan") if v is None and name in _EXPL_FLOATS else v
            for name, v in zip(_EXPL_FIELDS, values, strict=True)
        )
    )


def peak_trades(batch: Any, alerts: Sequence[Any]) -> list[list[dict[str, Any]]]:
    """For each alert, its peak window's trades as the analyst needs them
    (id, UTC time, USD notional, desk), in the alert's order. The alert
    itself carries only the ids; the store is where the rest is still known
    after the day's batch is gone."""
    wanted = {t for a in alerts for t in a.trades}
    if not wanted:
        return [[] for _ in alerts]
    ids = batch.trade_id
    rows = np.flatnonzero(np.fromiter((t in wanted for t in ids), dtype=bool, count=len(ids)))
    desks = batch.dictionaries.desk.decode(batch.desk[rows])
    by_id = {
        t: {"trade_id": t, "timestamp_ns": ts, "notional_usd": usd, "desk": desk}
        for t, ts, usd, desk in zip(
            ids[rows].tolist(),
            batch.timestamp_ns[rows].tolist(),
            batch.notional_usd[rows].tolist(),
            desks,
            strict=True,
        )
    }
    return [[by_id[t] for t in a.trades if t in by_id] for a in alerts]


def run_record(result: Any, summary: dict[str, Any]) -> RunRecord:
    """The record of a :class:`~surv_kernel.pipeline.RunResult`: its alerts
    with their home desks, its suppression report, per-desk reconciliation."""
    from ..pipeline.sinks import json_safe

    alerts = result.alert_dicts()
    homes = result.home_desks()
    batch = result.batch
    peaks = peak_trades(batch, result.detection.alerts)
    for d, home, peak in zip(alerts, homes, peaks, strict=True):
        d["desk"] = home
        d["peak_trades"] = peak
    # the run's own reconciliation (pipeline.completeness): every source,
    # ok / partial / failed, with seen = analysed + quarantined
    failed = {f.source.desk: f for f in result.failures}
    seconds = {r.source.desk: r.seconds for r in result.reads}
    desks: list[DeskRow] = []
    quarantine: list[tuple[str, str, int]] = []
    for rec in result.desks:
        f = failed.get(rec.desk)
        if f is not None:  # the failure's kind (bad_feed, timeout, ...) is the outcome
            desks.append(
                DeskRow(rec.desk, f.kind, " ".join(str(f.error).split()), 0, 0, 0, 0, None)
            )
            continue
        n_quarantined = sum(rec.quarantined.values())
        desks.append(
            DeskRow(
                rec.desk,
                rec.status,
                "; ".join(rec.reasons) or None,
                rec.seen,
                rec.analysed,
                n_quarantined,
                rec.alerts,
                seconds.get(rec.desk),
            )
        )
        quarantine.extend((rec.desk, str(r), int(n)) for r, n in rec.quarantined.items())
    first = last = None
    if len(batch):
        first = trading_date(int(batch.timestamp_ns.min()))
        last = trading_date(int(batch.timestamp_ns.max()))
    return RunRecord(
        kind="batch",
        config=json_safe(msgspec.to_builtins(result.config)),
        summary=json_safe(summary),
        alerts=alerts,
        suppressed=result.detection.suppressed,
        desks=desks,
        quarantine=quarantine,
        n_trades=len(batch),
        n_quarantined=sum(result.quarantine_counts.values()),
        first_date=first,
        last_date=last,
    )
