"""Backtests: past days of history through today's detectors, day by day.

History is partitioned by day, hive-style: ``HISTORY/date=YYYY-MM-DD/`` holds
that day's desk files (the layout Dask, polars, Spark and DuckDB read). For
each day in ``[start, end]`` that has a directory:

1. baselines: the ones given, or calibrated on the ``rolling`` previous days
   of history (the days with a directory before this one, not calendar days:
   weekends and holidays have no trades). A day with fewer than ``rolling``
   earlier days is *skipped*, and says so: calibrating it on a shorter history
   would be a different model passing for the same one. Without either, each
   day's own trades are its baselines (the legacy same-day rule; the local
   engine only, see :mod:`.distributed`);
2. detection on the engine (:class:`~.engines.LocalEngine` or
   :class:`~.distributed.DaskEngine`; both give the same alerts). The local
   engine runs a day at a time; on Dask ``workers + 1`` days are in flight
   (one reading while another detects) and the calibration runs on a worker,
   so memory on the client and on each worker follows the days in flight,
   never the history's length;
3. ``OUT/date=YYYY-MM-DD/``: ``alerts.jsonl``, ``suppressed.jsonl`` and
   ``run.json``, every record marked ``"mode": "backtest"`` (a backtest never
   opens cases), each file written atomically; ``OUT/backtest.json`` sums up.

Each day is judged on its own trades, as the live system judged it: an
episode running over midnight is two episodes, one per day, on either engine.

Day files are read by :func:`day_sources` / :func:`read_day`, the one place
that knows the formats: ``*.json`` / ``*.ndjson`` / ``*.jsonl`` desk feeds
(ingest's feed parser) and ``*.parquet``
(:class:`surv_kernel.frames.sources.ParquetSource`, one row group at a time).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..batch import TradeBatch
from ..errors import ConfigError, DataError, InputError
from ..ingest import DEFAULT_CHUNK_BYTES
from ..model import Baselines, DetectionConfig, calibrate
from ..model.detector import Detector, configured_detectors
from ..observability import MetricsRegistry
from .engines import DeskFailure, Engine, EngineResult, LocalEngine, merge_batches
from .run import alert_desks
from .sinks import atomic_open, json_safe
from .sources import FEED_SUFFIXES, FileSource, Source

__all__ = [
    "BacktestResult",
    "DayResult",
    "backtest",
    "calibrate_days",
    "day_sources",
    "history_days",
    "read_day",
]

log = logging.getLogger(__name__)

MODE = "backtest"
_DAY_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def day_dir_name(day: dt.date) -> str:
    return f"date={day.isoformat()}"


def history_days(history: str | Path) -> dict[dt.date, Path]:
    """The day directories of ``history`` (``date=YYYY-MM-DD``), by date, in
    date order; other entries are ignored (a ``_SUCCESS`` marker, say)."""
    root = Path(history)
    if not root.is_dir():
        raise InputError(f"history directory not found: {history}")
    days = {}
    for entry in root.iterdir():
        m = _DAY_DIR.match(entry.name)
        if m and entry.is_dir():
            try:
                days[dt.date.fromisoformat(m.group(1))] = entry
            except ValueError:
                raise DataError(f"{entry}: {m.group(1)!r} is not a date") from None
    return dict(sorted(days.items()))


def __getattr__(name: str) -> Any:
    # ParquetSource is the frames reader's (row group by row group, through
    # validate_columns); imported on use, so this module never needs pyarrow
    if name == "ParquetSource":
        return _parquet_source_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parquet_source_class() -> Any:
    try:
        from ..frames.sources import ParquetSource
    except ImportError:
        raise ConfigError(
            "reading Parquet needs pyarrow (pip install 'surv_kernel[arrow]')"
        ) from None
    return ParquetSource


def day_sources(day_dir: str | Path) -> list[Source]:
    """One source per desk file of a day directory, sorted by name (so the
    order, and with it which copy of a duplicated trade id is kept, never
    depends on the file system)."""
    d = Path(day_dir)
    out: list[Source] = []
    for f in sorted(d.iterdir()):
        if not f.is_file():
            continue
        suffix = f.suffix.lower()
        if suffix in FEED_SUFFIXES:
            out.append(FileSource(f))
        elif suffix == ".parquet":
            out.append(_parquet_source_class()(f))
    if not out:
        raise InputError(f"no desk files (*.json, *.ndjson, *.jsonl, *.parquet) in {d}")
    desks = [s.desk for s in out]
    dup = sorted({x for x in desks if desks.count(x) > 1})
    if dup:
        raise ConfigError(f"{d}: desk(s) {dup} given twice (the desk is the file stem)")
    return out


def read_day(
    day_dir: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    registry: MetricsRegistry | None = None,
) -> tuple[TradeBatch, list[DeskFailure], int]:
    """A day directory as one batch (its desks in name order, one shared
    Dictionaries as in a run), the desks that failed, and the records
    quarantined; the reading's metrics go to ``registry`` (default the
    package's)."""
    reader = LocalEngine(inline=True, registry=registry)
    reads, failures, dictionaries = reader.read(day_sources(day_dir), chunk_size=chunk_size)
    batches = [r.batch for r in reads if len(r.batch)]
    batch = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
    return batch, failures, sum(r.quarantine.total for r in reads)


