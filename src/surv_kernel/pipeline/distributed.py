"""The Dask engine: one run's detection spread over ``dask.distributed`` workers.

Why it is exact. With baselines *given*, a window's verdict and everything an
alert carries depend only on the baselines and the trades of the window's own
(trader, asset class) group in ``[t - W, t]`` (the model's "Locality"
paragraph, :mod:`surv_kernel.model`; a cold group's peer lookup uses the
trade's own desk and the given peer tables, never the other groups of the
day). So the day is split by a hash of each group's *names* into partitions,
every group whole in exactly one partition, and each partition runs the same
detectors (:func:`~surv_kernel.model.detector.run_detectors`, the same
kernels) over its groups. The union of the partitions' alerts is then the
alerts of the whole day; merged in the model's (start, trader, asset class,
alert id) order they are the local engine's list, record for record. Alert
ids hash names, timestamps and trade ids only (never dictionary codes or row
positions), so they do not change either. A partition boundary never cuts a
group, so it never cuts an episode. Episodes that cross midnight are exact
when the days they span are in one run (one ``execute``); a backtest runs a
day at a time, as the live system does, so an episode open at midnight is
judged by each day on its own trades, the same on both engines.

Same-day baselines (``baselines=None``) are refused with a
:class:`~surv_kernel.errors.ConfigError`, not emulated: without baselines the
model takes each group's normal from the day itself *and* its peer baselines
from every group of the day, which no partition sees. Calibrating on the day
first and then detecting with those baselines would be a different model
(the trim and fallbacks differ), so its alerts would not be the local
engine's; a backtest always has baselines (given, or calibrated on earlier
days), which is the case this engine is for.

How it runs, per :meth:`DaskEngine.execute`:

1. one task reads every source of the run on a worker, in the order given,
   into one shared :class:`~surv_kernel.batch.Dictionaries` (exactly
   :meth:`LocalEngine.read` inline: ingest quarantines a trade id seen on an
   earlier desk as ``duplicate_trade_id``, and which copy is first never
   depends on timing), and splits the rows into ``partitions`` pieces by group
   hash; the pieces stay on that worker;
2. one task per partition takes its piece (Dask moves only that piece to the
   worker that runs it: the shuffle) and runs the detectors with the
   baselines; it returns only its results: alerts, suppressed episodes, the
   counts, and the few trades the alerts name (for the alerts' desks);
3. the client merges the partitions' results deterministically.

:meth:`DaskEngine.submit` puts a run's tasks on the cluster without waiting
(:meth:`~DaskEngine.execute` is submit + wait), so a backtest keeps a few days
in flight, one reading while another detects, and a calibration can be a
future the detection tasks wait for on the cluster (:meth:`~DaskEngine.call_later`).

Workers are the processes of a ``LocalCluster`` by default, or an existing
cluster's (``scheduler`` address, or a ``client``); every worker must have the
same surv_kernel installed. A worker process loads each kernel once, from the
Numba cache written at install (``make install`` warms it), when the engine
starts (:func:`warm_worker`); no task compiles anything
(:func:`kernel_cache_stats` shows it, and the tests check it).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..batch import Dictionaries, TradeBatch
from ..errors import ConfigError
from ..model import Baselines, Detection
from ..model.detector import Detector, run_detectors
from ..observability import MetricsRegistry
from .engines import DeskFailure, DeskRead, EngineResult, LocalEngine, merge_batches
from .sources import Progress, Source

__all__ = [
    "DaskEngine",
    "PartitionResult",
    "PendingRun",
    "group_partitions",
    "kernel_cache_stats",
    "merge_partitions",
    "split_by_group",
    "warm_worker",
]

log = logging.getLogger(__name__)

#: What a missing extra says (the CLI prints it as the one error line).
NEEDS_EXTRA = (
    "the Dask engine needs the 'dask' extra, which is not installed: "
    "pip install 'surv_kernel[dask]' (or use --engine local)"
)


def require_distributed() -> Any:
    """``dask.distributed``, or a ConfigError naming the extra."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(NEEDS_EXTRA) from None
    return distributed


# -- the shuffle: rows -> partitions by a stable hash of the group's names ------------


