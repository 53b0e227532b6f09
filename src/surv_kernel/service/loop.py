"""The service loop: desk files -> event-time merge -> SurveillanceStream -> sink.

One thread drives everything (a :class:`~surv_kernel.stream.SurveillanceStream`
is not thread-safe); the HTTP endpoint only reads a snapshot the loop
publishes. Each cycle:

1. **read**: every desk source hands out its complete new lines (at most
   ``max_read`` bytes per desk per cycle, so one busy desk cannot starve the
   others or grow a push without bound);
2. **merge by event time**: each desk's lines are decoded with the stream's
   dictionaries (ingest checks values and duplicate trade ids), the desks'
   trades are concatenated and stably sorted by timestamp, and pushed as one
   batch. Desks read in the same cycle therefore interleave by event time
   instead of one desk's chunk making the others "late". With a backlog (a
   restart after downtime: files longer than one read), reads of different
   desks cover different spans of event time, so the merge is aligned: the
   *merge frontier* is the smallest newest-timestamp read among the desks
   whose read stopped at ``max_read`` (they have more data already written);
   only trades up to the frontier are pushed, the rest wait in the *held*
   rows (saved in the checkpoint: their ids are already in the duplicate
   set, so they cannot be read again), and a desk already past the frontier
   is not read until the others catch up (so the held rows stay within about
   one read per desk). Caught-up (live) desks do not hold the frontier back.
   Across cycles the stream's lateness allowance (``--lateness``, default
   60 s) absorbs disorder: a desk may run that far behind the newest trade of
   any desk and still be on time. A desk further behind (a stalled upstream
   catching up) gets ``late_trade`` quarantines, counted per desk in the
   metrics and the health report, never dropped silently;
3. **heartbeat**: when no desk had new data for ``heartbeat_after`` seconds,
   the event clock is advanced with :meth:`~SurveillanceStream.advance_to`:
   the newest trade's timestamp plus the wall time elapsed since it was read
   (in a live market that is "now"; on a replayed day it moves on from the
   day's last trade at wall speed). That closes episodes in quiet markets;
4. **publish**: the stream's alert events become :class:`ServiceEvent` s
   (alert id + revision) and go to the sink;
5. **checkpoint** every ``checkpoint_every`` seconds (and at stop): the
   sink is committed first (events durable), then the state file is written
   atomically (temporary file, fsync, rename, fsync of the directory).

State file (``STATE/checkpoint``, sealed: :mod:`surv_kernel.sealed`, kind
``surv_kernel.service``) holds the sealed stream checkpoint (window state
and the duplicate trade-id set), every source's cursor (inode, byte offset),
the sink position, and for every alert not yet closed its last published
revision.

No lost, no duplicate alert event across a kill -9
--------------------------------------------------
A checkpoint covers exactly the lines before the cursors it holds, and the
events those lines produced were committed to the sink before it was written.
After a crash the service restores the last checkpoint and reads the files on
from its cursors, so every line after it is processed again (nothing is
lost), and the events it produces again are recognised against what the sink
already holds (``recover``: events after the checkpoint's position) and the
checkpoint's revisions:

- ``open`` of an alert already published: skipped;
- ``closed``/``withdrawn`` of an alert already terminal: skipped;
- ``update``: skipped unless it is newer than the last published state of the
  alert, by ``(end_ns, peak_ns, peak_window_sum_usd)`` (an episode only grows
  while its trades arrive in time order); otherwise published with the next
  revision.

Terminal alerts are forgotten at the next checkpoint once this process's
stream produced their terminal event (a stream restored from that checkpoint
has closed them too); one known only from the sink stays, in memory and in
the checkpoints, until the replay reaches it. Without a checkpoint (first
start, or a state directory moved aside) ``recover(None)`` reads the whole
sink, so even a fresh state publishes nothing twice.

Why not replay identically: the stream's ``open``/``update`` events depend on
how trades were split into pushes, and that depends on timing; the closed
alert does not (it equals batch detection). So the guarantee is stated on
what is deterministic: across any number of kill -9 and restarts, each alert
id gets exactly one ``open`` and one terminal event, revisions strictly
increase per alert id, ``(alert_id, revision)`` never repeats, and the closed
alerts (ids and content) equal those of an uninterrupted run on the same
lines. The intermediate ``update`` s may differ in number (each is a valid
snapshot of the episode, newer than the one before).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from .. import dtypes
from ..batch import Dictionaries, TradeBatch
from ..errors import InputError, OutputError
from ..ingest import FeedError, decode_feed
from ..model import Baselines, DetectionConfig
from ..observability import LATENCY_BUCKETS, METRICS, MetricsRegistry
from ..observability import metrics as _global_metrics
from ..sealed import SealError, seal, unseal
from ..stream import AlertEvent, SurveillanceStream
from .sinks import EventSink, ServiceEvent
from .sources import Cursor, TailSource, discover

__all__ = ["Service", "ServiceConfig"]

log = logging.getLogger(__name__)

_STATE_KIND = "surv_kernel.service"
_STATE_FORMAT = 1
STATE_FILE = "checkpoint"
_TERMINAL = ("closed", "withdrawn")
_TS_MIN = -(2**63)

#: Trade -> alert latency (seconds): the service's SLA is seconds, not the
#: batch pipeline's minutes, so the buckets are fine below 5 s.
SERVICE_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
                           10.0, 30.0, 60.0, 300.0)  # fmt: skip

# The service's metric families, with their help text (observability.METRICS
# is the one list of known families; the service adds its own to it).
METRICS.update(
    {
        "surv_service_trades_total": (
            "counter",
            ("desk",),
            "Trades read and accepted by ingest (pushed, or held to the merge frontier).",
        ),
        "surv_service_lines_total": ("counter", ("desk",), "NDJSON lines read from desk files."),
        "surv_service_bytes_total": ("counter", ("desk",), "Bytes of complete lines read."),
        "surv_service_quarantined_total": (
            "counter",
            ("desk", "reason"),
            "Desk lines not accepted, by reason (ingest reasons and late_trade).",
        ),
        "surv_service_events_total": (
            "counter",
            ("status",),
            "Alert events published, by status (open, update, closed, withdrawn).",
        ),
        "surv_service_events_skipped_total": (
            "counter",
            ("status",),
            "Replayed alert events recognised as already published after a restart.",
        ),
        "surv_service_alert_latency_seconds": (
            "histogram",
            (),
            "Seconds from the trade timestamp that opened or grew an alert to its event "
            "being written to the sink.",
        ),
        "surv_service_desk_last_data_age_seconds": (
            "gauge",
            ("desk",),
            "Seconds since new lines last arrived in the desk's file (silence detection).",
        ),
        "surv_service_desk_lag_seconds": (
            "gauge",
            ("desk",),
            "Wall clock minus the desk's newest trade timestamp (upstream publish lag).",
        ),
        "surv_service_desk_bytes_behind": (
            "gauge",
            ("desk",),
            "Bytes of the desk's file not read yet (queueing in front of the service).",
        ),
        "surv_service_desk_silent": (
            "gauge",
            ("desk",),
            "1 if the desk had no new data for --silence-after seconds.",
        ),
        "surv_service_cycle_seconds": (
            "histogram",
            (),
            "Wall time of one read-merge-push-publish cycle that had data.",
        ),
        "surv_service_checkpoint_seconds": (
            "histogram",
            (),
            "Wall time of one checkpoint: sink commit, snapshot, state file written and synced.",
        ),
        "surv_service_checkpoint_pause_seconds": (
            "histogram",
            (),
            "The part of a checkpoint the loop waits for (sink commit and snapshot); the state "
            "file is written from a background thread.",
        ),
        "surv_service_last_checkpoint_timestamp_seconds": (
            "gauge",
            (),
            "Unix time of the last checkpoint written.",
        ),
        "surv_service_source_resets_total": (
            "counter",
            ("desk", "kind"),
            "Desk files rotated or truncated (read again from byte 0).",
        ),
    }
)


class _SourceState(msgspec.Struct, frozen=True, array_like=True):
    desk: str
    inode: int
    offset: int
    tail: bytes  # Cursor.tail


class _Published(msgspec.Struct, frozen=True, array_like=True):
    alert_id: str
    revision: int
    status: str
    end_ns: int
    peak_ns: int
    peak_sum: float
    #: the stream of this state produced the event (False: only read back
    #: from the sink; a terminal one is kept until the replay reaches it)
    confirmed: bool


class _Held(msgspec.Struct, frozen=True):
    """Rows read (their cursors passed, their ids in the duplicate set) but
    not pushed yet: past the merge frontier. Names, not codes."""

    timestamp_ns: bytes  # <i8
    notional_usd: bytes  # <f8
    notional: bytes  # <f8
    surveillance_required: bytes  # |b1
    trader: list[str]
    asset_class: list[str]
    currency: list[str]
    desk: list[str]
    trade_id: list[str]


class _State(msgspec.Struct, frozen=True):
    stream: bytes  # a sealed SurveillanceStream checkpoint
    sources: list[_SourceState]
    sink_position: int | None
    published: list[_Published]  # alerts not terminal, or terminal and not yet replayed
    written_at: float
    held: _Held
    frontier_ns: int | None


def _held_state(b: TradeBatch) -> _Held:
    d = b.dictionaries
    return _Held(
        b.timestamp_ns.astype("<i8").tobytes(),
        b.notional_usd.astype("<f8").tobytes(),
        b.notional.astype("<f8").tobytes(),
        b.surveillance_required.astype("|b1").tobytes(),
        d.trader.decode(b.trader),
        d.asset_class.decode(b.asset_class),
        d.currency.decode(b.currency),
        d.desk.decode(b.desk),
        b.trade_id.tolist(),
    )


def _held_batch(h: _Held, d: Dictionaries) -> TradeBatch:
    def codes(names: list[str], dictionary: Any) -> np.ndarray:
        return np.array([dictionary.code(x) for x in names], dtypes.CODE)

    return TradeBatch(
        timestamp_ns=np.frombuffer(h.timestamp_ns, "<i8").astype(np.int64),
        notional_usd=np.frombuffer(h.notional_usd, "<f8").astype(np.float64),
        notional=np.frombuffer(h.notional, "<f8").astype(np.float64),
        surveillance_required=np.frombuffer(h.surveillance_required, "|b1").astype(np.bool_),
        trader=codes(h.trader, d.trader),
        asset_class=codes(h.asset_class, d.asset_class),
        currency=codes(h.currency, d.currency),
        desk=codes(h.desk, d.desk),
        trade_id=np.array([*h.trade_id, None], object)[:-1],
        dictionaries=d,
    )


class ServiceConfig(msgspec.Struct, frozen=True):
    """The service's knobs (the CLI's options, see ``surv-kernel serve --help``)."""

    feeds: str
    state: str
    lateness_s: float = 60.0
    checkpoint_every_s: float = 10.0
    silence_after_s: float = 300.0
    poll_interval_s: float = 0.05
    heartbeat_after_s: float = 2.0
    max_read_bytes: int = 8 << 20


class Service:
    """The loop (see the module docstring). ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        cfg: ServiceConfig,
        sink: EventSink,
        detection: DetectionConfig | None = None,
        baselines: Baselines | None = None,
        *,
        metrics: MetricsRegistry = _global_metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.feeds = Path(cfg.feeds)
        self.state_dir = Path(cfg.state)
        if not self.feeds.is_dir():
            raise InputError(f"--feeds {cfg.feeds} is not a directory")
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create --state {cfg.state}: {exc.strerror}") from None
        self.sources: dict[str, TailSource] = {}
        self._published: dict[str, _Published] = {}
        self._last_data: dict[str, float] = {}
        self._newest_ts: dict[str, int] = {}
        self._started = clock()
        self._last_ckpt = self._started
        self._last_any_data = self._started
        self._last_data_max_ts: int | None = None
        self.status = "STARTING"
        self.health: dict[str, Any] = {"status": "STARTING", "desks": {}}
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._writer_error: OutputError | None = None
        self._held: TradeBatch | None = None
        self._frontier: int | None = None  # the merge frontier (None: no backlog)
        self.stream, cursors, position, published = self._restore(detection, baselines)
        self._cursors = cursors
        # heartbeats resume from the restored watermark (a quiet market after
        # a restart still closes its episodes)
        self._last_data_max_ts = self.stream.watermark_ns
        self._published = {p.alert_id: p for p in published}
        for e in sink.recover(position):
            self._note(e)
        self._discover()

    # -- start-up ---------------------------------------------------------------------------

    def _restore(
        self, detection: DetectionConfig | None, baselines: Baselines | None
    ) -> tuple[SurveillanceStream, dict[str, Cursor], int | None, list[_Published]]:
        path = self.state_dir / STATE_FILE
        lateness_ns = int(round(self.cfg.lateness_s * dtypes.NS_PER_SECOND))
        if not path.exists():
            stream = SurveillanceStream(
                detection, baselines, lateness_ns=lateness_ns, metrics=self.metrics, name="serve"
            )
            log.info(
                "no checkpoint in %s: starting from byte 0 of every desk file",
                path.parent,
                extra={"event": "service_fresh_start"},
            )
            return stream, {}, None, []
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        payload = unseal(data, _STATE_KIND, _STATE_FORMAT, f"service checkpoint {path}")
        try:
            st = msgspec.msgpack.decode(payload, type=_State)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # the digest matched: a writer's bug, not damage
            raise SealError(f"service checkpoint {path} does not decode: {exc}") from None
        stream = SurveillanceStream.restore(st.stream, metrics=self.metrics)
        if stream.lateness_ns != lateness_ns:
            log.warning(
                "the checkpoint's lateness allowance (%g s) is kept; --lateness %g s applies "
                "to a new state only",
                stream.lateness_ns / dtypes.NS_PER_SECOND,
                self.cfg.lateness_s,
            )
        if baselines is not None and stream.baselines != baselines:
            log.warning("--baselines differ from the checkpoint's; the checkpoint's are kept")
        cursors = {s.desk: Cursor(s.inode, s.offset, s.tail) for s in st.sources}
        held = _held_batch(st.held, stream.dictionaries)
        self._held = held if len(held) else None
        self._frontier = st.frontier_ns
        log.info(
            "restored %s (written %.1f s ago): %d desks, %d open alerts",
            path,
            self.clock() - st.written_at,
            len(cursors),
            len(st.published),
            extra={"event": "service_restored"},
        )
        return stream, cursors, st.sink_position, list(st.published)

    def _discover(self) -> None:
        for desk in discover(self.feeds):
            if desk not in self.sources:
                self.sources[desk] = TailSource(
                    desk, self.feeds / f"{desk}.ndjson", self._cursors.pop(desk, None)
                )
                self._last_data.setdefault(desk, self.clock())
                log.info("desk %s: tailing %s", desk, self.sources[desk].path)

    # -- publishing -------------------------------------------------------------------------

    def _note(self, e: ServiceEvent) -> None:
        """Record an event the sink holds (recovered) as published."""
        a = e.alert
        self._published[e.alert_id] = _Published(
            e.alert_id,
            e.revision,
            e.status,
            int(a["end_ns"]),
            int(a["peak_ns"]),
            float(a["peak_window_sum_usd"]),
            False,
        )

    def _publish(self, events: list[AlertEvent], now: float) -> list[ServiceEvent]:
        out: list[ServiceEvent] = []
        m = self.metrics
        for e in events:
            a = e.alert
            pub = self._published.get(e.episode_id)
            key = (a.end_ns, a.peak_ns, a.peak_window_sum_usd)
            skip = False
            if pub is not None and pub.status in _TERMINAL:
                skip = True
                if not pub.confirmed:  # the replay reached it: prunable now
                    self._published[e.episode_id] = msgspec.structs.replace(pub, confirmed=True)
            elif e.status == "open":
                skip = pub is not None
            elif e.status == "update" and pub is not None:
                skip = key <= (pub.end_ns, pub.peak_ns, pub.peak_sum)
            if skip:
                m.counter("surv_service_events_skipped_total", status=e.status).inc()
                continue
            rev = 0 if pub is None else pub.revision + 1
            self._published[e.episode_id] = _Published(e.episode_id, rev, e.status, *key, True)
            out.append(ServiceEvent(e.episode_id, rev, e.status, now, a.to_dict()))
            m.counter("surv_service_events_total", status=e.status).inc()
        return out

    # -- one cycle --------------------------------------------------------------------------

    def step(self) -> bool:
        """One read-merge-push-publish cycle; True if any desk had new lines."""
        t0 = time.perf_counter()
        self._discover()
        d = self.stream.dictionaries
        m = self.metrics
        batches: list[TradeBatch] = []
        desks: list[str] = []
        read_any = False
        for desk, src in self.sources.items():
            if self._frontier is not None and self._newest_ts.get(desk, _TS_MIN) > self._frontier:
                continue  # ahead of the merge frontier: let the other desks catch up
            chunk = src.poll(self.cfg.max_read_bytes)
            resets = src.rotations + src.truncations
            if resets:
                for kind, n in (("rotated", src.rotations), ("truncated", src.truncations)):
                    if n:
                        m.counter("surv_service_source_resets_total", desk=desk, kind=kind).inc(n)
                src.rotations = src.truncations = 0
            if chunk is None:
                continue
            read_any = True
            m.counter("surv_service_bytes_total", desk=desk).inc(len(chunk.data))
            m.counter("surv_service_lines_total", desk=desk).inc(chunk.data.count(b"\n"))
            self._last_data[desk] = self.clock()
            try:
                batch, q = decode_feed(chunk.data, desk, dictionaries=d)
            except FeedError as exc:  # only blank lines, say: nothing to analyse
                log.warning("desk %s: %s", desk, exc, extra={"event": "bad_lines", "desk": desk})
                continue
            for reason, n in q.counts.items():
                m.counter("surv_service_quarantined_total", desk=desk, reason=reason).inc(n)
            if len(batch):
                batches.append(batch)
                desks.append(desk)
                self._newest_ts[desk] = max(
                    self._newest_ts.get(desk, _TS_MIN), int(batch.timestamp_ns.max())
                )
        for b, desk in zip(batches, desks, strict=True):
            m.counter("surv_service_trades_total", desk=desk).inc(len(b))
        backlog = [self._newest_ts.get(k, _TS_MIN) for k, s in self.sources.items() if s.more]
        self._frontier = min(backlog) if backlog else None
        now = self.clock()
        events: list[AlertEvent] = []
        pending = ([self._held] if self._held is not None else []) + batches
        merged = TradeBatch.concat(pending) if pending else None
        if merged is not None and len(merged):
            # event-time merge: held rows and this cycle's desks interleave by
            # timestamp (stable: held rows first at a tie, as they were read first)
            merged = merged.take(np.argsort(merged.timestamp_ns, kind="stable"))
            k = len(merged)
            if self._frontier is not None:
                k = int(np.searchsorted(merged.timestamp_ns, self._frontier, "right"))
            self._held = merged.take(np.arange(k, len(merged))) if k < len(merged) else None
            merged = merged.take(np.arange(k))
        else:
            self._held = None
        if merged is not None and len(merged):
            update = self.stream.push(merged)
            events += update.events
            if update.quarantine.counts:  # late trades (and bad values), by desk
                desk_of = np.array(d.desk.decode(merged.desk), object)
                for reason in update.quarantine.counts:
                    rows = [r.position for r in update.quarantine if r.reason == reason]
                    for desk, n in zip(*np.unique(desk_of[rows], return_counts=True), strict=True):
                        m.counter("surv_service_quarantined_total", desk=desk, reason=reason).inc(
                            int(n)
                        )
            self._last_any_data = now
            self._last_data_max_ts = self.stream.watermark_ns
        elif (
            not read_any
            and self._held is None
            and self._last_data_max_ts is not None
            and now - self._last_any_data >= self.cfg.heartbeat_after_s
        ):
            # heartbeat: event time moves on at wall speed from the last trade read
            top = self._last_data_max_ts + self.stream.lateness_ns
            clock_ns = top + int((now - self._last_any_data) * dtypes.NS_PER_SECOND)
            events += self.stream.advance_to(clock_ns).events
        if events:
            out = self._publish(events, now)
            self.sink.write(out)
            wrote = self.clock()
            lat = m.histogram("surv_service_alert_latency_seconds", buckets=SERVICE_LATENCY_BUCKETS)
            for e in out:
                if e.status in ("open", "update"):
                    lag = wrote - e.alert["end_ns"] / dtypes.NS_PER_SECOND
                    if 0.0 <= lag < 86_400.0:  # a replayed old day's lag means nothing
                        lat.observe(lag)
        if read_any:
            m.histogram("surv_service_cycle_seconds", buckets=LATENCY_BUCKETS).observe(
                time.perf_counter() - t0
            )
        return read_any or self._held is not None

    # -- checkpoint -------------------------------------------------------------------------

    def checkpoint(self, wait: bool = True) -> None:
        """Commit the sink, snapshot the state, write the state file atomically.

        ``wait=False`` (the loop's periodic checkpoints) writes the file from
        a background thread: the snapshot costs the loop ~0.1 s per million
        rows held, the write and its fsyncs (tens of MB) would cost it about
        a second more. The file is still written after the sink commit that
        the snapshot's position records, one write at a time (a checkpoint
        due while the previous one is being written waits for the next
        cycle); a crash mid-write leaves the previous file. ``wait=True``
        (the final one, and tests) waits for any write in flight, then writes.
        """
        writer = self._writer
        if writer is not None and writer.is_alive():
            if not wait:
                return
            writer.join()
        if self._writer_error is not None:
            error, self._writer_error = self._writer_error, None
            raise error
        t0 = time.perf_counter()
        position = self.sink.commit()
        # A terminal alert this stream produced cannot be produced again by a
        # stream restored from this checkpoint: forget it. One only read back
        # from the sink (published by a run that died) is kept until the
        # replay reaches it, or the replay would publish it a second time.
        self._published = {
            k: p for k, p in self._published.items() if p.status not in _TERMINAL or not p.confirmed
        }
        st = _State(
            stream=self.stream.checkpoint(),
            sources=[
                _SourceState(desk, c.inode, c.offset, c.tail)
                for desk, c in [(d, s.cursor) for d, s in self.sources.items()]
                + list(self._cursors.items())  # desks whose file is gone for now
            ],
            sink_position=position,
            published=list(self._published.values()),
            written_at=self.clock(),
            held=_held_state(
                self._held if self._held is not None else TradeBatch.empty(self.stream.dictionaries)
            ),
            frontier_ns=self._frontier,
        )
        data = seal(_STATE_KIND, _STATE_FORMAT, msgspec.msgpack.encode(st))
        self._last_ckpt = self.clock()
        self.metrics.histogram(
            "surv_service_checkpoint_pause_seconds", buckets=LATENCY_BUCKETS
        ).observe(time.perf_counter() - t0)
        if wait:
            self._write_state(data, t0)
        else:
            self._writer = threading.Thread(
                target=self._write_state, args=(data, t0), name="surv-serve-checkpoint", daemon=True
            )
            self._writer.start()

    def _write_state(self, data: bytes, t0: float) -> None:
        try:
            _atomic_write(self.state_dir / STATE_FILE, data)
        except OutputError as exc:
            if threading.current_thread() is not self._writer:
                raise
            self._writer_error = exc  # raised by the next checkpoint, in the loop
            return
        self.metrics.gauge("surv_service_last_checkpoint_timestamp_seconds").set(time.time())
        self.metrics.histogram("surv_service_checkpoint_seconds", buckets=LATENCY_BUCKETS).observe(
            time.perf_counter() - t0
        )
        log.debug("checkpoint written (%d bytes)", len(data), extra={"event": "checkpoint"})

    # -- health ---------------------------------------------------------------------------

    def _refresh_health(self) -> None:
        now = self.clock()
        m = self.metrics
        desks: dict[str, Any] = {}
        for desk, src in self.sources.items():
            age = now - self._last_data.get(desk, self._started)
            newest = self._newest_ts.get(desk)
            lag = None if newest is None else now - newest / dtypes.NS_PER_SECOND
            silent = age > self.cfg.silence_after_s
            behind = src.bytes_behind()
            m.gauge("surv_service_desk_last_data_age_seconds", desk=desk).set(age)
            if lag is not None:
                m.gauge("surv_service_desk_lag_seconds", desk=desk).set(lag)
            m.gauge("surv_service_desk_bytes_behind", desk=desk).set(behind)
            m.gauge("surv_service_desk_silent", desk=desk).set(float(silent))
            desks[desk] = {
                "status": "SILENT" if silent else "OK",
                "last_data_age_s": round(age, 3),
                "last_trade_lag_s": None if lag is None else round(lag, 3),
                "bytes_behind": behind,
                "trades": m.value("surv_service_trades_total", desk=desk),
                "quarantined": {
                    labels["reason"]: v
                    for labels, v in m.series("surv_service_quarantined_total")
                    if labels["desk"] == desk
                },
            }
        degraded = [k for k, v in desks.items() if v["status"] != "OK"]
        status = self.status
        if status == "RUNNING":
            status = "DEGRADED" if degraded else "OK"
        lat = m.value("surv_service_alert_latency_seconds")
        cycle = m.value("surv_service_cycle_seconds")
        ckpt = m.value("surv_service_checkpoint_seconds")
        pause = m.value("surv_service_checkpoint_pause_seconds")
        health = {
            "status": status,
            "silent_desks": degraded,
            "silence_after_s": self.cfg.silence_after_s,
            "uptime_s": round(now - self._started, 3),
            "last_checkpoint_age_s": round(now - self._last_ckpt, 3),
            "watermark_ns": self.stream.watermark_ns,
            "open_alerts": len(self.stream.open_alerts()),
            "events": {labels["status"]: v for labels, v in m.series("surv_service_events_total")},
            "alert_latency_p50_s": lat["p50"],
            "alert_latency_p95_s": lat["p95"],
            "cycle_p95_s": cycle["p95"],
            "cycle_max_s": cycle["max"],
            "checkpoint_p95_s": ckpt["p95"],
            "checkpoint_max_s": ckpt["max"],
            "checkpoint_pause_max_s": pause["max"],
            "held_rows": 0 if self._held is None else len(self._held),
            "stream_rows_held": self.stream.stats()["rows_held"],
            "desks": desks,
        }
        with self._lock:
            self.health = health

    def health_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.health

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Cycle until ``stop`` is set; then a final checkpoint. The current
        cycle is always finished first (stop is checked between cycles)."""
        self.status = "RUNNING"
        last_health = 0.0
        try:
            while not stop.is_set():
                had_data = self.step()
                now = self.clock()
                if now - self._last_ckpt >= self.cfg.checkpoint_every_s:
                    self.checkpoint(wait=False)
                if now - last_health >= 0.5 or not had_data:
                    self._refresh_health()
                    last_health = now
                if not had_data:
                    stop.wait(self.cfg.poll_interval_s)
        finally:
            self.status = "STOPPING"
            self._refresh_health()
        self.checkpoint()
        log.info("final checkpoint written; stopping", extra={"event": "service_stopped"})

    def close(self) -> None:
        for src in self.sources.values():
            src.close()
        self.sink.close()


def _atomic_write(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename, fsync of the directory: after a crash
    the path holds the previous state file or this one, whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
