"""Desks: fetch a feed with retries, analyse one desk, run every desk in a pool.

The received pipeline lost alerts three ways, and each has its fix here:

- a feed that failed its retries became ``None`` and then "no anomalies":
  :func:`fetch_trade_feed` raises :class:`FeedUnavailableError` instead;
- a thread that raised lost its desk without a trace, and results came back in
  completion order without their desk: :func:`process_all_desks` returns one
  entry per desk in the order asked, and a failed desk is raised (or
  reported), logged and counted, never an empty list;
- one unbounded thread per desk, and a hung feed hung the run: the pool is
  bounded and each desk has a deadline.

Every log record carries ``desk`` (and ``attempt`` for feed calls) as an
``extra=`` field; every outcome moves a metric in
:data:`surv_kernel.observability.metrics` (names in ``observability.METRICS``).

Threads, not processes: the window kernels are Numba ``nogil`` code and
msgspec decodes quickly, and the feed wait is I/O, so threads overlap the
waits and run kernels side by side without copying feeds or alerts between
processes (measured in ``asv_bench/benchmarks/desks.py``).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from .observability import MetricsRegistry, metrics, serve_metrics_from_env

__all__ = [
    "DEFAULT_BASE_DELAY",
    "DEFAULT_DESK_DEADLINE_S",
    "DEFAULT_MAX_DELAY",
    "RETRYABLE_ERRORS",
    "DeskDeadlineError",
    "DeskFailuresError",
    "DeskOutcome",
    "DeskRunReport",
    "FeedUnavailableError",
    "TransientFeedError",
    "analyze_feed",
    "default_workers",
    "fetch_trade_feed",
    "process_all_desks",
    "reason_label",
]

log = logging.getLogger(__name__)

#: First backoff cap in seconds; attempt k sleeps uniform(0, min(max, base * 2**(k-1))).
DEFAULT_BASE_DELAY = 0.5
#: No backoff sleep is longer than this (seconds).
DEFAULT_MAX_DELAY = 30.0
#: Per-desk deadline (seconds from the desk's start) when neither the caller
#: nor ``SURV_DESK_DEADLINE_S`` sets one. Generous: a desk of a million trades
#: decodes and detects in seconds; this only has to catch a hung feed.
DEFAULT_DESK_DEADLINE_S = 120.0

#: Environment knobs read at call time, so an operator can change them for the
#: legacy entry point ``process_all_desks(desk_ids)`` without a code change.
ENV_MAX_WORKERS = "SURV_MAX_WORKERS"
ENV_DESK_DEADLINE_S = "SURV_DESK_DEADLINE_S"


class TransientFeedError(Exception):
    """Raise from a feed client to say "this may work if tried again"."""


#: Errors worth another attempt: network and OS-level failures (ConnectionError,
#: TimeoutError and socket errors are all OSError) and an explicit
#: TransientFeedError. Anything else (TypeError, ValueError, KeyError, ...) is a
#: bug or a permanent condition; retrying it only delays the alarm.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (TransientFeedError, OSError)


class FeedUnavailableError(RuntimeError):
    """A desk's feed could not be fetched; the desk was NOT analysed.

    Never read this as "no anomalies": the desk's alerts are unknown.
    """

    def __init__(self, desk_id: Any, attempts: int, last_error: BaseException | None) -> None:
        self.desk_id = desk_id
        self.attempts = attempts
        self.last_error = last_error
        detail = f"{type(last_error).__name__}: {last_error}" if last_error is not None else "-"
        super().__init__(
            f"desk {desk_id!r}: feed unavailable after {attempts} attempt(s); last error {detail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.desk_id, self.attempts, self.last_error))


class DeskDeadlineError(TimeoutError):
    """A desk did not finish within its deadline (its worker was abandoned)."""

    def __init__(self, desk_id: Any, deadline_s: float, started: bool = True) -> None:
        self.desk_id = desk_id
        self.deadline_s = deadline_s
        self.started = started
        if started:
            msg = f"desk {desk_id!r}: no result within the {deadline_s:g}s deadline"
        else:
            msg = (
                f"desk {desk_id!r}: never started; every pool worker is held by a desk "
                f"past its {deadline_s:g}s deadline"
            )
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.desk_id, self.deadline_s, self.started))


@dataclass(frozen=True)
class DeskOutcome:
    """What happened to one desk of a :func:`process_all_desks` run."""

    desk_id: Any
    #: the desk's alerts, or None if it failed (None is never "no alerts")
    alerts: list[dict[str, Any]] | None
    error: BaseException | None
    #: "ok", "feed_unavailable", "bad_feed", "bad_result", "timeout" or "error"
    kind: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class DeskRunReport:
    """Every desk's outcome, in the order of the ``desk_ids`` asked for."""

    outcomes: tuple[DeskOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def results(self) -> list[list[dict[str, Any]] | None]:
        """One entry per desk in order: its alert list, or None where it failed."""
        return [o.alerts for o in self.outcomes]

    @property
    def failures(self) -> dict[Any, BaseException]:
        """desk id -> the error that stopped it (failed desks only)."""
        return {o.desk_id: o.error for o in self.outcomes if o.error is not None}

    @property
    def alerts_by_desk(self) -> dict[Any, list[dict[str, Any]]]:
        """desk id -> alerts, healthy desks only."""
        return {o.desk_id: o.alerts for o in self.outcomes if o.alerts is not None}

    def raise_for_failures(self) -> list[list[dict[str, Any]]]:
        """The legacy result (list of alert lists) if every desk succeeded,
        else raise :class:`DeskFailuresError`."""
        if not self.ok:
            raise DeskFailuresError(self)
        return [o.alerts for o in self.outcomes]  # type: ignore[misc]


class DeskFailuresError(RuntimeError):
    """One or more desks failed; every other desk finished and its alerts are here.

    - ``results``: one entry per desk in the order asked, the alert list of a
      healthy desk or ``None`` for a failed one (never ``[]`` for a failure);
    - ``failures``: desk id -> exception; ``alerts_by_desk``: healthy desks only;
    - ``report``: the full :class:`DeskRunReport` (kinds and timings).
    """

    def __init__(self, report: DeskRunReport) -> None:
        self.report = report
        failed = [o for o in report.outcomes if not o.ok]
        parts = "; ".join(f"{o.desk_id!r} {o.kind}: {o.error}" for o in failed)
        super().__init__(
            f"{len(failed)} of {len(report.outcomes)} desk(s) failed ({parts}); the healthy "
            f"desks' alerts are in .results / .alerts_by_desk"
        )

    @property
    def results(self) -> list[list[dict[str, Any]] | None]:
        return self.report.results

    @property
    def failures(self) -> dict[Any, BaseException]:
        return self.report.failures

    @property
    def alerts_by_desk(self) -> dict[Any, list[dict[str, Any]]]:
        return self.report.alerts_by_desk

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))


