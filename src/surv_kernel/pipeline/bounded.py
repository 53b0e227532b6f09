"""The bounded-memory engine: a whole day without ever holding the whole day.

:class:`LocalEngine` merges every desk into one :class:`~surv_kernel.batch.TradeBatch`
and detects over it, so its peak memory follows the day (~420 bytes per
trade: the columns, one Python ``str`` per trade id, the window statistics).
:class:`BoundedEngine` gives the same alerts, alert ids and suppressed
episodes from slices of the day:

0. **repeated ids** (feed files only): see below.
1. **ingest + spill**: each desk is read chunk by chunk (ingest's one set of
   rules, one shared :class:`~surv_kernel.batch.Dictionaries`, desks one
   after another in the order given, which is the order the local engine
   falls back to whenever a duplicate id turns up) and each chunk's rows are
   appended to one of :data:`N_SPILL` spill files on disk by ``trader code
   % N_SPILL``. Trade ids go to the file as one UTF-8 arena plus lengths,
   never one Python ``str`` per trade kept. A desk that fails half way is
   cut back out of the files (a desk is all or nothing, as in the local
   engine).
2. **baselines** (only without ``--baselines``): the spill files are loaded
   a *slice* (a few files, about ``rows_per_slice`` rows) at a time; every
   (trader, asset class) group lives in exactly one slice, and everything
   the day's own baseline of a group needs (its window sums, thinned
   samples, trimmed median and MAD, trades per desk) depends only on that
   group's trades, so the per-group statistics of each slice are exactly
   those of the whole day. The peers and the class dispersion are then taken
   over all groups, as :func:`surv_kernel.model.baselines.baselines_from_batch`
   does, from arrays of O(groups) size.
3. **detection**: each slice again, with those baselines resolved to codes
   (:func:`surv_kernel.model.volume.detect_from_stats`'s ``code_baselines``).
   A verdict needs only the group's own trades and the baselines, so the
   slices' alerts are the day's; they are merged in the day's (start,
   trader, asset class) order.

Why equal bit for bit: inside a group the rows keep their (desk in order
given, feed order) sequence, the window kernel's result depends only on a
group's rows in (time, input) order (see :mod:`surv_kernel.kernels.windows`),
and alert ids hash names, timestamps and trade ids, never codes or rows.

What lives for the whole run (bytes per trade of the day):

- nothing per trade. Ingest's duplicate-id set (:class:`surv_kernel.ingest.TradeIdSet`,
  16-32 bytes per trade, briefly 1.5x that while it doubles) would be the
  one array that follows the day, so for feed files a **pass 0** first
  reads every file once more, writes each record's 64-bit id hash to
  :data:`N_HASH_PARTS` files on disk by its top bits, and keeps, partition
  by partition, the hashes seen more than once; ingest's set then holds
  only those (:class:`RepeatedIdSet`: 8 bytes per repeated id, 16-32 per
  slot). An id seen once in the day cannot be a duplicate nor make another
  record one, so the verdicts are ingest's. Pass 0 costs one more decode of
  the feeds; other sources (a feed call cannot be fetched twice and give
  the same bytes) keep ingest's set of every id (``dedup="memory"``);
- :class:`~surv_kernel.pipeline.totals.DayTotals`, the per-group baselines
  and the spill index are O(groups x desks) and O(chunks); the kept
  quarantine records are capped by ingest.

Per slice (freed before the next): the columns (41 B/row), the id arena
(the ids' UTF-8 bytes + 8 B/row of offsets), the group codes (4 B/row) and
the window statistics (~56 B/row), i.e. about ``rows_per_slice x (110 B +
id length)``. On disk: ~49 B/row + the ids' bytes, deleted at the end.

``RunResult.batch`` of a bounded run holds only the trades of the groups
that have an alert (what the report charts and ``alert_desks`` read), not
the day; the reconciliation reads :class:`~surv_kernel.pipeline.totals.DayTotals`.
A group is never split over slices, so one very large group (a Zipf day's
top trader) sets a floor under the slice size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..batch import COLUMNS, Dictionaries, TradeBatch
from ..errors import ConfigError
from ..ingest import Quarantine, TradeIdSet
from ..kernels import scoring as score_kernels
from ..model import Baselines, Detection
from ..model.baselines import (
    CodeBaselines,
    baseline_stats_with_thinned_mad,
    check_notional,
    effective_peers,  # the same peer lookup the batch path builds (no copy to drift)
    group_codes,
    main_desk_of_counts,
    peer_tables,
    resolve_baselines,
)
from ..model.config import DetectionConfig
from ..model.detector import Detector, VolumeDetector
from ..model.profiles import N_BUCKETS
from ..model.volume import detect_from_stats, floor_rows, floors_of
from ..observability import MetricsRegistry, metrics
from ..windows import window_stats
from .engines import DeskFailure, DeskRead, EngineResult
from .pool import failure_kind
from .sources import FileSource, Progress, Source
from .totals import DayTotals

__all__ = ["DEFAULT_ROWS_PER_SLICE", "N_SPILL", "BoundedEngine", "IdArena", "RepeatedIdSet"]

log = logging.getLogger(__name__)

#: Spill files (groups partitioned by ``trader code % N_SPILL``). Enough that
#: a slice can be a small share of a 20M-trade day; few enough that a small
#: day does not open hundreds of files.
N_SPILL = 64

#: Rows loaded at once (several spill files make one slice).
DEFAULT_ROWS_PER_SLICE = 500_000

# the columns of a spill piece, in file order (the trade ids follow)
_COLUMNS = tuple(COLUMNS.items())  # (name, dtype), the TradeBatch's own
_LENGTH = np.dtype(np.int32)  # bytes of each trade id


class IdArena:
    """Trade ids as one UTF-8 byte arena plus offsets: 8 bytes per id plus its
    bytes, against ~60 for a Python ``str`` and its pointer. Indexing with an
    int gives the ``str``, with an index array an object array of them (what
    detection reads for the few rows of an alert)."""

    __slots__ = ("arena", "offsets")

    def __init__(self, arena: np.ndarray, offsets: np.ndarray) -> None:
        self.arena = arena  # uint8
        self.offsets = offsets  # int64[n + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _one(self, i: int) -> str:
        return self.arena[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += len(self)
            return self._one(i)
        rows = np.arange(len(self))[key]  # index arrays and masks alike
        out = np.empty(len(rows), object)
        for j, i in enumerate(rows.tolist()):
            out[j] = self._one(i)
        return out


def encode_ids(ids: np.ndarray) -> tuple[np.ndarray, bytes]:
    """``(byte lengths int32, UTF-8 arena)`` of an object array of str: one
    join and one encode in C per chunk, never a Python loop per id unless an
    id holds the separator."""
    values = ids.tolist()
    if not values:
        return np.empty(0, _LENGTH), b""
    blob = "\n".join(values).encode("utf-8")
    buf = np.frombuffer(blob, np.uint8)
    seps = np.flatnonzero(buf == 10)
    if len(seps) == len(values) - 1:
        ends = np.append(seps, len(buf))
        starts = np.concatenate(([0], seps + 1))
        lengths = (ends - starts).astype(_LENGTH)
        return lengths, np.delete(buf, seps).tobytes()
    # an id holds a newline: encode one by one (rare, still exact)
    parts = [v.encode("utf-8") for v in values]
    return np.fromiter(map(len, parts), _LENGTH, len(parts)), b"".join(parts)


#: Partitions of pass 0's id hashes on disk (by their top bits).
N_HASH_PARTS = 16
_TOP = np.uint64(64 - 4)  # log2(N_HASH_PARTS) top bits pick the partition


def _as_stored(hashes: np.ndarray) -> np.ndarray:
    # ingest's table stores hash 0 as 1 (0 marks an empty slot), so 0 and 1
    # are one id to it; count them as one here too or the filter could differ
    return np.where(hashes == 0, np.uint64(1), hashes)


class _HashRecorder:
    """Pass 0's stand-in for ingest's duplicate set: writes every record's id
    hash to disk, partitioned by its top bits, and marks nothing duplicate."""

    def __init__(self, root: Path) -> None:
        self.files: list[IO[bytes]] = [
            open(root / f"ids-{i:02d}.bin", "w+b")  # noqa: SIM115 (closed by close())
            for i in range(N_HASH_PARTS)
        ]

    def reserve(self, n: int) -> None:  # ingest sizes its set; nothing to size here
        pass

    def mark_duplicates(self, hashes: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        # every row, not only the candidates: a superset of the ids that can
        # repeat among accepted records is all the filter needs to be exact
        h = _as_stored(np.ascontiguousarray(hashes, np.uint64))
        part = (h >> _TOP).astype(np.intp)
        order = np.argsort(part, kind="stable")
        bounds = np.zeros(N_HASH_PARTS + 1, np.int64)
        np.cumsum(np.bincount(part, minlength=N_HASH_PARTS), out=bounds[1:])
        for i in np.flatnonzero(np.diff(bounds)).tolist():
            self.files[i].write(h[order[bounds[i] : bounds[i + 1]]].tobytes())
        return np.zeros(h.shape[0], np.bool_)

    def repeated(self) -> np.ndarray:
        """The hashes written more than once, sorted (partitions are ranges
        of the top bits, so their sorted results concatenate sorted)."""
        out = []
        for f in self.files:
            f.flush()
            f.seek(0)
            h = np.fromfile(f, np.uint64)
            if len(h):
                uniq, counts = np.unique(h, return_counts=True)
                out.append(uniq[counts > 1])
            del h
        return np.concatenate(out) if out else np.empty(0, np.uint64)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __len__(self) -> int:
        return 0


class RepeatedIdSet(TradeIdSet):
    """Ingest's duplicate-id set holding only the ids that occur more than
    once in the day's feeds (found by pass 0). An id seen once in the whole
    day can never be a duplicate nor make a later record one, so leaving it
    out changes no verdict; the table then follows the repeated ids (none on
    a clean day), not the day's 16-32 bytes per trade."""

    __slots__ = ("_repeated",)

    def __init__(self, repeated: np.ndarray) -> None:
        super().__init__(capacity=2 * len(repeated))
        self._repeated = np.ascontiguousarray(repeated, np.uint64)

    def reserve(self, n: int) -> None:
        # ingest asks for room for every record; at most the repeated ids come in
        super().reserve(min(int(n), len(self._repeated)))

    def mark_duplicates(self, hashes: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        rep = self._repeated
        if not len(rep):
            return np.zeros(hashes.shape[0], np.bool_)
        h = _as_stored(np.ascontiguousarray(hashes, np.uint64))
        at = np.minimum(np.searchsorted(rep, h), len(rep) - 1)
        return super().mark_duplicates(hashes, candidate & (rep[at] == h))


class _Quiet(logging.Filter):
    """Drops ingest's quarantine warnings during pass 0 (pass 1 logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _ingest_quiet() -> Iterator[None]:
    logger = logging.getLogger("surv_kernel.ingest")
    f = _Quiet()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


def _repeated_ids(sources: Sequence[Source], root: Path, chunk_size: int) -> np.ndarray:
    """Pass 0: the id hashes that occur more than once over all the feeds."""
    recorder = _HashRecorder(root)
    scratch = Dictionaries()
    scratch.trade_ids = recorder
    try:
        with _ingest_quiet():
            for source in sources:
                # a feed that fails here fails again in pass 1, which reports it
                with contextlib.suppress(Exception):
                    for _ in source.batches(scratch, chunk_size=chunk_size):
                        pass
        return recorder.repeated()
    finally:
        recorder.close()


class _Spill:
    """The day's rows on disk, partitioned by ``trader % N_SPILL``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[IO[bytes]] = [
            open(root / f"part-{i:03d}.bin", "w+b")  # noqa: SIM115 (closed by close())
            for i in range(N_SPILL)
        ]
        # per file: (offset, rows, arena bytes) of every piece
        self.pieces: list[list[tuple[int, int, int]]] = [[] for _ in range(N_SPILL)]
        self.rows = np.zeros(N_SPILL, np.int64)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def add(self, batch: TradeBatch) -> None:
        """Append a chunk's rows, each to its trader's file, in chunk order."""
        part = batch.trader % N_SPILL
        order = np.argsort(part, kind="stable")  # rows of a file keep feed order
        bounds = np.zeros(N_SPILL + 1, np.int64)
        np.cumsum(np.bincount(part, minlength=N_SPILL), out=bounds[1:])
        for i in np.flatnonzero(np.diff(bounds)).tolist():
            rows = order[bounds[i] : bounds[i + 1]]
            lengths, arena = encode_ids(batch.trade_id[rows])
            f = self.files[i]
            offset = f.seek(0, os.SEEK_END)
            f.write(np.array([len(rows), len(arena)], np.int64).tobytes())
            for name, dtype in _COLUMNS:
                f.write(np.ascontiguousarray(getattr(batch, name)[rows], dtype).tobytes())
            f.write(lengths.tobytes())
            f.write(arena)
            self.pieces[i].append((offset, len(rows), len(arena)))
            self.rows[i] += len(rows)

    def mark(self) -> list[int]:
        return [len(p) for p in self.pieces]

    def rollback(self, mark: list[int]) -> None:
        """Cut every file back to ``mark`` (a desk that failed half way)."""
        for i, keep in enumerate(mark):
            dropped = self.pieces[i][keep:]
            if not dropped:
                continue
            self.files[i].truncate(dropped[0][0])
            self.rows[i] -= sum(n for _, n, _ in dropped)
            del self.pieces[i][keep:]

    def slices(self, rows_per_slice: int) -> list[list[int]]:
        """Consecutive spill files grouped into slices of about
        ``rows_per_slice`` rows (a file is never split: it holds whole groups)."""
        out: list[list[int]] = []
        current: list[int] = []
        held = 0
        for i in np.flatnonzero(self.rows).tolist():
            if current and held + int(self.rows[i]) > rows_per_slice:
                out.append(current)
                current, held = [], 0
            current.append(i)
            held += int(self.rows[i])
        if current:
            out.append(current)
        return out

    def load(self, files: Sequence[int], dictionaries: Dictionaries) -> TradeBatch:
        """The rows of ``files`` as one batch (trade ids in an :class:`IdArena`)."""
        pieces = [(i, p) for i in files for p in self.pieces[i]]
        n = sum(p[1] for _, p in pieces)
        n_bytes = sum(p[2] for _, p in pieces)
        cols = {name: np.empty(n, dtype) for name, dtype in _COLUMNS}
        lengths = np.empty(n, _LENGTH)
        arena = np.empty(n_bytes, np.uint8)
        at = at_b = 0
        for i, (offset, rows, size) in pieces:
            f = self.files[i]
            f.seek(offset + 16)  # past the (rows, arena bytes) header
            for name, _ in _COLUMNS:
                _read_into(f, cols[name][at : at + rows])
            _read_into(f, lengths[at : at + rows])
            _read_into(f, arena[at_b : at_b + size])
            at += rows
            at_b += size
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        del lengths
        return _batch_of(cols, IdArena(arena, offsets), dictionaries)


