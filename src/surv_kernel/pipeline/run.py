"""One pipeline run: sources -> engine (read, merge, detect) -> sinks.

:func:`run` is the one path behind ``surv-kernel run``/``demo``/``calibrate``,
the legacy ``analyze_desk`` and ``process_all_desks``, and replay, so the same
feeds give the same alerts whichever of them produced them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..batch import TradeBatch
from ..ingest import DEFAULT_CHUNK_BYTES, QuarantineRecord
from ..model import Baselines, Detection, DetectionConfig
from ..model.config import check_baselines, resolve_config
from ..model.detector import Detector, configured_detectors
from ..observability import MetricsRegistry, metrics, reason_label
from . import plausibility
from .completeness import FAILED, PARTIAL, DeskReconciliation, IncompleteFeedError, reconcile
from .engines import DeskFailure, DeskRead, Engine, LocalEngine
from .outcomes import DeskOutcome, DeskRunReport
from .sources import Progress, Source
from .totals import DayTotals

__all__ = [
    "CROSS_DESK",
    "RunResult",
    "alert_desks",
    "home_desks",
    "run",
    "trade_to_alert_lag",
]

log = logging.getLogger(__name__)

#: The metric label of an alert whose peak window holds trades of several desks.
CROSS_DESK = "cross_desk"


@dataclasses.dataclass
class RunResult:
    """Everything one pipeline run produced, for the sinks and the report."""

    sources: list[Source]
    reads: list[DeskRead]  # healthy desks, in the order of the sources
    failures: list[DeskFailure]
    batch: TradeBatch  # the merged day
    detection: Detection
    config: DetectionConfig
    detectors: list[Detector]
    baselines_path: str | None
    stages: dict[str, float]  # stage -> seconds
    t_start: float  # perf_counter when the first source was opened
    #: what each sink wrote: name -> where ("alerts" -> path or "stdout", ...)
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: perf_counter when the last alert was written (the run's lag ends there)
    alerts_written_at: float | None = None
    baselines: Baselines | None = None
    #: every source reconciled, in order (see :mod:`surv_kernel.pipeline.completeness`)
    desks: list[DeskReconciliation] = dataclasses.field(default_factory=list)
    _homes: list[str] | None = dataclasses.field(default=None, repr=False)
    #: the analysed day's aggregates (an engine that never holds the day,
    #: :mod:`.bounded`, adds them up as it reads; otherwise from ``batch``)
    day_totals: DayTotals | None = dataclasses.field(default=None, repr=False)

    @property
    def totals(self) -> DayTotals:
        """What reconciliation reads of the day (see :mod:`.totals`)."""
        if self.day_totals is None:
            self.day_totals = DayTotals.from_batch(self.batch)
        return self.day_totals

    @property
    def ok(self) -> bool:
        """Every desk analysed and whole."""
        return not self.failures and not self.partial

    @property
    def partial(self) -> list[DeskReconciliation]:
        """Desks analysed but known to be incomplete (truncated, implausibly short)."""
        return [d for d in self.desks if d.status == PARTIAL]

    @property
    def quarantine(self) -> list[QuarantineRecord]:
        """The quarantined records kept (ingest keeps up to 100,000 per desk)."""
        return [r for read in self.reads for r in read.quarantine]

    @property
    def quarantine_counts(self) -> Counter[str]:
        """Every quarantined record by reason (exact, kept or not)."""
        total: Counter[str] = Counter()
        for read in self.reads:
            total.update(read.quarantine.counts)
        return total

    @property
    def n_bytes(self) -> int:
        return sum(s.size or 0 for s in self.sources)

    def alert_desks(self) -> list[list[str]]:
        """For each alert, the desks that booked its peak window's trades (sorted)."""
        return alert_desks(self.batch, self.detection.alerts)

    def alert_dicts(self) -> list[dict[str, Any]]:
        """Alerts as the legacy dicts (``Alert.to_dict()``) plus ``desks``."""
        out = []
        for alert, desks in zip(self.detection.alerts, self.alert_desks(), strict=True):
            d = alert.to_dict()
            d.setdefault("desks", desks)
            out.append(d)
        return out

    def desk_report(self) -> DeskRunReport:
        """One outcome per source, in order: a healthy desk's alerts are those
        whose peak window it booked most of (its *home* desk; ties to the
        first desk by name), so an alert across desks is listed once."""
        by_desk: dict[str, list[dict[str, Any]]] = {r.source.desk: [] for r in self.reads}
        for d, home in zip(self.alert_dicts(), self.home_desks(), strict=True):
            if home in by_desk:
                by_desk[home].append(d)
        failed = {f.source.desk: f for f in self.failures}
        partial = {d.desk: d for d in self.partial}
        seconds = {r.source.desk: r.seconds for r in self.reads}
        outcomes = []
        for s in self.sources:
            key = getattr(s, "key", s.desk)  # the caller's desk id where it has one
            f = failed.get(s.desk)
            p = partial.get(s.desk)
            if f is not None:
                outcomes.append(DeskOutcome(key, None, f.error, f.kind, 0.0))
            elif p is not None:
                # the alerts found are real; the error says the desk is not whole
                error = IncompleteFeedError(f"desk {s.desk!r} is partial: " + "; ".join(p.reasons))
                outcomes.append(DeskOutcome(key, by_desk[s.desk], error, PARTIAL, seconds[s.desk]))
            else:
                outcomes.append(DeskOutcome(key, by_desk[s.desk], None, "ok", seconds[s.desk]))
        return DeskRunReport(tuple(outcomes))

    def home_desks(self) -> list[str]:
        """For each alert, the desk that booked most of its peak window's trades."""
        if self._homes is None:  # a pass over every trade id: once per run
            self._homes = home_desks(self.batch, self.detection.alerts)
        return self._homes


