"""Engines: how a run's work is scheduled.

An engine reads every source, merges the desks into one day and runs the
detectors over it. :class:`LocalEngine` does it on this host's bounded desk
pool (:mod:`surv_kernel.pipeline.pool`): every desk read side by side, one
detection over the merged day, so a trader's window is judged across every
desk that booked it. The stream (:mod:`surv_kernel.stream`) and a Dask engine
are other engines over the same sources, kernels and detectors.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .. import dtypes
from ..batch import Dictionaries, TradeBatch
from ..ingest import Quarantine
from ..model import Baselines, Detection
from ..model.detector import Detector, run_detectors
from ..observability import MetricsRegistry, metrics
from .pool import TaskResult, failure_kind, run_tasks
from .sources import Progress, Source

__all__ = [
    "DeskFailure",
    "DeskRead",
    "Engine",
    "EngineResult",
    "LocalEngine",
    "merge_batches",
    "merge_desks",
    "read_source",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DeskRead:
    """What reading one desk's source produced."""

    source: Source
    batch: Any  # TradeBatch (None once merged into the run's batch)
    quarantine: Quarantine  # kept records + exact counts
    seconds: float
    trades: int = 0  # rows kept (the batch's length when it was read)


@dataclasses.dataclass
class DeskFailure:
    """A desk that could not be read; nothing of it was analysed."""

    source: Source
    kind: str  # pool.TaskResult.kind: bad_feed, timeout, feed_unavailable, error, ...
    error: BaseException

    @property
    def desk(self) -> str:
        return self.source.desk

    def line(self) -> str:
        """One line an operator can act on."""
        head = f"desk {self.desk!r} ({self.source.where})"
        if isinstance(self.error, OSError):
            return f"{head}: cannot read it: {self.error.strerror or one_line(self.error)}"
        what = {
            "bad_feed": "not a readable feed",
            "timeout": "timed out",
            "feed_unavailable": "unavailable",
        }.get(self.kind)
        if what is None:
            # not the feed's fault: a bug, say so rather than blame the data
            return (
                f"{head}: internal error {type(self.error).__name__}: {one_line(self.error)} "
                "(a bug; rerun with --debug for the traceback)"
            )
        return f"{head}: {what}: {one_line(self.error)}"


def one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


@dataclasses.dataclass
class EngineResult:
    reads: list[DeskRead]  # healthy desks, in the order of the sources
    failures: list[DeskFailure]
    batch: TradeBatch  # every healthy desk's trades, one day
    detection: Detection
    stages: dict[str, float]  # stage -> seconds
    #: the day's aggregates when ``batch`` is not the whole day (the bounded
    #: engine: see :mod:`.totals`); None: computed from ``batch``
    totals: Any = None


class Engine(Protocol):
    """Reads the sources, merges them and runs the detectors."""

    name: str

    def execute(
        self,
        sources: Sequence[Source],
        detectors: Sequence[Detector],
        baselines: Baselines | None,
        *,
        chunk_size: int,
        progress: Progress | None = None,
    ) -> EngineResult: ...


def read_source(
    source: Source, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None
) -> DeskRead:
    """Every chunk of one desk into one batch. A desk is all or nothing: if
    its source fails half way, nothing of it is analysed (a partly read desk
    would pass for a quiet afternoon)."""
    batches = []
    quarantine = Quarantine()
    t0 = time.perf_counter()
    for batch, q in source.batches(dictionaries, chunk_size=chunk_size, progress=progress):
        if len(batch):
            batches.append(batch)
        quarantine.extend(q)
    merged = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
    return DeskRead(source, merged, quarantine, time.perf_counter() - t0, len(merged))


def merge_desks(reads: Sequence[DeskRead]) -> TradeBatch:
    """One TradeBatch from desk reads whose batches have *different*
    Dictionaries (history files read independently), see :func:`merge_batches`."""
    return merge_batches([read.batch for read in reads])


def merge_batches(batches: Sequence[TradeBatch]) -> TradeBatch:
    """One TradeBatch from batches whose Dictionaries may differ (desks read
    independently, partitions coming back from workers): every row re-coded
    by *name* into one new :class:`~surv_kernel.batch.Dictionaries`, in the
    order given."""
    shared = Dictionaries()
    parts = []
    for b in batches:
        recoded = {}
        for name in ("trader", "asset_class", "currency", "desk"):
            local = getattr(b.dictionaries, name)
            target = getattr(shared, name)
            mapping = np.fromiter(
                (target.code(v) for v in local.values), dtype=dtypes.CODE, count=len(local)
            )
            codes = getattr(b, name)
            recoded[name] = mapping[codes] if len(codes) else codes
        parts.append(
            TradeBatch(
                timestamp_ns=b.timestamp_ns,
                notional_usd=b.notional_usd,
                notional=b.notional,
                surveillance_required=b.surveillance_required,
                trade_id=b.trade_id,
                dictionaries=shared,
                **recoded,
            )
        )
    return TradeBatch.concat(parts) if parts else TradeBatch.empty(shared)


