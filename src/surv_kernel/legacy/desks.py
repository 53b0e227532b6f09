"""The desks, as the received module exposed them: one desk's feed analysed,
every desk on the bounded pool, and the operator helpers of RUNBOOK.md.

The received pipeline lost alerts three ways, and each has its fix:

- a feed that failed its retries became ``None`` and then "no anomalies":
  :func:`fetch_trade_feed` raises :class:`FeedUnavailableError` instead;
- a thread that raised lost its desk without a trace, and results came back in
  completion order without their desk: :func:`process_all_desks` returns one
  entry per desk in the order asked, and a failed desk is raised (or
  reported), logged and counted, never an empty list;
- one unbounded thread per desk, and a hung feed hung the run: the pool is
  bounded and each desk has a deadline.

Both entry points run on :mod:`surv_kernel.pipeline`: :func:`analyze_feed` is
:func:`surv_kernel.pipeline.run` over one desk, :func:`process_all_desks` is
the pipeline's desk pool (:func:`surv_kernel.pipeline.pool.run_tasks`).
Every log record carries ``desk`` (and ``attempt`` for feed calls) as an
``extra=`` field; every outcome moves a metric in
:data:`surv_kernel.observability.metrics` (names in ``observability.METRICS``).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from ..observability import MetricsRegistry, metrics, reason_label
from ..pipeline.engines import LocalEngine
from ..pipeline.fetch import (
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_DELAY,
    RETRYABLE_ERRORS,
    FeedUnavailableError,
    TransientFeedError,
    fetch_trade_feed,
)
from ..pipeline.outcomes import DeskFailuresError, DeskOutcome, DeskRunReport
from ..pipeline.pool import (
    DEFAULT_DESK_DEADLINE_S,
    ENV_DESK_DEADLINE_S,
    ENV_MAX_WORKERS,
    BadResultError,
    DeskDeadlineError,
    default_workers,
    resolve_deadline,
    run_tasks,
    tune_allocator,
)
from ..pipeline.replay import ReplayResult, replay_window
from ..pipeline.run import run
from ..pipeline.sources import BytesSource, CallSource

__all__ = [
    "DEFAULT_BASE_DELAY",
    "DEFAULT_DESK_DEADLINE_S",
    "DEFAULT_MAX_DELAY",
    "ENV_DESK_DEADLINE_S",
    "ENV_MAX_WORKERS",
    "RETRYABLE_ERRORS",
    "DeskDeadlineError",
    "DeskFailuresError",
    "DeskOutcome",
    "DeskRunReport",
    "FeedUnavailableError",
    "ReplayResult",
    "TransientFeedError",
    "analyze_desks",
    "analyze_feed",
    "default_workers",
    "fetch_trade_feed",
    "process_all_desks",
    "reason_label",
    "replay_window",
    "resolve_deadline",
    "run_demo",
    "tune_allocator",
    "warm_up",
]


def analyze_feed(
    desk_id: Any,
    feed: Any,
    *,
    config: Any = None,
    registry: MetricsRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """Decode one desk's feed and detect its alerts; returns the alerts as dicts.

    :func:`surv_kernel.pipeline.run` over this one desk, read in the calling
    thread (a pool worker, for ``process_all_desks``): ``config`` defaults to
    ``DetectionConfig()``. A feed that is not text/bytes or not JSON raises
    ``surv_kernel.ingest.FeedError``. Records the feed could not use are
    quarantined by ingest, logged (WARNING, with their reasons) and counted
    in ``surv_records_quarantined_total``, never dropped quietly. Also
    counted: trades decoded, alerts emitted, episodes suppressed (by
    reason), decode and detect time, and for each alert the lag from its last
    trade's timestamp to now (``clock``, Unix seconds) - the SLA figure.

    Per desk, a trader's burst split across two desks is invisible here:
    ``surv-kernel run`` (or :func:`surv_kernel.pipeline.run` over every desk)
    judges each trader across the desks that booked it.
    """
    reg = registry if registry is not None else metrics
    result = run(
        [BytesSource(desk_id, feed)],
        config=config,
        engine=LocalEngine(registry=reg, inline=True),
        registry=reg,
        live=True,
        clock=clock,
    )
    if result.failures:
        raise result.failures[0].error
    return [alert.to_dict() for alert in result.detection.alerts]


def _check_alert_list(desk_id: Any, result: Any) -> None:
    if not isinstance(result, list):
        raise BadResultError(
            f"desk {desk_id!r}: analyze returned a {type(result).__name__}, not a list of "
            "alerts; treated as a failure so it cannot pass for 'no alerts'"
        )


def process_all_desks(
    desk_ids: Iterable[Hashable],
    *,
    analyze: Callable[[Any], list[dict[str, Any]]],
    max_workers: int | None = None,
    deadline_s: float | None = None,
    report: bool = False,
    registry: MetricsRegistry | None = None,
) -> Any:
    """Run ``analyze(desk_id)`` for every desk on the bounded desk pool.

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

    ``max_workers`` and ``deadline_s``: see
    :func:`surv_kernel.pipeline.pool.run_tasks` (defaults from
    ``SURV_MAX_WORKERS`` and ``SURV_DESK_DEADLINE_S``).
    """
    outcomes = run_tasks(
        desk_ids,
        analyze,
        max_workers=max_workers,
        deadline_s=deadline_s,
        registry=registry,
        validate=_check_alert_list,
    )
    result = DeskRunReport(
        tuple(DeskOutcome(o.key, o.value, o.error, o.kind, o.seconds) for o in outcomes)
    )
    if report:
        return result
    return result.raise_for_failures()


def analyze_desks(
    desk_ids: Iterable[Hashable],
    *,
    fetch: Callable[[Any], Any],
    config: Any = None,
    max_workers: int | None = None,
    deadline_s: float | None = None,
    registry: MetricsRegistry | None = None,
) -> DeskRunReport:
    """Fetch every desk's feed (``fetch(desk_id)``) on the bounded desk pool
    and detect once across the desks that answered, as ``surv-kernel run``
    does: a trader's window is judged across every desk that booked it, so a
    burst split over two desks is one alert. Each alert is reported under its
    home desk (the one that booked most of its peak window's trades); a desk
    whose feed failed has ``alerts=None`` and its error. This is the legacy
    ``process_all_desks(desk_ids)`` and what ``replay_window`` reproduces."""
    reg = registry if registry is not None else metrics
    sources = [CallSource(d, functools.partial(fetch, d)) for d in desk_ids]
    result = run(
        sources,
        config=config,
        engine=LocalEngine(max_workers=max_workers, deadline_s=deadline_s, registry=reg),
        registry=reg,
        live=True,
    )
    return result.desk_report()


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
    """A rehearsal: one synthetic day (``surv_kernel.evaluation.scenario.generate_day``)
    through the real pool, fetch, decode and detection (:func:`analyze_desks`), with the named desks'
    feeds dead (every call raises ConnectionError). Moves the given (default)
    registry's metrics like a production run; never raises for a dead desk,
    returns the report. With ``archive_dir`` every desk's feed is also written
    there as ``<desk>.json`` (what a replay reads)."""
    from ..evaluation.scenario import generate_day

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

    def fetch(desk_id: str) -> bytes:
        return fetch_trade_feed(
            desk_id, api_call=api_call, base_delay=0.01, max_delay=0.05, registry=reg
        )

    return analyze_desks(list(feeds), fetch=fetch, registry=reg)
