"""Replay: re-run detection over saved feeds and deliver only what is missing."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..model import Baselines, DetectionConfig
from ..observability import MetricsRegistry
from .engines import LocalEngine
from .outcomes import DeskRunReport
from .run import run
from .sources import BytesSource, ConcatSource, FileSource, Source

__all__ = ["ReplayResult", "replay_window"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay_window` found, per desk (an alert under its home
    desk: the one that booked most of its peak window's trades)."""

    #: desk -> alerts that were NOT delivered before (deliver these)
    new_alerts: dict[str, list[dict[str, Any]]]
    #: desk -> how many replayed alerts were already delivered (skipped)
    duplicates: dict[str, int]
    #: desk -> trades replayed
    trades: dict[str, int]
    #: every desk's outcome (a desk whose replay failed is in it)
    report: DeskRunReport


def _source(desk: str, item: Any) -> Source:
    if isinstance(item, (bytes, bytearray, str)) and not _is_path(item):
        return BytesSource(desk, bytes(item) if isinstance(item, bytearray) else item)
    return FileSource(item, desk=desk)


def _is_path(item: Any) -> bool:
    """A str that names an existing file is a path; any other str is feed text."""
    return (
        isinstance(item, str) and not item.lstrip().startswith(("[", "{")) and os.path.isfile(item)
    )


def replay_window(
    feeds_by_desk: Any,
    *,
    delivered_ids: Iterable[str] = (),
    config: DetectionConfig | None = None,
    baselines: Baselines | None = None,
    max_workers: int | None = None,
    registry: MetricsRegistry | None = None,
) -> ReplayResult:
    """Re-run detection over saved feeds and keep only alerts not yet delivered.

    ``feeds_by_desk`` maps a desk id to its feed(s): bytes/str, a file path,
    or a list of either (the feeds of one desk are read in the order given,
    as the live run saw them). Detection is :func:`surv_kernel.pipeline.run`
    over every desk at once, exactly as ``surv-kernel run`` detects, so a
    trader's burst split across two desks is found again. Alert ids are
    deterministic (trader, asset class, episode start, first trade), so an
    alert already delivered has the same id here and is skipped
    (``delivered_ids``). Replay the same feeds (and ``baselines``) the live
    run used: without baselines they come from the day, and a day cut in
    half gives other baselines and, at the cut, other episodes. Metrics go to
    a fresh registry unless ``registry`` is given, so a replay does not
    pollute the live SLA figures (its alerts' lag is hours by construction).
    """
    reg = registry if registry is not None else MetricsRegistry()
    delivered = set(delivered_ids)
    sources: list[Source] = []
    for desk, items in dict(feeds_by_desk).items():
        parts = items if isinstance(items, (list, tuple)) else [items]
        srcs = [_source(str(desk), item) for item in parts]
        sources.append(srcs[0] if len(srcs) == 1 else ConcatSource(str(desk), srcs))
    result = run(
        sources,
        config=config,
        baselines=baselines,
        engine=LocalEngine(max_workers=max_workers, registry=reg),
        registry=reg,
    )
    report = result.desk_report()
    new: dict[str, list[dict[str, Any]]] = {}
    dup: dict[str, int] = {}
    for outcome in report.outcomes:
        if outcome.alerts is None:
            continue
        fresh = [a for a in outcome.alerts if a["alert_id"] not in delivered]
        new[outcome.desk_id] = fresh
        dup[outcome.desk_id] = len(outcome.alerts) - len(fresh)
    trades = {r.source.desk: r.trades for r in result.reads}
    log.info(
        "replay: %d desk(s), %d new alert(s), %d already delivered, %d desk(s) failed",
        len(sources),
        sum(len(v) for v in new.values()),
        sum(dup.values()),
        len(result.failures),
        extra={
            "event": "replay_done",
            "desks": [s.desk for s in sources],
            "failed_desks": [f.desk for f in result.failures],
        },
    )
    return ReplayResult(new, dup, trades, report)
