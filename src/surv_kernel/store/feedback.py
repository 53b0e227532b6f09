"""Feedback for calibration: what the analysts' decisions say about the model.

:func:`precision` groups the *decided* cases (closed or escalated: a
disposition was recorded) by typology, home desk or score band and counts
each disposition. A case is a true positive when it was escalated or
reported; ``false_positive`` and ``no_action`` are not (``no_action`` was
reviewed and needed nothing, so it does not support the alert either).
Precision = true positives / decided; undecided cases are counted apart.

:func:`suppressed_later_alerted` finds the suppressed episodes the model
judged within baseline that an alert of the same trader, asset class and
typology overlaps in time (from a later run: a recalibration, another
policy, a stream): the misses worth looking at, with what the analysts
decided about those alerts.
"""

from __future__ import annotations

from typing import Any

from .store import Store

__all__ = ["SCORE_BANDS", "TRUE_POSITIVE", "precision", "suppressed_later_alerted"]

TRUE_POSITIVE = ("escalated", "reported")
#: Score bands (lower bound inclusive); scores are 0..100, robust alerts >= 50.
SCORE_BANDS = (0.0, 50.0, 60.0, 70.0, 80.0, 90.0)

_BAND_SQL = (
    "CASE "
    + " ".join(
        f"WHEN a.score >= {lo:g} THEN '{lo:g}-{hi:g}'"
        for lo, hi in reversed(list(zip(SCORE_BANDS, (*SCORE_BANDS[1:], 100.0), strict=True)))
    )
    + " END"
)

_GROUPS = {"typology": "a.typology", "desk": "a.desk", "score_band": _BAND_SQL}


def precision(store: Store, by: str = "typology") -> list[dict[str, Any]]:
    """One row per group (``by``: typology, desk or score_band): cases,
    decided, each disposition's count, true positives, precision (None when
    nothing was decided)."""
    if by not in _GROUPS:
        raise ValueError(f"by must be one of {', '.join(_GROUPS)}, got {by!r}")
    key = _GROUPS[by]
    tp = ", ".join(f"'{d}'" for d in TRUE_POSITIVE)
    rows = store.backend.query(
        f"SELECT {key} AS g, COUNT(*), "
        "SUM(CASE WHEN d.status IN ('closed', 'escalated') THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN d.disposition IN ({tp}) THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.disposition = 'false_positive' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.disposition = 'no_action' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.disposition = 'reported' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.disposition = 'escalated' THEN 1 ELSE 0 END) "
        "FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id "
        f"GROUP BY {key} ORDER BY {key}"
    )
    store._end_read()
    out = []
    for g, n, decided, tps, fp, na, rep, esc in rows:
        decided, tps = int(decided or 0), int(tps or 0)
        out.append(
            {
                by: g,
                "cases": int(n),
                "decided": decided,
                "true_positives": tps,
                "false_positive": int(fp or 0),
                "no_action": int(na or 0),
                "reported": int(rep or 0),
                "escalated": int(esc or 0),
                "precision": tps / decided if decided else None,
            }
        )
    return out


def suppressed_later_alerted(store: Store) -> dict[str, Any]:
    """Suppressed episodes overlapped by an alert of the same trader, asset
    class and typology seen at or after the run that suppressed them: how
    many, from how many runs, and how many of those alerts the analysts
    decided and found true positives (each such one is a miss of the run
    that suppressed it)."""
    overlap = (
        "SELECT 1 FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id "
        "WHERE a.trader_id = s.trader_id AND a.asset_class = s.asset_class "
        "AND a.typology = s.typology AND a.start_ns <= s.end_ns AND a.end_ns >= s.start_ns "
        "AND a.last_seen_at >= r.recorded_at"
    )
    tp = ", ".join(f"'{d}'" for d in TRUE_POSITIVE)
    (n, runs, decided, tps), (total,) = (
        store.backend.query(
            f"SELECT COUNT(*), COUNT(DISTINCT s.run_no), "
            f"SUM(CASE WHEN EXISTS ({overlap} AND d.status IN ('closed', 'escalated')) "
            "THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN EXISTS ({overlap} AND d.disposition IN ({tp})) THEN 1 ELSE 0 END) "
            f"FROM suppressed s JOIN runs r ON r.run_no = s.run_no WHERE EXISTS ({overlap})"
        )[0],
        store.backend.query("SELECT COUNT(*) FROM suppressed")[0],
    )
    store._end_read()
    return {
        "suppressed": int(total),
        "later_alerted": int(n),
        "runs": int(runs),
        "alerts_decided": int(decided or 0),
        "alerts_true_positive": int(tps or 0),
    }
