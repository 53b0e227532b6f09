"""The detection rule of the received module, kept as the yardstick.

The model is measured against what the bank ran before. This module restates
that rule's semantics in our own words, including its defects, so evaluations
can print "received rule vs model" side by side:

- every ordered pair (i, j), i != j, of trades by the same trader whose
  timestamps are at most ``window_minutes`` apart is considered, so each
  qualifying pair is reported twice, as (i, j) and (j, i);
- the notionals are added raw, whatever their currency;
- the floor is ``ALERT_THRESHOLDS[asset_class of i] * threshold_multiplier``;
  an asset class without a floor is never flagged.

``received_rule_naive`` is the obviously-correct O(n^2) loop. ``received_rule``
produces the same list (same order) in O(n log n + pairs) with NumPy, so
evaluation days of 10^5 trades stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..reference import ASSET_CLASS_FLOORS_USD


def received_rule_naive(
    trades: Sequence[Mapping[str, Any]],
    window_minutes: float = 30,
    threshold_multiplier: float = 3.0,
    floors: Mapping[str, float] = ASSET_CLASS_FLOORS_USD,
) -> list[dict[str, Any]]:
    out = []
    window_s = window_minutes * 60
    for i, a in enumerate(trades):
        floor = floors.get(a["asset_class"])
        for j, b in enumerate(trades):
            if i == j or a["trader_id"] != b["trader_id"]:
                continue
            if abs(a["timestamp"] - b["timestamp"]) > window_s:
                continue
            combined = a["notional"] + b["notional"]
            if floor and combined > floor * threshold_multiplier:
                out.append(
                    {
                        "trader_id": a["trader_id"],
                        "trades": [a["trade_id"], b["trade_id"]],
                        "combined_notional": combined,
                        "window_minutes": window_minutes,
                    }
                )
    return out


def received_rule(
    trades: Sequence[Mapping[str, Any]],
    window_minutes: float = 30,
    threshold_multiplier: float = 3.0,
    floors: Mapping[str, float] = ASSET_CLASS_FLOORS_USD,
) -> list[dict[str, Any]]:
    """Same output as :func:`received_rule_naive`, in the same order."""
    n = len(trades)
    if n == 0:
        return []
    window_s = window_minutes * 60
    ts = np.fromiter((t["timestamp"] for t in trades), np.float64, n)
    notional = [t["notional"] for t in trades]
    traders = [t["trader_id"] for t in trades]
    floor_of = [floors.get(t["asset_class"]) for t in trades]
    by_trader: dict[Any, list[int]] = {}
    for i, trader in enumerate(traders):
        by_trader.setdefault(trader, []).append(i)
    partners: list[np.ndarray] = [np.empty(0, np.int64)] * n
    for rows in by_trader.values():
        rows_a = np.asarray(rows, np.int64)
        order = np.argsort(ts[rows_a], kind="stable")
        sorted_rows = rows_a[order]
        sorted_ts = ts[sorted_rows]
        # widened a little so float rounding in the subtraction cannot drop a
        # partner; the exact |dt| test below decides
        slack = window_s * 1e-9 + 1e-6
        lo = np.searchsorted(sorted_ts, sorted_ts - window_s - slack, side="left")
        hi = np.searchsorted(sorted_ts, sorted_ts + window_s + slack, side="right")
        for k, i in enumerate(sorted_rows):
            # the naive loop visits j in input order; sort the partners back
            partners[i] = np.sort(sorted_rows[lo[k] : hi[k]])
    out = []
    for i in range(n):
        floor = floor_of[i]
        if not floor:
            continue
        limit = floor * threshold_multiplier
        a = trades[i]
        for j in partners[i]:
            j = int(j)
            if j == i:
                continue
            # exact |dt| test as in the naive loop (searchsorted used a subtraction)
            if abs(a["timestamp"] - trades[j]["timestamp"]) > window_s:
                continue
            combined = notional[i] + notional[j]
            if combined > limit:
                out.append(
                    {
                        "trader_id": traders[i],
                        "trades": [a["trade_id"], trades[j]["trade_id"]],
                        "combined_notional": combined,
                        "window_minutes": window_minutes,
                    }
                )
    return out
