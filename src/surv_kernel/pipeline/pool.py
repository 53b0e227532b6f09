"""The desk pool: bounded worker threads, per-desk deadlines, outcomes in order.

The received pipeline ran one unbounded thread per desk, lost a raising
desk's results without a trace and let a hung feed hang the run. Here
:func:`run_tasks` runs one task per desk on a bounded pool, gives each a
deadline counted from when a worker starts it, and returns every desk's
outcome in the order asked, a failure named and counted, never dropped.

Worker threads are daemon threads: Python cannot stop a thread, so a desk
past its deadline is abandoned, its worker runs on until the feed call
returns, and it must never keep the process from exiting. The abandoned task's
metrics are held back (:func:`surv_kernel.observability.staged_metrics`) and
dropped when it returns late: its trades and alerts were never delivered, so
they are not counted; ``surv_desks_abandoned_in_flight`` shows how many such
calls are still out.

Threads, not processes: the window kernels are Numba ``nogil`` code and
msgspec decodes quickly, and the feed wait is I/O, so threads overlap the
waits and run kernels side by side without copying feeds or alerts between
processes (measured in ``asv_bench/benchmarks/desks.py``).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from ..errors import ConfigError, SurveillanceError
from ..observability import MetricsRegistry, metrics, serve_metrics_from_env, staged_metrics
from .fetch import FeedUnavailableError
from .outcomes import TaskResult

__all__ = [
    "DEFAULT_DESK_DEADLINE_S",
    "ENV_DESK_DEADLINE_S",
    "ENV_MAX_WORKERS",
    "DeskDeadlineError",
    "TaskResult",
    "default_workers",
    "failure_kind",
    "resolve_deadline",
    "run_tasks",
    "tune_allocator",
    "tune_allocator_once",
]

log = logging.getLogger(__name__)

#: Per-desk deadline (seconds from the desk's start) when neither the caller
#: nor ``SURV_DESK_DEADLINE_S`` sets one. Generous: a desk of a million trades
#: decodes and detects in seconds; this only has to catch a hung feed.
DEFAULT_DESK_DEADLINE_S = 120.0

#: Environment knobs read at call time, so an operator can change them for the
#: legacy entry point ``process_all_desks(desk_ids)`` without a code change.
ENV_MAX_WORKERS = "SURV_MAX_WORKERS"
ENV_DESK_DEADLINE_S = "SURV_DESK_DEADLINE_S"


class DeskDeadlineError(SurveillanceError, TimeoutError):
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


def tune_allocator_once() -> None:
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
            raise ConfigError(f"{ENV_MAX_WORKERS}={env!r} is not an integer") from None
        if workers < 1:
            raise ConfigError(f"{ENV_MAX_WORKERS}={env!r} must be >= 1")
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        workers = (cores or os.cpu_count() or 1) + 4
    return max(1, min(workers, n_desks))


def resolve_deadline(deadline_s: float | None) -> float | None:
    """The per-desk deadline: ``deadline_s``, else ``SURV_DESK_DEADLINE_S``
    (``none``/``off``/``0``: no deadline), else the default."""
    if deadline_s is not None:
        if not deadline_s > 0:
            raise ConfigError(f"deadline_s must be > 0 seconds (or None): {deadline_s}")
        return float(deadline_s)
    env = os.environ.get(ENV_DESK_DEADLINE_S, "").strip().lower()
    if not env:
        return DEFAULT_DESK_DEADLINE_S
    if env in ("0", "none", "off"):
        return None
    try:
        value = float(env)
    except ValueError:
        raise ConfigError(f"{ENV_DESK_DEADLINE_S}={env!r} is not a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{ENV_DESK_DEADLINE_S}={env!r} must be > 0 (or 'none')")
    return value


class BadResultError(SurveillanceError, TypeError):
    """A task returned something its caller cannot use (a failure, never "no alerts")."""


def failure_kind(exc: BaseException) -> str:
    """The bounded category of a desk failure (metric label, summary)."""
    if isinstance(exc, BadResultError):
        return "bad_result"
    if isinstance(exc, FeedUnavailableError):
        return "feed_unavailable"
    if isinstance(exc, DeskDeadlineError):
        return "timeout"
    # classifying must never fail on the failure path, whatever ingest's state
    try:
        from ..ingest import FeedError
    except ImportError:  # pragma: no cover
        return "error"
    return "bad_feed" if isinstance(exc, FeedError) else "error"


class _DaemonPool:
    """A fixed set of daemon worker threads taking calls from one queue.

    Unlike ``concurrent.futures.ThreadPoolExecutor`` (whose workers the
    interpreter joins at exit), a worker stuck in a call that never returns
    does not keep the process alive."""

    def __init__(self, workers: int, name: str) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        self._calls.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # the caller decides; the worker lives on
                fut.set_exception(exc)

    def shutdown(self) -> None:
        """Idle workers exit; a worker still in a call exits when it returns."""
        for _ in self._threads:
            self._calls.put(None)


def run_tasks(
    desk_ids: Iterable[Hashable],
    task: Callable[[Any], Any],
    *,
    max_workers: int | None = None,
    deadline_s: float | None = None,
    registry: MetricsRegistry | None = None,
    validate: Callable[[Any, Any], None] | None = None,
) -> list[TaskResult]:
    """Run ``task(desk_id)`` for every desk on a bounded thread pool; one
    :class:`TaskResult` per desk, in the order of ``desk_ids``. The first
    call in a process also serves ``/metrics`` when ``SURV_METRICS_PORT`` is
    set and tunes the allocator (:func:`tune_allocator`, unless
    ``SURV_MALLOC_TUNING=0``).

    A desk whose task raises, whose result ``validate(desk_id, result)``
    rejects (raise :class:`BadResultError`), or that passes its deadline is
    failed: logged (ERROR, with the desk id) and counted
    (``surv_desk_failures_total{desk,kind}``), and the other desks still run
    to the end.

    - ``max_workers``: pool size; default :func:`default_workers`.
    - ``deadline_s``: per desk, counted from when its worker starts it
      (queueing for a worker does not count); default ``SURV_DESK_DEADLINE_S``
      or :data:`DEFAULT_DESK_DEADLINE_S`. Python cannot stop a thread: a desk
      past its deadline is reported as ``timeout`` and abandoned, and its
      thread runs on until ``task`` returns (the feed client's own socket
      timeout ends it). If every worker is held by such a desk, desks still
      queued fail as ``timeout`` (not started) rather than waiting forever.
    """
    reg = registry if registry is not None else metrics
    serve_metrics_from_env()
    tune_allocator_once()
    ids = list(desk_ids)
    if not ids:
        return []
    workers = max_workers if max_workers is not None else default_workers(len(ids))
    if workers < 1:
        raise ConfigError(f"max_workers must be >= 1: {workers}")
    deadline = resolve_deadline(deadline_s)
    reg.gauge("surv_pool_workers").set(workers)
    in_flight = reg.gauge("surv_desks_in_flight")

    started: dict[int, float] = {}
    finished_at: dict[int, float] = {}
    # a task's figures are committed when its result is used, or dropped when
    # it returns after its deadline; this lock decides which came first
    decided = threading.Lock()
    committed: set[int] = set()
    abandoned_ids: set[int] = set()
    abandoned_gauge = reg.gauge("surv_desks_abandoned_in_flight")

    def run(index: int, desk_id: Any) -> Any:
        started[index] = time.monotonic()
        in_flight.inc()
        stage = None
        try:
            with staged_metrics() as stage:
                result = task(desk_id)
                if validate is not None:
                    validate(desk_id, result)
            return result
        finally:
            in_flight.dec()
            finished_at[index] = time.monotonic()
            with decided:
                late = index in abandoned_ids
                if not late:
                    committed.add(index)
            if late:
                abandoned_gauge.dec()
                reg.counter("surv_desk_late_results_discarded_total", desk=str(desk_id)).inc()
                log.warning(
                    "desk %s returned %.1fs after it was abandoned at its deadline; its result "
                    "is discarded",
                    desk_id,
                    finished_at[index] - started[index],
                    extra={"desk": str(desk_id), "event": "late_result_discarded"},
                )
            elif stage is not None:
                stage.commit()

    def abandon(index: int) -> bool:
        """Mark the task abandoned unless it already finished in time."""
        with decided:
            if index in committed:
                return False
            abandoned_ids.add(index)
        abandoned_gauge.inc()
        return True

    outcomes: list[TaskResult | None] = [None] * len(ids)
    abandoned: set[cf.Future[Any]] = set()
    log.info(
        "processing %d desk(s) on %d worker(s), deadline %s",
        len(ids),
        workers,
        "none" if deadline is None else f"{deadline:g}s",
        extra={"event": "desks_start", "desks": [str(d) for d in ids], "workers": workers},
    )
    pool = _DaemonPool(workers, "surv-desk")
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
                    if t0 is not None and not fut.done() and now - t0 >= deadline and abandon(i):
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
        pool.shutdown()
    if any(o is None for o in outcomes):  # pragma: no cover - the loop above fills every slot
        raise RuntimeError("internal error: a desk has no outcome; refusing to drop it silently")
    result = [o for o in outcomes if o is not None]
    failed = [o for o in result if not o.ok]
    log.log(
        logging.ERROR if failed else logging.INFO,
        "processed %d desk(s): %d ok, %d failed%s",
        len(ids),
        len(ids) - len(failed),
        len(failed),
        (": " + ", ".join(f"{o.key} ({o.kind})" for o in failed)) if failed else "",
        extra={
            "event": "desks_done",
            "desks": [str(d) for d in ids],
            "failed_desks": [str(o.key) for o in failed],
        },
    )
    return result


def _record(
    reg: MetricsRegistry,
    desk_id: Any,
    value: Any,
    error: BaseException | None,
    seconds: float,
) -> TaskResult:
    desk = str(desk_id)
    reg.histogram("surv_desk_seconds", desk=desk).observe(max(seconds, 0.0))
    if error is None:
        reg.counter("surv_desk_runs_total", desk=desk, outcome="ok").inc()
        reg.gauge("surv_desk_last_success_timestamp_seconds", desk=desk).set(time.time())
        return TaskResult(desk_id, value, None, "ok", seconds)
    kind = failure_kind(error)
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
    return TaskResult(desk_id, None, error, kind, seconds)
