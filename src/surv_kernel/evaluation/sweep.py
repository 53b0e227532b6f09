"""Calibration sweep: the alert model over labelled days for a grid of thresholds.

"Above and below the line" testing: for every combination of the grid's
values (``DetectionConfig`` fields, by default ``z_level`` x ``ratio_level``
x ``reliability_samples``) detect on every labelled day and pool precision,
recall, alerts, false alerts, alerts per 1,000 trader-days (trader-days =
traders with a trade on a day, summed over the days) and the workload (alerts
per day). :func:`recommend` picks the most precise setting whose pooled recall
reaches ``min_recall`` (ties: higher recall, then the grid order), and
:func:`recommendation` writes it as a versioned record with its rationale,
the data it was chosen on and the whole table, so a threshold in production
can always be traced to the test that chose it.

Labelled days are anything :func:`~surv_kernel.evaluation.scenario.evaluate_alerts`
scores (``(TradeBatch, labelled day)`` pairs); ``surv-kernel calibrate
--sweep`` uses the package's own generator (:func:`generate_day`) over
``--sweep-seeds`` days. A site with its own labelled history (or stored
dispositions) passes those days instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from ..batch import TradeBatch
from ..model import DetectionConfig, detect
from .scenario import evaluate_alerts

__all__ = ["DEFAULT_GRID", "SWEEP_FORMAT", "SweepRow", "recommend", "recommendation", "sweep"]

#: The grid of :func:`sweep` when none is given.
DEFAULT_GRID: Mapping[str, Sequence[float]] = {
    "z_level": (5.0, 6.0, 7.0),
    "ratio_level": (3.0, 4.0, 5.0),
    "reliability_samples": (0.0, 2.0),
}
#: The recommendation record's format name and version.
SWEEP_FORMAT = ("surv_kernel.sweep", 1)


class SweepRow(msgspec.Struct, frozen=True):
    """One setting of the grid, pooled over the days."""

    settings: dict[str, float]
    precision: float  # true positive alerts / alerts (NaN without alerts)
    recall: float  # detected episodes / episodes
    alerts: int
    false_alerts: int
    episodes: int
    detected: int
    alerts_per_1000_trader_days: float
    false_alerts_per_1000_trader_days: float
    alerts_per_day: float  # the analysts' workload
    min_day_precision: float
    min_day_recall: float


def sweep(
    days: Sequence[tuple[TradeBatch, Any]],
    base: DetectionConfig | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> list[SweepRow]:
    """One :class:`SweepRow` per combination of ``grid`` (fields of ``base``
    replaced), in the grid's order (the product of its values, last varying
    fastest). Raises ValueError for no days, an empty grid axis or a field
    ``DetectionConfig`` does not have."""
    cfg0 = base if base is not None else DetectionConfig()
    g = dict(grid if grid is not None else DEFAULT_GRID)
    if not days:
        raise ValueError("sweep needs at least one labelled day")
    fields = set(msgspec.structs.asdict(cfg0))
    for name, values in g.items():
        if name not in fields:
            raise ValueError(f"sweep grid: {name!r} is not a DetectionConfig field")
        if not len(values):
            raise ValueError(f"sweep grid: no values for {name!r}")
    trader_days = sum(len(np.unique(b.trader)) for b, _ in days)
    rows = []
    for combo in itertools.product(*g.values()):
        settings = dict(zip(g, combo, strict=True))
        cfg = msgspec.structs.replace(cfg0, **settings)
        results = [evaluate_alerts(detect(b, cfg).alerts, day) for b, day in days]
        alerts = sum(r.n_alerts for r in results)
        tp = sum(r.true_positives for r in results)
        eps = sum(r.n_episodes for r in results)
        found = sum(r.detected for r in results)
        per_k = 1000.0 / trader_days if trader_days else math.nan
        rows.append(
            SweepRow(
                settings={k: float(v) for k, v in settings.items()},
                precision=tp / alerts if alerts else math.nan,
                recall=found / eps if eps else math.nan,
                alerts=alerts,
                false_alerts=alerts - tp,
                episodes=eps,
                detected=found,
                alerts_per_1000_trader_days=alerts * per_k,
                false_alerts_per_1000_trader_days=(alerts - tp) * per_k,
                alerts_per_day=alerts / len(days),
                min_day_precision=min(
                    (r.precision for r in results if r.n_alerts), default=math.nan
                ),
                min_day_recall=min((r.recall for r in results if r.n_episodes), default=math.nan),
            )
        )
    return rows


def recommend(rows: Sequence[SweepRow], min_recall: float = 0.95) -> tuple[SweepRow, str]:
    """The most precise row whose recall is ``>= min_recall`` (ties: higher
    recall, then the earlier row), with the reason; when none reaches it,
    the row with the highest recall (then precision), saying so."""
    if not rows:
        raise ValueError("no sweep rows to recommend from")

    def prec(r: SweepRow) -> float:
        return -1.0 if math.isnan(r.precision) else r.precision

    ok = [r for r in rows if r.recall >= min_recall]
    if ok:
        best = max(ok, key=lambda r: (prec(r), r.recall, -rows.index(r)))
        why = (
            f"the highest pooled precision ({best.precision:.3f}) among the {len(ok)} of "
            f"{len(rows)} settings with recall >= {min_recall:g} (its recall {best.recall:.3f}, "
            f"{best.false_alerts_per_1000_trader_days:.2f} false alerts per 1,000 trader-days)"
        )
    else:
        best = max(rows, key=lambda r: (r.recall, prec(r), -rows.index(r)))
        why = (
            f"no setting reaches recall {min_recall:g}: the highest recall ({best.recall:.3f}, "
            f"precision {best.precision:.3f}); widen the grid below the current line"
        )
    return best, why


def recommendation(
    rows: Sequence[SweepRow],
    base: DetectionConfig,
    data: Mapping[str, Any],
    min_recall: float = 0.95,
) -> dict[str, Any]:
    """The versioned record ``surv-kernel calibrate --sweep`` writes: the
    recommended ``config`` (every DetectionConfig field), the ``rationale``,
    the ``data`` it was chosen on (what, which days, how many trader-days) and
    the whole ``table``."""
    best, why = recommend(rows, min_recall)
    cfg = msgspec.structs.replace(base, **best.settings)
    return {
        "format": SWEEP_FORMAT[0],
        "version": SWEEP_FORMAT[1],
        "config": msgspec.to_builtins(cfg),
        "rationale": why,
        "min_recall": min_recall,
        "data": dict(data),
        "table": [msgspec.to_builtins(r) for r in rows],
    }