def calibrate_days(
    day_dirs: Sequence[str | Path], config: DetectionConfig, chunk_size: int = DEFAULT_CHUNK_BYTES
) -> Baselines:
    """Baselines from the given days (each read on its own, as trade ids may
    repeat across days, then re-coded into one batch). A day that cannot be
    read in full is a :class:`~surv_kernel.errors.DataError`: baselines from
    part of the history would shift without a word."""
    batches = []
    for d in day_dirs:
        # a throwaway registry: calibration days are not trades of the run
        batch, failures, _ = read_day(d, chunk_size=chunk_size, registry=MetricsRegistry())
        if failures:
            raise DataError(f"calibration history {d}: {failures[0].line()}")
        batches.append(batch)
    history = merge_batches([b for b in batches if len(b)])
    if len(history) == 0:
        raise DataError(f"calibration history {[str(d) for d in day_dirs]} has no usable trades")
    return calibrate(history, config)


@dataclasses.dataclass
class DayResult:
    date: dt.date
    status: str  # "ok", "failed" (a desk or the calibration failed), "skipped"
    record: dict[str, Any]  # what run.json holds
    #: the day's engine result, only while ``on_day`` runs: kept for every day
    #: it would hold the whole history's rows (the local engine's day batch)
    result: EngineResult | None = None