class LocalEngine:
    """This host's bounded desk pool: desks read side by side, one detection
    over the merged day.

    - ``max_workers``: desks read at once (default: ``SURV_MAX_WORKERS`` or
      ``min(desks, cores + 4)``); ``deadline_s``: per desk (default
      ``SURV_DESK_DEADLINE_S`` or 120 s); both read at run time.
    - ``registry``: where the pool's and the run's metrics go.
    - ``inline``: read the sources one after another in the calling thread,
      without the pool (for a caller that is itself a pool worker: the
      legacy per-desk ``analyze_desk``; its pool owns the deadline).
    """

    name = "local"

    def __init__(
        self,
        max_workers: int | None = None,
        deadline_s: float | None = None,
        registry: MetricsRegistry | None = None,
        *,
        inline: bool = False,
    ) -> None:
        self.max_workers = max_workers
        self.deadline_s = deadline_s
        self.registry = registry if registry is not None else metrics
        self.inline = inline

    def read(
        self,
        sources: Sequence[Source],
        *,
        chunk_size: int,
        progress: Progress | None = None,
        shared: bool = True,
    ) -> tuple[list[DeskRead], list[DeskFailure], Dictionaries | None]:
        """Read every source on the pool: the healthy reads in the order of
        ``sources``, the failures, and the run's Dictionaries.

        With ``shared`` (a run: one source per desk) every desk ingests into
        one Dictionaries, so ingest quarantines a trade id seen on another
        desk as ``duplicate_trade_id``. Which copy counts as "first" would
        then depend on thread timing, so when any duplicate turns up the desks
        are read again one at a time in the order given: the result never
        depends on the threads. Without ``shared`` (history: several days per
        desk, ids may repeat across days) each source has its own Dictionaries
        and the batches are re-coded by :func:`merge_desks`.
        """
        # the pool's ids (and metric labels) are the desk names, or the
        # sources' places when a desk has several (history days)
        unique = len({s.desk for s in sources}) == len(sources)
        by_id = {(s.desk if unique else s.where): s for s in sources}

        def attempt(n_workers: int | None, registry: MetricsRegistry) -> tuple[Any, ...]:
            run_dictionaries = Dictionaries() if shared else None

            def task(key: str) -> DeskRead:
                d = run_dictionaries if run_dictionaries is not None else Dictionaries()
                return read_source(by_id[key], d, chunk_size=chunk_size, progress=progress)

            outcomes = run_tasks(
                list(by_id),
                task,
                max_workers=n_workers,
                deadline_s=self.deadline_s,
                registry=registry,
            )
            return outcomes, run_dictionaries

        if self.inline:
            outcomes, dictionaries = self._read_inline(by_id, chunk_size, progress, shared)
        else:
            outcomes, dictionaries = attempt(self.max_workers, self.registry)
        parallel = len(by_id) > 1 and self.max_workers != 1 and not self.inline
        if (
            shared
            and parallel
            and any(o.ok and o.value.quarantine.counts.get("duplicate_trade_id") for o in outcomes)
        ):
            log.info(
                "duplicate trade ids found: reading the desks again one at a time, in the order "
                "given, so which copy is kept does not depend on thread timing",
                extra={"event": "reread_sequential"},
            )
            if progress is not None:
                progress.reset()
            # the pool's own metrics were counted by the first pass
            outcomes, dictionaries = attempt(1, MetricsRegistry())
        failures = [DeskFailure(by_id[o.key], o.kind, o.error) for o in outcomes if not o.ok]
        reads = [o.value for o in outcomes if o.ok]
        reg = self.registry
        for read in reads:
            desk = read.source.desk
            reg.histogram("surv_decode_seconds", desk=desk).observe(read.seconds)
            reg.counter("surv_trades_decoded_total", desk=desk).inc(len(read.batch))
            for reason, count in read.quarantine.counts.items():
                reg.counter("surv_records_quarantined_total", desk=desk, reason=reason).inc(count)
        return reads, failures, dictionaries

    @staticmethod
    def _read_inline(
        by_id: dict[str, Source], chunk_size: int, progress: Progress | None, shared: bool
    ) -> tuple[list[TaskResult], Dictionaries | None]:
        run_dictionaries = Dictionaries() if shared else None
        outcomes = []
        for key, source in by_id.items():
            d = run_dictionaries if run_dictionaries is not None else Dictionaries()
            t0 = time.perf_counter()
            try:
                read = read_source(source, d, chunk_size=chunk_size, progress=progress)
            except Exception as exc:
                seconds = time.perf_counter() - t0
                outcomes.append(TaskResult(key, None, exc, failure_kind(exc), seconds))
            else:
                outcomes.append(TaskResult(key, read, None, "ok", read.seconds))
        return outcomes, run_dictionaries

    def execute(
        self,
        sources: Sequence[Source],
        detectors: Sequence[Detector],
        baselines: Baselines | None,
        *,
        chunk_size: int,
        progress: Progress | None = None,
    ) -> EngineResult:
        t_start = time.perf_counter()
        reads, failures, dictionaries = self.read(sources, chunk_size=chunk_size, progress=progress)
        t1 = time.perf_counter()
        # desks in the order given; they share the run's dictionaries
        batches = [r.batch for r in reads if len(r.batch)]
        batch = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
        for read in reads:
            read.batch = None  # the run's batch holds the rows now; free the copies
        t2 = time.perf_counter()
        detection = run_detectors(detectors, batch, baselines)
        t3 = time.perf_counter()
        stages = {"ingest": t1 - t_start, "merge": t2 - t1, "detect": t3 - t2}
        return EngineResult(reads, failures, batch, detection, stages)