def group_partitions(batch: TradeBatch, partitions: int) -> np.ndarray:
    """Per row, its partition ``0..partitions-1``: CRC-32 of ``trader + "\\x1f"
    + asset class`` modulo ``partitions``.

    Names, not codes: dictionary codes are first-seen order of one process's
    read, and Python's ``hash`` of a str is salted per process, so neither
    would put a group in the same partition on every worker and every run.
    The unit separator keeps ("ab", "c") and ("a", "bc") apart. One CRC per
    *group* (not per row): a day has far fewer groups than trades.
    """
    if not (isinstance(partitions, int) and partitions >= 1):
        raise ConfigError(f"partitions must be an int >= 1, got {partitions!r}")
    if len(batch) == 0:
        return np.zeros(0, np.int64)
    d = batch.dictionaries
    n_ac = max(len(d.asset_class), 1)
    codes = batch.trader.astype(np.int64) * n_ac + batch.asset_class
    groups, inverse = np.unique(codes, return_inverse=True)
    traders, acs = d.trader.values, d.asset_class.values
    part = np.fromiter(
        (zlib.crc32(f"{traders[g // n_ac]}\x1f{acs[g % n_ac]}".encode()) for g in groups.tolist()),
        np.int64,
        len(groups),
    )
    return (part % partitions)[inverse.ravel()]


def _portable(batch: TradeBatch) -> TradeBatch:
    """``batch`` with Dictionaries that do not carry the run's accepted trade
    id set (ingest's duplicate filter, O(trades) of memory): a partition
    shipped to another worker needs the names, not the filter."""
    d = batch.dictionaries
    if d.trade_ids is None:
        return batch
    light = Dictionaries()
    light.trader, light.asset_class, light.currency, light.desk = (
        d.trader,
        d.asset_class,
        d.currency,
        d.desk,
    )
    return TradeBatch(
        timestamp_ns=batch.timestamp_ns,
        notional_usd=batch.notional_usd,
        notional=batch.notional,
        trader=batch.trader,
        asset_class=batch.asset_class,
        currency=batch.currency,
        desk=batch.desk,
        surveillance_required=batch.surveillance_required,
        trade_id=batch.trade_id,
        dictionaries=light,
    )


