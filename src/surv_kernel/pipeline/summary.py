"""The run summary as plain data: what ``summary.json``, the report and the
CLI's summary lines show."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..reference import active_reference
from .engines import one_line
from .run import RunResult, trade_to_alert_lag

__all__ = ["summary_dict"]


def _quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary_dict(result: RunResult, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run summary: desks, trades, quarantine by reason, alerts,
    suppressed episodes by reason, the config, the stages' seconds, the lag
    (opening the first feed to the last alert written) and what was written
    where; ``extra`` adds keys (the demo's evaluation against its labels)."""
    det = result.detection
    counts = result.quarantine_counts
    reference = active_reference()
    live_lag = trade_to_alert_lag(result, time.time())
    written = result.alerts_written_at
    out: dict[str, Any] = {
        "desks": len(result.sources),
        "desks_ok": [r.source.desk for r in result.reads],
        "desks_failed": [
            {"desk": f.desk, "path": f.source.where, "kind": f.kind, "error": one_line(f.error)}
            for f in result.failures
        ],
        "desks_partial": [{"desk": d.desk, "reasons": list(d.reasons)} for d in result.partial],
        "status": "failed" if result.failures else "partial" if result.partial else "ok",
        # per desk and asset class: seen = analysed + quarantined (checked by the run)
        "reconciliation": [d.to_dict() for d in result.desks],
        "bytes": result.n_bytes,
        "trades": det.n_trades,
        "quarantined": sum(counts.values()),
        "quarantined_by_reason": dict(counts.most_common()),
        "quarantine_records_written": len(result.quarantine),
        "alerts": len(det.alerts),
        "suppressed": len(det.suppressed),
        "suppressed_by_reason": dict(
            Counter(s.reason.split(":", 1)[0] for s in det.suppressed).most_common()
        ),
        "floor_episodes": det.n_floor_episodes,
        "config": {
            "window_minutes": result.config.window_minutes,
            "threshold_multiplier": result.config.threshold_multiplier,
            "policy": result.config.policy,
            "baselines": result.baselines_path or "from the day itself",
            # the FX rates and floors every trade of the run was converted and judged with
            "reference": {"version": reference.version, "source": reference.source},
        },
        "stages_s": dict(result.stages),
        "lag_s": (written - result.t_start) if written is not None else None,
        "trade_to_alert_lag_s": None
        if live_lag is None
        else {"p50": _quantile(live_lag, 0.5), "max": max(live_lag)},
        "outputs": dict(result.outputs),
    }
    if extra:
        out.update(extra)
    return out