@dataclasses.dataclass
class BacktestResult:
    days: list[DayResult]
    missing: list[dt.date]  # business days of the range without a directory
    seconds: float

    @property
    def ok(self) -> bool:
        return all(d.status != "failed" for d in self.days)

    def totals(self) -> dict[str, int]:
        out = {"days": 0, "trades": 0, "alerts": 0, "suppressed": 0, "quarantined": 0}
        for d in self.days:
            if d.status == "skipped":
                continue
            out["days"] += 1
            for k in ("trades", "alerts", "suppressed", "quarantined"):
                out[k] += d.record.get(k, 0)
        return out


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def backtest(
    history: str | Path,
    start: dt.date,
    end: dt.date,
    out: str | Path,
    *,
    engine: Engine | None = None,
    config: DetectionConfig | None = None,
    detectors: Sequence[Detector] | None = None,
    baselines: Baselines | None = None,
    baselines_path: str | None = None,
    rolling: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    on_day: Callable[[DayResult], None] | None = None,
) -> BacktestResult:
    """Every history day in ``[start, end]`` through the detectors (module
    docstring); ``on_day`` is called after each day (the CLI prints a line)."""
    if start > end:
        raise ConfigError(f"--from {start} is after --to {end}")
    if baselines is not None and rolling is not None:
        raise ConfigError("give baselines or a rolling calibration, not both")
    if rolling is not None and not (isinstance(rolling, int) and rolling >= 1):
        raise ConfigError(f"rolling calibration needs N >= 1 days, got {rolling!r}")
    cfg = config if config is not None else DetectionConfig()
    dets = list(detectors) if detectors is not None else configured_detectors(cfg)
    eng = engine if engine is not None else LocalEngine()
    days = history_days(history)
    in_range = [d for d in days if start <= d <= end]
    missing = [
        start + dt.timedelta(k)
        for k in range((end - start).days + 1)
        if (start + dt.timedelta(k)).weekday() < 5 and start + dt.timedelta(k) not in days
    ]
    if not in_range:
        raise InputError(
            f"no history days (date=YYYY-MM-DD directories) in {history} for {start}..{end}"
        )
    out_root = Path(out)
    out_root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = _Days(days, eng, cfg, dets, baselines, baselines_path, rolling, chunk_size, out_root)
    # an engine that can submit without waiting (Dask) keeps a few days in
    # flight, one reading while another detects; results are still written
    # and reported in date order. The local engine runs a day at a time.
    depth = getattr(eng, "n_workers", 0) + 1 if hasattr(eng, "submit") else 1
    results: list[DayResult] = []
    queue: collections.deque[_Day] = collections.deque()

    def finish() -> None:
        results.append(run.finish(queue.popleft()))
        if on_day is not None:
            on_day(results[-1])
        results[-1].result = None

    for day in in_range:
        queue.append(run.prepare(day))
        while len(queue) >= depth:
            finish()
    while queue:
        finish()
    bt = BacktestResult(results, missing, time.perf_counter() - t0)
    summary = {
        "mode": MODE,
        "engine": eng.name,
        "history": str(history),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "config": msgspec.to_builtins(cfg),
        "baselines": _baselines_record(baselines_path, rolling),
        "totals": bt.totals(),
        "days": {d.date.isoformat(): d.status for d in results},
        "missing_business_days": [d.isoformat() for d in missing],
        "seconds": round(bt.seconds, 3),
    }
    with atomic_open(out_root / "backtest.json") as f:
        f.write(msgspec.json.format(msgspec.json.encode(json_safe(summary))) + b"\n")
    return bt


def _baselines_record(path: str | None, rolling: int | None) -> dict[str, Any]:
    if rolling is not None:
        return {"source": "rolling", "days": rolling}
    if path is not None:
        return {"source": "file", "path": str(path), "sha256": _sha256(path)}
    return {"source": "same-day"}


@dataclasses.dataclass
class _Day:
    """A day between :meth:`_Days.prepare` and :meth:`_Days.finish`."""

    date: dt.date
    record: dict[str, Any]
    target: Path
    status: str
    baselines: Any  # Baselines, a future of them (Dask), or None (same-day)
    sources: list[Source]
    pending: Any  # the engine's PendingRun (Dask), else None: executed in finish
    t0: float