def _read_into(f: IO[bytes], out: np.ndarray) -> None:
    view = memoryview(out).cast("B")
    got = f.readinto(view)  # type: ignore[attr-defined]
    if got != view.nbytes:
        raise OSError(f"spill file {f.name}: expected {view.nbytes} bytes, read {got}")


def _batch_of(cols: dict[str, np.ndarray], ids: IdArena, d: Dictionaries) -> TradeBatch:
    """A TradeBatch over columns already of the right dtypes, with ids in an
    arena. ``TradeBatch()`` would turn the ids into an object array of str
    (the ~60 bytes per trade this engine exists to avoid), so the slots are
    set directly; every reader of ``trade_id`` indexes it, which the arena
    supports."""
    b = TradeBatch.__new__(TradeBatch)
    for name, _ in _COLUMNS:
        setattr(b, name, cols[name])
    b.trade_id = ids  # type: ignore[assignment]
    b.dictionaries = d
    return b


class BoundedEngine:
    """The day in slices: ingest to spill files, the day's baselines group by
    group, detection slice by slice (see the module doc). Same alerts as
    :class:`~surv_kernel.pipeline.LocalEngine`; desks are read one after
    another in the order given (no per-desk deadline: a stuck feed stalls the
    run, use the local engine where that matters).

    - ``rows_per_slice``: rows loaded at once (default
      ``SURV_BOUNDED_SLICE_ROWS`` or :data:`DEFAULT_ROWS_PER_SLICE`);
    - ``spill_dir``: where the spill files go (default ``SURV_SPILL_DIR`` or
      the system temp directory); they are deleted at the end;
    - ``dedup``: ``"disk"`` (default; feed files only) reads the files once
      more before ingest to find the ids that occur more than once, so the
      duplicate-id set holds only those (:class:`RepeatedIdSet`);
      ``"memory"`` keeps ingest's set of every id (16-32 bytes per trade).
    """

    name = "bounded"

    def __init__(
        self,
        rows_per_slice: int | None = None,
        spill_dir: str | os.PathLike[str] | None = None,
        registry: MetricsRegistry | None = None,
        *,
        dedup: str = "disk",
    ) -> None:
        if dedup not in ("disk", "memory"):
            raise ConfigError(f"dedup must be 'disk' or 'memory', got {dedup!r}")
        self.dedup = dedup
        if rows_per_slice is None:
            rows_per_slice = int(os.environ.get("SURV_BOUNDED_SLICE_ROWS", DEFAULT_ROWS_PER_SLICE))
        if rows_per_slice < 1:
            raise ConfigError(f"rows_per_slice must be >= 1, got {rows_per_slice}")
        self.rows_per_slice = rows_per_slice
        self.spill_dir = spill_dir if spill_dir is not None else os.environ.get("SURV_SPILL_DIR")
        self.registry = registry if registry is not None else metrics

    def execute(
        self,
        sources: Sequence[Source],
        detectors: Sequence[Detector],
        baselines: Baselines | None,
        *,
        chunk_size: int,
        progress: Progress | None = None,
    ) -> EngineResult:
        if len(detectors) != 1 or not isinstance(detectors[0], VolumeDetector):
            raise ConfigError(
                "the bounded-memory engine runs the volume detector alone "
                f"(got {[getattr(d, 'name', d) for d in detectors]}); use the local engine"
            )
        cfg = detectors[0].config
        if cfg.time_of_day:
            # the day's time-of-day factors need every desk's whole day at
            # once (leave-trader-out activity): not computed slice by slice yet
            raise ConfigError(
                "the bounded-memory engine scores without time-of-day factors; run it with "
                "time_of_day=false or use --memory day"
            )
        t0 = time.perf_counter()
        with _spill_dir(self.spill_dir) as root:
            spill = _Spill(root)
            try:
                trade_ids = None  # ingest's own set of every id
                if self.dedup == "disk" and all(isinstance(s, FileSource) for s in sources):
                    # files can be read twice and give the same bytes; a feed
                    # call could not (a second fetch may differ)
                    trade_ids = RepeatedIdSet(_repeated_ids(sources, root, chunk_size))
                t_ids = time.perf_counter()
                reads, failures, dictionaries, totals = self._ingest(
                    sources, spill, chunk_size, progress, trade_ids
                )
                t1 = time.perf_counter()
                slices = spill.slices(self.rows_per_slice)
                if baselines is None:
                    base = self._day_baselines(spill, slices, dictionaries, cfg)
                else:
                    d = dictionaries
                    base = resolve_baselines(
                        baselines, d.trader.values, d.asset_class.values, d.desk.values, cfg
                    )
                t2 = time.perf_counter()
                detection, alerted = self._detect(spill, slices, dictionaries, cfg, base)
                t3 = time.perf_counter()
            finally:
                spill.close()
        log.info(
            "bounded run: %d trades in %d slice(s) of <= ~%d rows",
            totals.n,
            len(slices),
            self.rows_per_slice,
            extra={"event": "bounded_run", "trades": totals.n, "slices": len(slices)},
        )
        stages = {
            "repeated_ids": t_ids - t0,
            "ingest": t1 - t_ids,
            "baselines": t2 - t1,
            "detect": t3 - t2,
        }
        return EngineResult(reads, failures, alerted, detection, stages, totals)

    def _ingest(
        self,
        sources: Sequence[Source],
        spill: _Spill,
        chunk_size: int,
        progress: Progress | None,
        trade_ids: RepeatedIdSet | None,
    ) -> tuple[list[DeskRead], list[DeskFailure], Dictionaries, DayTotals]:
        """Every desk, in order, chunk by chunk into the spill files."""
        dictionaries = Dictionaries()
        dictionaries.trade_ids = trade_ids
        totals = DayTotals(dictionaries)
        reads: list[DeskRead] = []
        failures: list[DeskFailure] = []
        for source in sources:
            mark = spill.mark()
            desk_totals = DayTotals(dictionaries)
            quarantine = Quarantine()
            t0 = time.perf_counter()
            try:
                for batch, q in source.batches(
                    dictionaries, chunk_size=chunk_size, progress=progress
                ):
                    quarantine.extend(q)
                    if len(batch):
                        spill.add(batch)
                        desk_totals.add(batch)
            except Exception as exc:
                spill.rollback(mark)  # all or nothing, as in the local engine
                failures.append(DeskFailure(source, failure_kind(exc), exc))
                continue
            totals.merge(desk_totals)
            reads.append(
                DeskRead(source, None, quarantine, time.perf_counter() - t0, desk_totals.n)
            )
        reg = self.registry
        for read in reads:
            desk = read.source.desk
            reg.histogram("surv_decode_seconds", desk=desk).observe(read.seconds)
            reg.counter("surv_trades_decoded_total", desk=desk).inc(read.trades)
            for reason, count in read.quarantine.counts.items():
                reg.counter("surv_records_quarantined_total", desk=desk, reason=reason).inc(count)
        return reads, failures, dictionaries, totals

    @staticmethod
    def _day_baselines(
        spill: _Spill, slices: list[list[int]], d: Dictionaries, cfg: DetectionConfig
    ) -> CodeBaselines:
        """The day's own baselines, exactly as
        :func:`~surv_kernel.model.baselines.baselines_from_batch` makes them
        from the whole day, one slice at a time (every statistic but the
        peers is per group; the peers are taken over all groups at the end)."""
        n_ac = max(len(d.asset_class), 1)
        n_groups = max(len(d.trader), 1) * n_ac
        desk_names = d.desk.values
        median = np.full(n_groups, np.nan)
        mad = np.full(n_groups, np.nan)
        n_win = np.zeros(n_groups, np.int64)
        m_t = np.full(n_groups, np.nan)
        mad_t = np.full(n_groups, np.nan)
        desk_counts = np.zeros((n_groups, max(len(desk_names), 1)), np.int64)
        need_peers = False
        for files in slices:
            b = spill.load(files, d)
            codes, _, _ = group_codes(b)
            ws = window_stats(codes, b.timestamp_ns, b.notional_usd, cfg.window_ns, n_groups)
            present = np.diff(ws.group_offsets) > 0
            floors = floors_of(b, ws.group_offsets, n_ac)
            _, Fg = floor_rows(ws, floors, n_ac, cfg)
            # trim: the groups with a floor-passing window (detect's choice)
            trim = np.zeros(n_groups, np.bool_)
            trim[Fg] = True
            s = baseline_stats_with_thinned_mad(ws, cfg.scale_rel, trim)
            for whole, part in zip((median, mad, n_win, m_t, mad_t), s, strict=True):
                whole[present] = part[present]
            # the batch path builds peers only when some floor-passing window
            # belongs to a cold or small-sample group; decide on the whole day
            if len(Fg) and np.any(s[2][Fg] < max(cfg.min_windows, cfg.stable_windows)):
                need_peers = True
            score_kernels.group_desk_counts(codes, b.desk, desk_counts)
            del b, codes, ws, s
        own_ok = (n_win >= cfg.min_windows) & np.isfinite(median)
        desk_p: dict[Any, Any] = {}
        class_p: dict[Any, Any] = {}
        if need_peers:
            desk_p, class_p = peer_tables(
                m_t,
                mad_t,
                own_ok,
                own_ok & (n_win >= cfg.stable_windows),
                np.arange(n_groups) % n_ac,
                main_desk_of_counts(desk_counts, desk_names),
                n_ac,
                cfg.min_peer_groups,
                cfg.peer_quantile,
            )
        peers = effective_peers(desk_p, class_p, n_ac, max(len(desk_names), 1), cfg.min_peer_groups)
        n_desk = max(len(desk_names), 1)
        return CodeBaselines(median, mad, n_win, m_t, *peers, np.ones((n_desk, N_BUCKETS)))

    @staticmethod
    def _detect(
        spill: _Spill,
        slices: list[list[int]],
        d: Dictionaries,
        cfg: DetectionConfig,
        base: CodeBaselines,
    ) -> tuple[Detection, TradeBatch]:
        """Detection slice by slice; the alerts in the day's order and the
        trades of the alerted groups (for the report and ``alert_desks``)."""
        n_ac = max(len(d.asset_class), 1)
        n_groups = max(len(d.trader), 1) * n_ac
        alerts: list[Any] = []
        suppressed: list[Any] = []
        n_floor = 0
        n_rows = 0
        kept: list[TradeBatch] = []
        for files in slices:
            b = spill.load(files, d)
            n_rows += len(b)  # counted from what came back from disk
            check_notional(b)
            codes, _, _ = group_codes(b)
            ws = window_stats(codes, b.timestamp_ns, b.notional_usd, cfg.window_ns, n_groups)
            det = detect_from_stats(b, ws, codes, cfg, code_baselines=base)
            alerts.extend(det.alerts)
            suppressed.extend(det.suppressed)
            n_floor += det.n_floor_episodes
            if det.alerts:
                groups = {
                    d.trader.get(a.trader_id) * n_ac + d.asset_class.get(a.asset_class)
                    for a in det.alerts
                }
                rows = np.flatnonzero(np.isin(codes, np.fromiter(groups, np.int64)))
                kept.append(b.take(rows))
            del b, codes, ws

        # each slice's lists are in (start, trader, asset class) order, the
        # day's order (detect's lexsort over name ranks); a stable sort merges
        def key(x: Any) -> tuple[Any, ...]:
            return (x.start_ns, x.trader_id, x.asset_class)

        alerts.sort(key=key)
        suppressed.sort(key=key)
        alerted = TradeBatch.concat(kept) if kept else TradeBatch.empty(d)
        return Detection(alerts, suppressed, n_rows, n_floor), alerted


@contextlib.contextmanager
def _spill_dir(parent: str | os.PathLike[str] | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="surv-bounded-", dir=parent) as tmp:
        yield Path(tmp)