def split_by_group(batch: TradeBatch, partitions: int) -> list[TradeBatch]:
    """``batch`` as ``partitions`` batches by :func:`group_partitions`, each
    keeping the rows' input order (a stable sort), so a group's rows reach its
    detector in the order the local engine gives them."""
    batch = _portable(batch)
    part = group_partitions(batch, partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    return [batch.take(order[bounds[p] : bounds[p + 1]]) for p in range(partitions)]


# -- worker side ---------------------------------------------------------------------


class _Split(NamedTuple):
    reads: list[DeskRead]  # batch=None: the rows are in the pieces
    failures: list[DeskFailure]
    pieces: list[TradeBatch]


def _read_and_split(sources: Sequence[Source], partitions: int, chunk_size: int) -> _Split:
    """Task: read the run's sources like the local engine (inline, in order,
    one shared Dictionaries) and split the merged day by group."""
    reader = LocalEngine(inline=True, registry=MetricsRegistry())
    reads, failures, dictionaries = reader.read(sources, chunk_size=chunk_size)
    batches = [r.batch for r in reads if len(r.batch)]
    day = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
    for read in reads:
        read.batch = None
    return _Split(reads, failures, split_by_group(day, partitions))


def _split_meta(split: _Split) -> tuple[list[DeskRead], list[DeskFailure]]:
    return split.reads, split.failures


def _split_piece(split: _Split, p: int) -> TradeBatch:
    return split.pieces[p]


class PartitionResult(NamedTuple):
    """What a partition sends back: its detection, and the trades its alerts
    name (so the client can say which desks booked each alert) - never the
    partition's rows."""

    detection: Detection
    alert_trades: TradeBatch


def detect_partition(
    piece: TradeBatch, detectors: Sequence[Detector], baselines: Baselines
) -> PartitionResult:
    """Task: the detectors over one partition, as the local engine runs them."""
    detection = run_detectors(detectors, piece, baselines)
    wanted = {t for a in detection.alerts for t in a.trades}
    if wanted:
        ids = piece.trade_id
        rows = np.flatnonzero(np.fromiter((t in wanted for t in ids), np.bool_, len(ids)))
    else:
        rows = np.zeros(0, np.int64)
    return PartitionResult(detection, piece.take(rows))


def merge_partitions(results: Sequence[PartitionResult]) -> tuple[Detection, TradeBatch]:
    """One detection from the partitions' (see the module docstring): alerts
    by (start, trader, asset class, alert id), suppressed episodes by (start,
    trader, asset class), the sort :func:`run_detectors` and ``detect`` use.
    Keys tie only inside one group, i.e. one partition, whose own order the
    stable sort keeps. Also the alerts' trades, re-coded into one Dictionaries."""

    def key(x: Any) -> tuple[Any, ...]:
        return (x.start_ns, x.trader_id, x.asset_class)

    parts = [r.detection for r in results]
    detection = Detection(
        sorted((a for p in parts for a in p.alerts), key=lambda a: (*key(a), a.alert_id)),
        sorted((s for p in parts for s in p.suppressed), key=key),
        sum(p.n_trades for p in parts),
        sum(p.n_floor_episodes for p in parts),
    )
    trades = merge_batches([r.alert_trades for r in results if len(r.alert_trades)])
    return detection, trades


def kernel_cache_stats() -> dict[str, tuple[int, int, int]]:
    """Per jitted kernel of this process: ``(signatures, cache hits, cache
    misses)``. A miss is a compilation (nothing usable in the Numba cache); a
    hit a load from it. Run on every worker with ``client.run``."""
    from numba.core.registry import CPUDispatcher

    from ..kernels import scoring, stats, windows

    out = {}
    for module in (scoring, stats, windows):
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__:
                s = obj.stats
                out[f"{module.__name__}.{name}"] = (
                    len(obj.signatures),
                    sum(s.cache_hits.values()),
                    sum(s.cache_misses.values()),
                )
    return out


def warm_worker() -> float:
    """Load every kernel into this (worker) process from the Numba cache, as
    ``make install`` does for the host; seconds taken."""
    from ..legacy.desks import warm_up

    return warm_up()


# -- the engine ----------------------------------------------------------------------


class DaskEngine:
    """The pipeline's engine on ``dask.distributed`` (see the module docstring).

    - ``client``: an existing ``distributed.Client`` (not closed by the
      engine); else ``scheduler``: an existing cluster's address
      (``tcp://host:8786``); else a new ``LocalCluster`` of ``n_workers``
      worker *processes* (one thread each: the kernels are single-threaded
      and the GIL would serialise Python parts of threads), closed with the
      engine.
    - ``partitions``: pieces per run (default ``2 x workers``, so a slow
      partition does not leave a worker idle); any count gives the same alerts.
    - ``progress``: show Dask's progress bar for the detection tasks.
    - ``warm``: load the kernels on every worker at start (:func:`warm_worker`);
      ``connect_timeout_s``: how long to wait for a ``scheduler``.

    ``EngineResult.batch`` holds only the trades the alerts name (what the
    alerts' desks are computed from), not the day: the day's rows never come
    back to the client. ``detection.n_trades`` counts the day's trades.
    """

    name = "dask"

    def __init__(
        self,
        *,
        client: Any = None,
        scheduler: str | None = None,
        n_workers: int = 2,
        partitions: int | None = None,
        progress: bool = False,
        warm: bool = True,
        connect_timeout_s: float = 10.0,
    ) -> None:
        distributed = require_distributed()
        if partitions is not None and not (isinstance(partitions, int) and partitions >= 1):
            raise ConfigError(f"partitions must be an int >= 1, got {partitions!r}")
        self._cluster = None
        self._own_client = client is None
        if client is None:
            if scheduler:
                try:
                    client = distributed.Client(scheduler, timeout=connect_timeout_s)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot reach the Dask scheduler at {scheduler!r}: {exc}; check the "
                        "address (tcp://HOST:PORT) or leave --scheduler out for a local cluster"
                    ) from None
            else:
                if not (isinstance(n_workers, int) and n_workers >= 1):
                    raise ConfigError(f"n_workers must be an int >= 1, got {n_workers!r}")
                self._cluster = distributed.LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    # a free port: several engineers (or runs) share a host
                    dashboard_address=":0",
                )
                client = distributed.Client(self._cluster)
        self.client = client
        self.partitions = partitions
        self.show_progress = progress
        self.warm_seconds: dict[str, float] = {}
        if warm:
            # every worker loads the kernels now, once, not inside the first task
            self.warm_seconds = client.run(warm_worker)
        log.info(
            "dask engine: %d worker(s), dashboard %s",
            self.n_workers,
            self.dashboard_link,
            extra={"event": "dask_engine", "dashboard": self.dashboard_link},
        )

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing): say so, do not fail
            return None

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on a worker, its result here: work whose input must
        not come to this process (a backtest's calibration reads N days on a
        worker and sends back only the baselines)."""
        return self.client.submit(fn, *args, pure=False).result()

    def call_later(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on a worker, as a future: pass it to :meth:`submit`
        as the baselines (the detection tasks wait for it on the cluster, the
        baselines never come here) or call ``.result()``."""
        return self.client.submit(fn, *args, pure=False)

    def execute(
        self,
        sources: Sequence[Source],
        detectors: Sequence[Detector],
        baselines: Baselines | None,
        *,
        chunk_size: int,
        progress: Progress | None = None,
    ) -> EngineResult:
        """Read, shuffle, detect per partition, merge (the module docstring).
        ``progress`` (per-desk read progress) is not drawn: the sources are
        read on a worker."""
        return self.submit(sources, detectors, baselines, chunk_size=chunk_size).result()

    def submit(
        self,
        sources: Sequence[Source],
        detectors: Sequence[Detector],
        baselines: Any,
        *,
        chunk_size: int,
    ) -> PendingRun:
        """:meth:`execute` without waiting: the run's tasks are on the cluster
        when this returns, so a backtest keeps several days in flight (one
        day reads on a worker while another detects) and collects them in
        date order. ``baselines``: Baselines, or a future of them
        (:meth:`call_later`)."""
        if baselines is None:
            raise ConfigError(
                "the Dask engine needs baselines (--baselines FILE or --rolling-calibration N): "
                "without them the model takes peer baselines from every group of the day at "
                "once, which no partition sees; use --engine local for same-day baselines"
            )
        if not detectors:
            raise ValueError("no detector to run; pass at least one (see DETECTORS)")
        distributed = require_distributed()
        client = self.client
        n_parts = self.partitions or max(1, 2 * self.n_workers)
        t0 = time.perf_counter()
        split = client.submit(_read_and_split, list(sources), n_parts, chunk_size, pure=False)
        meta = client.submit(_split_meta, split, pure=False)
        # sent to the cluster once, not once per task (a future stays as it is)
        if isinstance(baselines, distributed.Future):
            (dets,) = client.scatter([list(detectors)], hash=False)
            base = baselines
        else:
            dets, base = client.scatter([list(detectors), baselines], hash=False)
        results = [
            client.submit(
                detect_partition,
                client.submit(_split_piece, split, p, pure=False),
                dets,
                base,
                pure=False,
            )
            for p in range(n_parts)
        ]
        return PendingRun(self, meta, base, results, t0)


class PendingRun:
    """A run submitted to the cluster (:meth:`DaskEngine.submit`)."""

    def __init__(
        self, engine: DaskEngine, meta: Any, baselines: Any, results: list[Any], t0: float
    ) -> None:
        self.engine = engine
        self.baselines = baselines  # the future: .result() raises what calibration raised
        self._meta = meta
        self._results = results
        self._t0 = t0

    def result(self) -> EngineResult:
        """Wait for the run; its :class:`EngineResult` (merged as in the
        module docstring). Raises what a task raised (a calibration's
        DataError, an unknown asset class, ...)."""
        reads, failures = self._meta.result()
        t1 = time.perf_counter()
        if self.engine.show_progress:
            require_distributed().progress(self._results)
        parts = self.engine.client.gather(self._results)
        t2 = time.perf_counter()
        detection, trades = merge_partitions(parts)
        # the futures go: the scheduler frees the day's pieces on the workers
        self._meta = self._results = self.baselines = None
        stages = {"ingest": t1 - self._t0, "detect": t2 - t1, "merge": time.perf_counter() - t2}
        return EngineResult(reads, failures, trades, detection, stages)