def alert_desks(batch: TradeBatch, alerts: Sequence[Any]) -> list[list[str]]:
    """For each alert, the desks that booked its peak window's trades (sorted)."""
    wanted = {t for a in alerts for t in a.trades}
    if not wanted:
        return [[] for _ in alerts]
    desk_names = batch.dictionaries.desk
    ids = batch.trade_id
    mask = np.fromiter((t in wanted for t in ids), dtype=bool, count=len(ids))
    rows = np.flatnonzero(mask)
    desk_of = dict(zip(ids[rows].tolist(), desk_names.decode(batch.desk[rows]), strict=True))
    return [sorted({desk_of[t] for t in a.trades if t in desk_of}) for a in alerts]


def home_desks(batch: TradeBatch, alerts: Sequence[Any]) -> list[str]:
    """For each alert, the desk that booked most of its peak window's trades
    (ties to the smallest desk name)."""
    wanted = {t for a in alerts for t in a.trades}
    if not wanted:
        return ["" for _ in alerts]
    ids = batch.trade_id
    mask = np.fromiter((t in wanted for t in ids), dtype=bool, count=len(ids))
    rows = np.flatnonzero(mask)
    names = batch.dictionaries.desk.decode(batch.desk[rows])
    desk_of = dict(zip(ids[rows].tolist(), names, strict=True))
    out = []
    for a in alerts:
        counts = Counter(desk_of[t] for t in a.trades if t in desk_of)
        out.append(min(counts, key=lambda k: (-counts[k], k)) if counts else "")
    return out


def trade_to_alert_lag(
    result: RunResult, emitted_at: float, *, always: bool = False
) -> list[float] | None:
    """Seconds from each alert's last trade to ``emitted_at`` (Unix time), or
    None when the data is a replayed old day (its newest trade is more than a
    day before now: the figure would only measure the data's age), unless
    ``always`` (a feed just fetched from its desk is live by definition)."""
    day = result.totals
    if day.ts_max is None or not result.detection.alerts:
        return None
    newest = float(day.ts_max) / 1e9
    if emitted_at - newest > 86_400 and not always:
        return None
    return [emitted_at - a.end_ns / 1e9 for a in result.detection.alerts]


def run(
    sources: Sequence[Source],
    *,
    config: DetectionConfig | None = None,
    detectors: Sequence[Detector] | None = None,
    baselines: Baselines | None = None,
    baselines_path: str | None = None,
    engine: Engine | None = None,
    sinks: Sequence[Any] = (),
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    progress: Progress | None = None,
    registry: MetricsRegistry | None = None,
    live: bool = False,
    clock: Callable[[], float] = time.time,
    min_volume_ratio: float | None = None,
) -> RunResult:
    """Read every source, detect once over the merged day, write to every sink.

    - ``config``: the model's settings (defaults); ``detectors``: default the
      volume-window detector with ``config``;
    - ``baselines``: from :func:`surv_kernel.calibrate` (else from the day);
    - ``engine``: default :class:`~surv_kernel.pipeline.LocalEngine` (the
      bounded desk pool) reporting to ``registry``;
    - ``sinks``: objects with ``write(result) -> {name: where}``, called in
      order (see :mod:`surv_kernel.pipeline.sinks`);
    - ``live``: the sources are feeds just fetched, so every alert's
      trade-to-alert lag is observed (otherwise only when the data is recent);
    - ``min_volume_ratio``: a desk below this share of its normal volume
      (from the baselines' desk profiles) is partial (default
      ``SURV_MIN_VOLUME_RATIO`` or 0.5; 0 turns the check off).

    A desk that fails is in ``result.failures``, one known to be incomplete
    in ``result.partial`` (never silently missing, never "ok"); the other
    desks are analysed and written. Never raises for a failed desk; raises
    :class:`~surv_kernel.pipeline.completeness.ConservationError` if the
    records do not add up (before any sink writes).
    """
    ratio = plausibility.min_volume_ratio(min_volume_ratio)
    cfg = resolve_config(config)
    check_baselines(baselines, cfg)
    dets = list(detectors) if detectors is not None else configured_detectors(cfg)
    reg = registry if registry is not None else metrics
    eng = engine if engine is not None else LocalEngine(registry=reg)
    t_start = time.perf_counter()
    er = eng.execute(list(sources), dets, baselines, chunk_size=chunk_size, progress=progress)
    result = RunResult(
        list(sources),
        er.reads,
        er.failures,
        er.batch,
        er.detection,
        cfg,
        dets,
        baselines_path,
        er.stages,
        t_start,
        baselines=baselines,
        day_totals=getattr(er, "totals", None),
    )
    homes = result.home_desks()
    result.desks = reconcile(result, min_ratio=ratio, home_desks=homes)
    _record(result, reg, live, clock)
    for sink in sinks:
        result.outputs.update(sink.write(result))
    return result