class _Days:
    """One backtest's settings, and the two halves of a day."""

    def __init__(
        self,
        days: dict[dt.date, Path],
        eng: Engine,
        cfg: DetectionConfig,
        dets: list[Detector],
        baselines: Baselines | None,
        baselines_path: str | None,
        rolling: int | None,
        chunk_size: int,
        out_root: Path,
    ) -> None:
        self.days, self.all_days = days, list(days)
        self.eng, self.cfg, self.dets = eng, cfg, dets
        self.baselines, self.baselines_path, self.rolling = baselines, baselines_path, rolling
        self.chunk_size, self.out_root = chunk_size, out_root

    def prepare(self, day: dt.date) -> _Day:
        """The day's baselines and, on an engine that can, its submitted run."""
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "mode": MODE,
            "date": day.isoformat(),
            "engine": self.eng.name,
            "baselines": _baselines_record(self.baselines_path, self.rolling),
        }
        target = self.out_root / day_dir_name(day)
        target.mkdir(exist_ok=True)
        d = _Day(day, record, target, "ok", self.baselines, [], None, t0)
        if self.rolling is not None:
            i = self.all_days.index(day)
            prior = self.all_days[max(0, i - self.rolling) : i]
            record["baselines"]["calibrated_on"] = [x.isoformat() for x in prior]
            if len(prior) < self.rolling:
                d.status = "skipped"
                record["reason"] = (
                    f"rolling calibration needs {self.rolling} earlier day(s) of history, has "
                    f"{len(prior)}"
                )
                return d
            args = (calibrate_days, [self.days[x] for x in prior], self.cfg, self.chunk_size)
            # calibration runs where the engine runs: on Dask a worker reads
            # the N days and the baselines stay there for the day's tasks
            later = getattr(self.eng, "call_later", None)
            if later is not None:
                d.baselines = later(*args)
            else:
                try:
                    d.baselines = args[0](*args[1:])
                except DataError as exc:
                    d.status = "failed"
                    record["reason"] = f"calibration: {' '.join(str(exc).split())}"
                    return d
        d.sources = day_sources(self.days[day])
        submit = getattr(self.eng, "submit", None)
        if submit is not None:
            d.pending = submit(d.sources, self.dets, d.baselines, chunk_size=self.chunk_size)
        return d

    def finish(self, d: _Day) -> DayResult:
        """Wait for the day's run, write its files and its run.json."""
        result = None
        if d.status == "ok" and d.pending is not None and hasattr(d.baselines, "result"):
            try:
                d.baselines.result()  # a failed calibration fails the day, not the backtest
            except DataError as exc:
                d.status = "failed"
                d.record["reason"] = f"calibration: {' '.join(str(exc).split())}"
        if d.status == "ok":
            if d.pending is not None:
                result = d.pending.result()
            else:
                result = self.eng.execute(
                    d.sources, self.dets, d.baselines, chunk_size=self.chunk_size
                )
            det = result.detection
            d.record.update(
                desks=[r.source.desk for r in result.reads],
                trades=det.n_trades,
                quarantined=sum(r.quarantine.total for r in result.reads),
                alerts=len(det.alerts),
                suppressed=len(det.suppressed),
                floor_episodes=det.n_floor_episodes,
                failures=[f.line() for f in result.failures],
            )
            if result.failures:
                d.status = "failed"
            _write_day(d.target, d.date, result)
        else:
            # a rerun must not leave an earlier run's alerts beside this run's record
            for name in ("alerts.jsonl", "suppressed.jsonl"):
                (d.target / name).unlink(missing_ok=True)
        d.record["status"] = d.status
        d.record["seconds"] = round(time.perf_counter() - d.t0, 3)
        with atomic_open(d.target / "run.json") as f:
            f.write(msgspec.json.format(msgspec.json.encode(json_safe(d.record))) + b"\n")
        d.pending = d.baselines = None
        return DayResult(d.date, d.status, d.record, result)


def _write_day(target: Path, day: dt.date, result: EngineResult) -> None:
    """alerts.jsonl and suppressed.jsonl, every record marked as a backtest's."""
    enc = msgspec.json.Encoder()
    alerts = result.detection.alerts
    with atomic_open(target / "alerts.jsonl") as f:
        for alert, desks in zip(alerts, alert_desks(result.batch, alerts), strict=True):
            d = alert.to_dict()
            d["desks"] = desks
            d["mode"], d["date"] = MODE, day.isoformat()
            f.write(enc.encode(json_safe(d)) + b"\n")
    with atomic_open(target / "suppressed.jsonl") as f:
        for item in result.detection.suppressed:
            d = msgspec.to_builtins(item)
            d["explanation"]["text"] = item.explanation.describe()
            d["mode"], d["date"] = MODE, day.isoformat()
            f.write(enc.encode(json_safe(d)) + b"\n")
