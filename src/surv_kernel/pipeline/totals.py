"""Day totals: the per-desk and per-group counts a run's reconciliation needs.

The reconciliation (:mod:`.completeness`), the volume plausibility check
(:mod:`.plausibility`) and the trade-to-alert lag need a few aggregates of
the analysed day, never its rows: how many trades, the first and last
timestamp, trades per (desk, asset class), trades per (trader, asset class,
desk) (to name each group's home desk) and trades and USD notional per desk.
:class:`DayTotals` holds exactly those, so an engine that never holds the
whole day (:mod:`.bounded`) can add them up chunk by chunk, and the local
engine computes them from its merged batch (:meth:`DayTotals.from_batch`).

Keys are dictionary codes of the run's one :class:`~surv_kernel.batch.Dictionaries`;
codes never change within a run (new strings get new codes), so chunk
totals can be added as they arrive. The size is O(groups x desks), never
O(trades).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from ..batch import Dictionaries, TradeBatch

__all__ = ["DayTotals"]


@dataclasses.dataclass
class DayTotals:
    """Aggregates of the analysed trades of one run (see module doc)."""

    dictionaries: Dictionaries
    n: int = 0
    ts_min: int | None = None
    ts_max: int | None = None
    #: (desk code, asset class code) -> trades
    desk_ac: Counter[tuple[int, int]] = dataclasses.field(default_factory=Counter)
    #: (trader code, asset class code, desk code) -> trades
    group_desk: Counter[tuple[int, int, int]] = dataclasses.field(default_factory=Counter)
    #: desk code -> trades, and -> USD notional
    desk_rows: Counter[int] = dataclasses.field(default_factory=Counter)
    desk_usd: dict[int, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_batch(cls, batch: TradeBatch) -> DayTotals:
        out = cls(batch.dictionaries)
        out.add(batch)
        return out

    def add(self, batch: TradeBatch) -> None:
        """Add a batch of this run's trades (any chunk, any order)."""
        n = len(batch)
        if not n:
            return
        self.n += n
        lo, hi = int(batch.timestamp_ns.min()), int(batch.timestamp_ns.max())
        self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
        self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
        # one np.unique over a combined int64 key per chunk, not a Python
        # loop over rows; the code ranges are this chunk's (codes only grow)
        n_ac = int(batch.asset_class.max()) + 1
        n_desk = int(batch.desk.max()) + 1
        key = (batch.trader.astype(np.int64) * n_ac + batch.asset_class) * n_desk + batch.desk
        uniq, counts = np.unique(key, return_counts=True)
        for k, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            group, d = divmod(k, n_desk)
            t, ac = divmod(group, n_ac)
            self.group_desk[(t, ac, d)] += c
            self.desk_ac[(d, ac)] += c
            self.desk_rows[d] += c
        # USD per desk is summed chunk by chunk when an engine adds chunks, so
        # it can differ in the last bits from one bincount over the merged
        # day; only the volume check's ratio (against a 0.5 threshold) reads it
        usd = np.bincount(batch.desk, weights=batch.notional_usd, minlength=n_desk)
        for d in np.flatnonzero(np.bincount(batch.desk, minlength=n_desk)).tolist():
            self.desk_usd[d] = self.desk_usd.get(d, 0.0) + float(usd[d])

    def merge(self, other: DayTotals) -> None:
        """Add another DayTotals of the same run (a desk read whole)."""
        if not other.n:
            return
        self.n += other.n
        lo, hi = other.ts_min, other.ts_max
        if lo is not None and hi is not None:
            self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
            self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
        self.desk_ac.update(other.desk_ac)
        self.group_desk.update(other.group_desk)
        self.desk_rows.update(other.desk_rows)
        for d, usd in other.desk_usd.items():
            self.desk_usd[d] = self.desk_usd.get(d, 0.0) + usd

    def group_home_desks(self) -> dict[tuple[str, str], str]:
        """(trader, asset class) -> the desk that booked most of its trades
        (ties to the smallest desk name)."""
        names = self.dictionaries
        best: dict[tuple[int, int], tuple[int, str]] = {}
        for (t, ac, d), n in self.group_desk.items():
            desk = names.desk[d]
            held = best.get((t, ac))
            if held is None or (-n, desk) < (-held[0], held[1]):
                best[(t, ac)] = (n, desk)
        return {
            (names.trader[t], names.asset_class[ac]): desk for (t, ac), (_, desk) in best.items()
        }