_RNG = random.Random()
_RNG_LOCK = threading.Lock()


def _jitter(rng: Any, cap: float) -> float:
    if rng is None:
        with _RNG_LOCK:  # random.Random is not documented as thread-safe
            return _RNG.random() * cap
    return float(rng.random()) * cap


def fetch_trade_feed(
    desk_id: Any,
    max_retries: int = 3,
    *,
    api_call: Callable[[Any], Any],
    sleep: Callable[[float], Any] | None = None,
    rng: Any = None,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float | None = None,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    registry: MetricsRegistry | None = None,
) -> Any:
    """Call ``api_call(desk_id)`` up to ``max_retries`` times; return its feed.

    ``max_retries`` is the number of attempts, as in the received function.
    After failed attempt k (not after the last) it sleeps a full-jitter
    backoff ``uniform(0, min(max_delay, base_delay * 2**(k-1)))``: the random
    spread stops six desks retrying in lockstep against a struggling feed
    service, the cap bounds one wait. Only ``retry_on`` errors are retried;
    anything else is logged and re-raised at once (a bug does not get three
    tries). ``timeout_s`` is an optional budget for all attempts and sleeps:
    a sleep that would cross it is not taken.

    Raises :class:`FeedUnavailableError` (chained to the last error) when the
    attempts or the budget are spent. ``sleep``, ``rng`` (anything with
    ``.random()``) and ``clock`` are injectable so tests never really sleep.
    """
    if max_retries < 1:
        raise ValueError(f"max_retries is the number of attempts and must be >= 1: {max_retries}")
    if base_delay < 0 or max_delay < 0:
        raise ValueError(f"backoff delays must be >= 0: base {base_delay}, max {max_delay}")
    reg = registry if registry is not None else metrics
    if sleep is None:  # looked up per call, so a test can replace time.sleep
        sleep = time.sleep
    desk = str(desk_id)
    start = clock()
    last_error: BaseException | None = None
    for attempt in range(1, max_retries + 1):
        ctx = {"desk": desk, "attempt": attempt, "max_attempts": max_retries}
        try:
            feed = api_call(desk_id)
        except retry_on as exc:
            last_error = exc
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="retryable").inc()
            if attempt == max_retries:
                break
            delay = _jitter(rng, min(max_delay, base_delay * 2.0 ** (attempt - 1)))
            if timeout_s is not None and (clock() - start) + delay > timeout_s:
                reg.counter("surv_feed_failures_total", desk=desk, reason="budget").inc()
                log.error(
                    "feed for desk %s unavailable: the %.3gs budget is spent after attempt %d",
                    desk,
                    timeout_s,
                    attempt,
                    extra={**ctx, "event": "fetch_failed", "reason": "budget", "error": repr(exc)},
                )
                raise FeedUnavailableError(desk_id, attempt, exc) from exc
            reg.counter("surv_feed_retries_total", desk=desk).inc()
            log.warning(
                "feed for desk %s failed on attempt %d/%d (%s); retrying in %.3fs",
                desk,
                attempt,
                max_retries,
                type(exc).__name__,
                delay,
                extra={**ctx, "event": "fetch_retry", "delay_s": delay, "error": repr(exc)},
            )
            sleep(delay)
        except Exception as exc:
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="fatal").inc()
            reg.counter("surv_feed_failures_total", desk=desk, reason="fatal").inc()
            log.error(
                "feed for desk %s failed on attempt %d with an error not worth retrying: %r",
                desk,
                attempt,
                exc,
                extra={**ctx, "event": "fetch_failed", "reason": "fatal", "error": repr(exc)},
            )
            raise
        else:
            elapsed = clock() - start
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="ok").inc()
            reg.histogram("surv_feed_fetch_seconds", desk=desk).observe(max(elapsed, 0.0))
            size = len(feed) if isinstance(feed, (str, bytes, bytearray)) else None
            log.info(
                "feed for desk %s fetched in %.3fs (attempt %d)",
                desk,
                elapsed,
                attempt,
                extra={**ctx, "event": "fetch_ok", "seconds": elapsed, "size": size},
            )
            return feed
    reg.counter("surv_feed_failures_total", desk=desk, reason="exhausted").inc()
    log.error(
        "feed for desk %s unavailable after %d attempt(s): %r",
        desk,
        max_retries,
        last_error,
        extra={
            "desk": desk,
            "attempt": max_retries,
            "max_attempts": max_retries,
            "event": "fetch_failed",
            "reason": "exhausted",
            "error": repr(last_error),
        },
    )
    raise FeedUnavailableError(desk_id, max_retries, last_error) from last_error