def _record(
    result: RunResult, reg: MetricsRegistry, live: bool, clock: Callable[[], float]
) -> None:
    """The run's metrics and per-desk log lines (ingest counts are the engine's)."""
    single = result.sources[0].desk if len(result.sources) == 1 else None
    run_label = single if single is not None else "all"
    det = result.detection
    reg.histogram("surv_detect_seconds", desk=run_label).observe(result.stages.get("detect", 0.0))
    if single is not None:  # one desk: no need to look the alerts' trades up
        labels = [single] * len(det.alerts)
        per_desk = {single: len(det.alerts)}
    else:
        desks = result.alert_desks()
        labels = [d[0] if len(d) == 1 else CROSS_DESK for d in desks]
        per_desk = Counter(name for d in desks for name in d)
    for label, n in Counter(labels).items():
        reg.counter("surv_alerts_emitted_total", desk=label).inc(n)
    suppressed = collections.Counter(reason_label(ep.reason) for ep in det.suppressed)
    for reason, count in suppressed.items():
        reg.counter("surv_alerts_suppressed_total", desk=run_label, reason=reason).inc(count)
    for d in result.desks:
        reg.counter("surv_desk_outcomes_total", desk=d.desk, status=d.status).inc()
        if d.status == FAILED:
            continue
        reg.counter("surv_records_seen_total", desk=d.desk).inc(d.seen)
        if d.status == PARTIAL:
            log.error(
                "desk %s is PARTIAL (analysed, but incomplete): %s",
                d.desk,
                "; ".join(d.reasons),
                extra={"desk": d.desk, "event": "desk_partial", "reasons": list(d.reasons)},
            )
        if d.detector_silent:
            reg.counter("surv_detector_silent_total", desk=d.desk).inc()
            log.warning(
                "desk %s: no floor-passing episode at all, where its history has %.1f by now "
                "(a quiet day, or a feed missing its large trades?)",
                d.desk,
                d.volume.expected_floor_episodes if d.volume is not None else 0.0,
                extra={"desk": d.desk, "event": "detector_silent"},
            )
    lags = trade_to_alert_lag(result, clock(), always=live)
    worst: dict[str, float] = {}
    if lags is not None:
        for label, seconds in zip(labels, lags, strict=True):
            reg.histogram("surv_alert_lag_seconds", desk=label).observe(max(seconds, 0.0))
            worst[label] = max(worst.get(label, seconds), seconds)
    for read in result.reads:
        desk = read.source.desk
        q = read.quarantine
        if q.total:
            log.warning(
                "desk %s: %d record(s) quarantined, not analysed: %s",
                desk,
                q.total,
                dict(q.counts),
                extra={
                    "desk": desk,
                    "event": "records_quarantined",
                    "quarantined": q.total,
                    "reasons": {reason_label(k): v for k, v in q.counts.items()},
                    "first_positions": [record.position for record in q[:10]],
                },
            )
        n_alerts = per_desk.get(desk, 0)
        n_suppressed = len(det.suppressed) if single is not None else None
        n_trades = read.trades
        log.info(
            "desk %s: %d trades, %d quarantined, %d alerts%s",
            desk,
            n_trades,
            q.total,
            n_alerts,
            "" if n_suppressed is None else f", {n_suppressed} suppressed",
            extra={
                "desk": desk,
                "event": "desk_analyzed",
                "trades": n_trades,
                "quarantined": q.total,
                "alerts": n_alerts,
                "suppressed": n_suppressed,
                "decode_s": read.seconds,
                "detect_s": result.stages.get("detect"),
                "max_lag_s": worst.get(desk),
            },
        )