def reason_label(reason: Any) -> str:
    """A bounded metric label for a free-text reason: its category, the text
    before the first ``:`` ("within baseline: z=1.2 < 3, ..." -> "within_baseline").

    Reasons carry per-record detail (values, z-scores); as label values they
    would create one time series per distinct number.
    """
    return _label_of_head(str(reason).partition(":")[0])


@functools.lru_cache(maxsize=256)
def _label_of_head(head: str) -> str:
    # cached: a day has thousands of suppressed episodes but a handful of categories
    label = "".join(c if c.isalnum() else "_" for c in head.strip().lower()).strip("_")
    while "__" in label:
        label = label.replace("__", "_")
    return label[:48] or "unspecified"


def analyze_feed(
    desk_id: Any,
    feed: Any,
    *,
    config: Any = None,
    registry: MetricsRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """Decode one desk's feed and detect its alerts; returns the alerts as dicts.

    Decoding is ``surv_kernel.ingest.decode_feed`` and detection
    ``surv_kernel.model.detect`` (``config`` defaults to ``DetectionConfig()``).
    A feed that is not text/bytes or not JSON raises
    ``surv_kernel.ingest.FeedError``. Records the feed could not use are
    quarantined by ingest; here they are logged (WARNING, with their reasons)
    and counted in ``surv_records_quarantined_total``, never dropped quietly.
    Also counted: trades decoded, alerts emitted, episodes suppressed (by
    reason), decode and detect time, and for each alert the lag from its last
    trade's timestamp to now (``clock``, Unix seconds) - the SLA figure.
    """
    from .ingest import FeedError, decode_feed
    from .model import DetectionConfig, detect

    reg = registry if registry is not None else metrics
    desk = str(desk_id)
    if not isinstance(feed, (str, bytes, bytearray, memoryview)):
        raise FeedError(
            f"desk {desk!r}: the feed is a {type(feed).__name__}, not JSON text or bytes"
        )
    t0 = time.perf_counter()
    batch, quarantine = decode_feed(feed, desk=desk)
    t1 = time.perf_counter()
    reg.histogram("surv_decode_seconds", desk=desk).observe(t1 - t0)
    reg.counter("surv_trades_decoded_total", desk=desk).inc(len(batch))
    # ``counts`` is exact even when ingest kept only the first records whole
    by_reason = collections.Counter()
    for reason, count in quarantine.counts.items():
        by_reason[reason_label(reason)] += count
    n_quarantined = sum(by_reason.values())
    if n_quarantined:
        for reason, count in by_reason.items():
            reg.counter("surv_records_quarantined_total", desk=desk, reason=reason).inc(count)
        log.warning(
            "desk %s: %d record(s) quarantined, not analysed: %s",
            desk,
            n_quarantined,
            dict(by_reason),
            extra={
                "desk": desk,
                "event": "records_quarantined",
                "quarantined": n_quarantined,
                "reasons": dict(by_reason),
                "first_positions": [record.position for record in quarantine[:10]],
            },
        )
    detection = detect(batch, config if config is not None else DetectionConfig())
    t2 = time.perf_counter()
    reg.histogram("surv_detect_seconds", desk=desk).observe(t2 - t1)
    alerts = [alert.to_dict() for alert in detection.alerts]
    emitted_at = clock()
    lag = reg.histogram("surv_alert_lag_seconds", desk=desk)
    worst_lag = None
    for alert in detection.alerts:
        seconds = emitted_at - alert.end_ns / 1e9
        lag.observe(seconds)
        worst_lag = seconds if worst_lag is None else max(worst_lag, seconds)
    reg.counter("surv_alerts_emitted_total", desk=desk).inc(len(alerts))
    suppressed = collections.Counter(reason_label(ep.reason) for ep in detection.suppressed)
    for reason, count in suppressed.items():
        reg.counter("surv_alerts_suppressed_total", desk=desk, reason=reason).inc(count)
    log.info(
        "desk %s: %d trades, %d quarantined, %d alerts, %d suppressed",
        desk,
        len(batch),
        n_quarantined,
        len(alerts),
        sum(suppressed.values()),
        extra={
            "desk": desk,
            "event": "desk_analyzed",
            "trades": len(batch),
            "quarantined": n_quarantined,
            "alerts": len(alerts),
            "suppressed": sum(suppressed.values()),
            "decode_s": t1 - t0,
            "detect_s": t2 - t1,
            "max_lag_s": worst_lag,
        },
    )
    return alerts


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_allocator_tuned: bool | None = None
_allocator_lock = threading.Lock()


def tune_allocator(
    mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20, top_pad: int = 16 << 20
) -> bool:
    """Keep freed column buffers in the heap instead of returning them to the OS.

    Why: glibc serves every allocation over 128 KiB with a fresh ``mmap`` and
    unmaps it on free, so each desk's columns (MBs) page-fault in again on
    every call; threads share one address space, and on this VM those faults
    serialise the desk threads. Measured with ``asv_bench/benchmarks/desks.py``
    (six desks x 200k trades): decode+detect on the thread pool 0.447 s ->
    0.325 s, six desks vs the slowest single desk 1.52x -> 1.41x, CPU used
    0.74 s -> 0.59 s. The cost is bounded: at most ``trim_threshold`` of free
    memory stays resident per malloc arena.

    Process-wide and glibc-only: returns False (and changes nothing) where
    ``mallopt`` is unavailable. :func:`process_all_desks` calls it once per
    process unless ``SURV_MALLOC_TUNING=0``.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug(
            "allocator tuning unavailable (no glibc mallopt)", extra={"event": "malloc_tuning"}
        )
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
            (_M_TOP_PAD, top_pad),
        )
    )
    log.info(
        "allocator tuned for the desk pool" if ok else "allocator tuning refused by mallopt",
        extra={"event": "malloc_tuning", "mmap_threshold": mmap_threshold},
    )
    return ok


def _tune_allocator_once() -> None:
    global _allocator_tuned
    if os.environ.get("SURV_MALLOC_TUNING", "1").strip() == "0":
        return
    with _allocator_lock:
        if _allocator_tuned is None:
            _allocator_tuned = tune_allocator()


def default_workers(n_desks: int) -> int:
    """Pool size: ``SURV_MAX_WORKERS`` if set, else ``min(n_desks, cores + 4)``.

    More workers than cores on purpose: a worker waiting on a feed uses no
    core, so the waits of every desk overlap; the CPU part is bounded by the
    cores anyway. Each worker in flight holds one desk's feed and columns, so
    the pool size is also the memory knob.
    """
    env = os.environ.get(ENV_MAX_WORKERS, "").strip()
    if env:
        try:
            workers = int(env)
        except ValueError:
            raise ValueError(f"{ENV_MAX_WORKERS}={env!r} is not an integer") from None
        if workers < 1:
            raise ValueError(f"{ENV_MAX_WORKERS}={env!r} must be >= 1")
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        workers = (cores or os.cpu_count() or 1) + 4
    return max(1, min(workers, n_desks))


def _resolve_deadline(deadline_s: float | None) -> float | None:
    if deadline_s is not None:
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 seconds (or None): {deadline_s}")
        return float(deadline_s)
    env = os.environ.get(ENV_DESK_DEADLINE_S, "").strip().lower()
    if not env:
        return DEFAULT_DESK_DEADLINE_S
    if env in ("0", "none", "off"):
        return None
    try:
        value = float(env)
    except ValueError:
        raise ValueError(f"{ENV_DESK_DEADLINE_S}={env!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{ENV_DESK_DEADLINE_S}={env!r} must be > 0 (or 'none')")
    return value


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, FeedUnavailableError):
        return "feed_unavailable"
    if isinstance(exc, DeskDeadlineError):
        return "timeout"
    # classifying must never fail on the failure path, whatever ingest's state
    try:
        from .ingest import FeedError
    except ImportError:  # pragma: no cover
        return "error"
    return "bad_feed" if isinstance(exc, FeedError) else "error"


class _BadResultError(TypeError):
    pass


def process_all_desks(
    desk_ids: Iterable[Hashable],
    *,
    analyze: Callable[[Any], list[dict[str, Any]]],
    max_workers: int | None = None,
    deadline_s: float | None = None,
    report: bool = False,
    registry: MetricsRegistry | None = None,
) -> Any:
    """Run ``analyze(desk_id)`` for every desk on a bounded thread pool.

    Returns one alert list per desk, **in the order of** ``desk_ids`` (the
    legacy shape), when every desk succeeded.

    Failure contract: a desk that raises, returns something that is not a
    list, or passes its deadline is a *failed* desk. It is logged (ERROR, with
    the desk id) and counted (``surv_desk_failures_total{desk,kind}``), the
    other desks still run to the end, and then :class:`DeskFailuresError` is
    raised; its ``.results`` has every healthy desk's alerts in order and
    ``None`` (never ``[]``) for each failed desk, ``.failures`` maps desk id to
    error. With ``report=True`` nothing is raised: a :class:`DeskRunReport`
    is returned for healthy and failed runs alike (``.raise_for_failures()``
    gives the legacy behaviour back).

    - ``max_workers``: pool size; default :func:`default_workers`.
    - ``deadline_s``: per desk, counted from when its worker starts it
      (queueing for a worker does not count); default ``SURV_DESK_DEADLINE_S``
      or :data:`DEFAULT_DESK_DEADLINE_S`. Python cannot stop a thread: a desk
      past its deadline is reported as ``timeout`` and abandoned, and its
      thread runs on until ``analyze`` returns (the feed client's own socket
      timeout ends it). If every worker is held by such a desk, desks still
      queued fail as ``timeout`` (not started) rather than waiting forever.
    """
    reg = registry if registry is not None else metrics
    serve_metrics_from_env()
    _tune_allocator_once()
    ids = list(desk_ids)
    if not ids:
        return DeskRunReport(()) if report else []
    workers = max_workers if max_workers is not None else default_workers(len(ids))
    if workers < 1:
        raise ValueError(f"max_workers must be >= 1: {workers}")
    deadline = _resolve_deadline(deadline_s)
    reg.gauge("surv_pool_workers").set(workers)
    in_flight = reg.gauge("surv_desks_in_flight")

    started: dict[int, float] = {}
    finished_at: dict[int, float] = {}

    def run(index: int, desk_id: Any) -> Any:
        started[index] = time.monotonic()
        in_flight.inc()
        try:
            result = analyze(desk_id)
        finally:
            in_flight.dec()
            finished_at[index] = time.monotonic()
        if not isinstance(result, list):
            raise _BadResultError(
                f"desk {desk_id!r}: analyze returned a {type(result).__name__}, not a list of "
                "alerts; treated as a failure so it cannot pass for 'no alerts'"
            )
        return result

    outcomes: list[DeskOutcome | None] = [None] * len(ids)
    abandoned: set[cf.Future[Any]] = set()
    log.info(
        "processing %d desk(s) on %d worker(s), deadline %s",
        len(ids),
        workers,
        "none" if deadline is None else f"{deadline:g}s",
        extra={"event": "desks_start", "desks": [str(d) for d in ids], "workers": workers},
    )
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="surv-desk")
    try:
        futures = {pool.submit(run, i, d): i for i, d in enumerate(ids)}
        pending = set(futures)
        while pending:
            timeout = None
            if deadline is not None:
                now = time.monotonic()
                for fut in list(pending):
                    i = futures[fut]
                    t0 = started.get(i)
                    if t0 is not None and not fut.done() and now - t0 >= deadline:
                        pending.discard(fut)
                        abandoned.add(fut)
                        outcomes[i] = _record(
                            reg, ids[i], None, DeskDeadlineError(ids[i], deadline), now - t0
                        )
                # desks still queued can never start if every worker is stuck
                if len([f for f in abandoned if not f.done()]) >= workers:
                    for fut in list(pending):
                        i = futures[fut]
                        if i not in started and fut.cancel():
                            pending.discard(fut)
                            err = DeskDeadlineError(ids[i], deadline, started=False)
                            outcomes[i] = _record(reg, ids[i], None, err, 0.0)
                if not pending:
                    break
                starts = [started[futures[f]] for f in pending if futures[f] in started]
                # wake at the earliest deadline among running desks; desks that
                # start later have later deadlines, but poll briefly while none runs
                timeout = max(0.0, min(starts) + deadline - now) if starts else 0.01
            done, _ = cf.wait(pending, timeout=timeout, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                i = futures[fut]
                seconds = finished_at.get(i, time.monotonic()) - started.get(i, time.monotonic())
                exc = fut.exception()
                outcomes[i] = _record(reg, ids[i], None if exc else fut.result(), exc, seconds)
    finally:
        # an abandoned desk's thread cannot be joined without waiting for it
        pool.shutdown(wait=not abandoned, cancel_futures=True)
    if any(o is None for o in outcomes):  # pragma: no cover - the loop above fills every slot
        raise RuntimeError("internal error: a desk has no outcome; refusing to drop it silently")
    result = DeskRunReport(tuple(o for o in outcomes if o is not None))
    failed = [o for o in result.outcomes if not o.ok]
    log.log(
        logging.ERROR if failed else logging.INFO,
        "processed %d desk(s): %d ok, %d failed%s",
        len(ids),
        len(ids) - len(failed),
        len(failed),
        (": " + ", ".join(f"{o.desk_id} ({o.kind})" for o in failed)) if failed else "",
        extra={
            "event": "desks_done",
            "desks": [str(d) for d in ids],
            "failed_desks": [str(o.desk_id) for o in failed],
        },
    )
    if report:
        return result
    return result.raise_for_failures()


def _record(
    reg: MetricsRegistry,
    desk_id: Any,
    alerts: list[dict[str, Any]] | None,
    error: BaseException | None,
    seconds: float,
) -> DeskOutcome:
    desk = str(desk_id)
    reg.histogram("surv_desk_seconds", desk=desk).observe(max(seconds, 0.0))
    if error is None:
        reg.counter("surv_desk_runs_total", desk=desk, outcome="ok").inc()
        reg.gauge("surv_desk_last_success_timestamp_seconds", desk=desk).set(time.time())
        return DeskOutcome(desk_id, alerts, None, "ok", seconds)
    kind = "bad_result" if isinstance(error, _BadResultError) else _failure_kind(error)
    reg.counter("surv_desk_runs_total", desk=desk, outcome="failed").inc()
    reg.counter("surv_desk_failures_total", desk=desk, kind=kind).inc()
    reg.gauge("surv_desk_last_failure_timestamp_seconds", desk=desk).set(time.time())
    log.error(
        "desk %s failed (%s) after %.3fs: %s",
        desk,
        kind,
        seconds,
        error,
        exc_info=error if kind in ("error", "bad_result") else None,
        extra={"desk": desk, "event": "desk_failed", "kind": kind, "error": repr(error)},
    )
    return DeskOutcome(desk_id, None, error, kind, seconds)


# -- operator helpers (RUNBOOK.md) -------------------------------------------------


def _warm_feed(n_trades: int = 600) -> bytes:
    """A small deterministic feed that exercises every detection path:
    ordinary trades, a burst that alerts, and episodes that are suppressed."""
    import json

    day0 = 1_710_403_200.0  # 2024-03-14 00:00 UTC
    rows = []
    for i in range(n_trades):
        trader = f"WARM{i % 6}"
        burst = i % 6 == 0 and 300 <= i < 330
        rows.append(
            {
                "trade_id": f"WARM-{i:05d}",
                "asset_class": ("equity", "fixed_income", "derivative")[i % 3],
                "notional": (9_000_000.0 if burst else 150_000.0 + 1_000.0 * (i % 17)),
                "currency": ("USD", "EUR", "GBP", "JPY")[i % 4] if not burst else "USD",
                "trader_id": trader,
                "timestamp": day0 + 9 * 3600 + 37.0 * i,
                "surveillance_required": i % 2 == 0,
            }
        )
    return json.dumps(rows).encode()


def warm_up() -> float:
    """Compile (or load from the Numba cache) every kernel a desk run uses;
    returns the seconds it took. Metrics of the warm-up go to a throwaway
    registry. Run it at deploy time with the service's ``NUMBA_CACHE_DIR``
    so the first real desk run does not pay for compilation."""
    start = time.perf_counter()
    analyze_feed("warm-up", _warm_feed(), registry=MetricsRegistry())
    return time.perf_counter() - start


def run_demo(
    *,
    seed: int = 0,
    dead_desks: Iterable[str] = (),
    archive_dir: str | os.PathLike[str] | None = None,
    registry: MetricsRegistry | None = None,
    **day_knobs: Any,
) -> DeskRunReport:
    """A rehearsal: one synthetic day (``surv_kernel.scenario.generate_day``)
    through the real pool, fetch, decode and detection, with the named desks'
    feeds dead (every call raises ConnectionError). Moves the given (default)
    registry's metrics like a production run; never raises for a dead desk,
    returns the report. With ``archive_dir`` every desk's feed is also written
    there as ``<desk>.json`` (what a replay reads)."""
    from .scenario import generate_day

    feeds = generate_day(seed, **day_knobs).feeds()
    dead = set(dead_desks)
    unknown = dead - set(feeds)
    if unknown:
        raise ValueError(f"unknown desk(s) {sorted(unknown)}; the demo desks are {sorted(feeds)}")
    if archive_dir is not None:
        os.makedirs(archive_dir, exist_ok=True)
        for desk, feed in feeds.items():
            with open(os.path.join(archive_dir, f"{desk}.json"), "wb") as fh:
                fh.write(feed)
    reg = registry if registry is not None else metrics

    def api_call(desk_id: str) -> bytes:
        if desk_id in dead:
            raise ConnectionError(f"demo: feed of {desk_id} is down")
        return feeds[desk_id]

    def analyze(desk_id: str) -> list[dict[str, Any]]:
        feed = fetch_trade_feed(
            desk_id, api_call=api_call, base_delay=0.01, max_delay=0.05, registry=reg
        )
        return analyze_feed(desk_id, feed, registry=reg)

    return process_all_desks(list(feeds), analyze=analyze, report=True, registry=reg)


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay_window` found, per desk."""

    #: desk -> alerts that were NOT delivered before (deliver these)
    new_alerts: dict[str, list[dict[str, Any]]]
    #: desk -> how many replayed alerts were already delivered (skipped)
    duplicates: dict[str, int]
    #: desk -> trades replayed
    trades: dict[str, int]
    #: the report of the replay run (a desk whose replay failed is in it)
    report: DeskRunReport


def replay_window(
    feeds_by_desk: Any,
    *,
    delivered_ids: Iterable[str] = (),
    config: Any = None,
    max_workers: int | None = None,
    registry: MetricsRegistry | None = None,
) -> ReplayResult:
    """Re-run detection over saved feeds and keep only alerts not yet delivered.

    ``feeds_by_desk`` maps a desk id to its feed(s): bytes/str, a file path,
    or a list of either (the feeds of one desk are concatenated in the order
    given into one batch, as the live run saw them). Alert ids are
    deterministic (trader, asset class, episode start, first trade), so an
    alert the live run already delivered has the same id here and is skipped
    (``delivered_ids``); every other alert is returned in ``new_alerts``.
    Replay the same feeds the live run used (the whole desk feed, not a
    slice): detection's baselines come from the batch, and an episode cut in
    half by a window edge gets another start and id. Metrics go to a fresh
    registry unless ``registry`` is given, so a replay does not pollute the
    live SLA figures (its alerts' lag is hours by construction).
    """
    import msgspec

    from .records import load_feeds_as_dicts

    reg = registry if registry is not None else MetricsRegistry()
    delivered = set(delivered_ids)
    merged: dict[str, bytes] = {}
    for desk, sources in dict(feeds_by_desk).items():
        items = sources if isinstance(sources, (list, tuple)) else [sources]
        parts: list[bytes | str] = []
        for item in items:
            if isinstance(item, (bytes, bytearray, str)) and not _is_path(item):
                parts.append(bytes(item) if isinstance(item, bytearray) else item)
            else:
                with open(item, "rb") as fh:
                    parts.append(fh.read())
        merged[str(desk)] = (
            parts[0] if len(parts) == 1 else msgspec.json.encode(load_feeds_as_dicts(parts))
        )
    trades: dict[str, int] = {}

    def analyze(desk: str) -> list[dict[str, Any]]:
        before = reg.value("surv_trades_decoded_total", desk=desk)
        alerts = analyze_feed(desk, merged[desk], config=config, registry=reg)
        trades[desk] = int(reg.value("surv_trades_decoded_total", desk=desk) - before)
        return alerts

    rep = process_all_desks(
        list(merged), analyze=analyze, max_workers=max_workers, report=True, registry=reg
    )
    new: dict[str, list[dict[str, Any]]] = {}
    dup: dict[str, int] = {}
    for outcome in rep.outcomes:
        if outcome.alerts is None:
            continue
        fresh = [a for a in outcome.alerts if a["alert_id"] not in delivered]
        new[outcome.desk_id] = fresh
        dup[outcome.desk_id] = len(outcome.alerts) - len(fresh)
    log.info(
        "replay: %d desk(s), %d new alert(s), %d already delivered, %d desk(s) failed",
        len(merged),
        sum(len(v) for v in new.values()),
        sum(dup.values()),
        len(rep.failures),
        extra={"event": "replay_done", "desks": list(merged), "failed_desks": list(rep.failures)},
    )
    return ReplayResult(new, dup, trades, rep)


def _is_path(item: Any) -> bool:
    """A str that names an existing file is a path; any other str is feed text."""
    return (
        isinstance(item, str) and not item.lstrip().startswith(("[", "{")) and os.path.isfile(item)
    )
