"""The structuring detector: many trades, each well under the floor, adding up.

Splitting an order into pieces small enough that none of them looks like
anything is the classic way round a per-trade limit. The volume detector sees
such a window only as a sum, among a group's ordinary trading. This detector
looks at the small trades alone:

1. *small* trades are those of at most ``structuring_trade_fraction`` x the
   asset-class floor (the per-trade size limit of the received rule);
2. the volume model runs on the small trades only: windows of the group's
   small trades over the floor, judged against the group's normal of small-
   trade windows (the same baselines, time of day and combined evidence, so a
   flow trader who always trades in many small pieces is not structuring);
3. an alerted episode is structuring only if its peak window holds at least
   ``structuring_min_trades`` small trades: a handful of pieces is an order
   worked in a few fills, not a structure.

Suppression reasons say which step stopped an episode ("within baseline"
from the volume model, or "too few pieces"). Alerts carry ``typology =
"structuring"`` and an id hashed with the typology, so the same trades
alerted by both detectors are two findings with two ids.

Measured on the quality-table days (seeds 0-3, day baselines, defaults 0.5
and 8): the session generator's structuring episodes (each piece at most 0.3x
the floor) are found 16/16 at 300 traders and 15/16 at 2000, with 6 of 40 and
19 of 54 structuring alerts naming no injected trade; on the scenario
generator 15/38 and 22/41 (its pieces are often over half the floor: 8-31
pieces summing to 1.3-3x the static floor); on the alt generator (no
structuring kind) 3 of 35 and 31 of 74 alerts are false, the rest land on its
layering and burst episodes. Fewer false alarms at a fraction of 0.35 (alt
2000: 18 of 49) cost the scenario recall (11/41). Not in the default
``DetectionConfig.detectors``: select it (``detectors=("volume_burst",
"structuring")``, ``surv-kernel run --detectors volume_burst,structuring``).

With ``baselines`` given they are the caller's (calibrated on every trade,
as the pipeline does for all its detectors): small-trade windows judged
against a group's whole normal are a conservative test. Batch only: the
stream runs the volume detector.
"""

from __future__ import annotations

import hashlib

import msgspec
import numpy as np

from ..batch import TradeBatch
from ..reference import asset_class_floor
from .alerts import Alert, Detection, SuppressedEpisode
from .baselines import Baselines
from .calibrate import calibrate
from .config import DetectionConfig, check_baselines, resolve_config
from .volume import detect

__all__ = ["StructuringDetector", "small_trade_rows", "structuring_alert_id"]

TYPOLOGY = "structuring"


def small_trade_rows(batch: TradeBatch, fraction: float) -> np.ndarray:
    """Rows of ``batch`` whose USD notional is at most ``fraction`` x their
    asset-class floor (ascending row order). Raises UnknownAssetClassError for
    a class without a floor, as detection does."""
    names = batch.dictionaries.asset_class.values
    present = np.unique(batch.asset_class)
    limit = np.full(max(len(names), 1), -np.inf)
    for code in present.tolist():
        limit[code] = asset_class_floor(names[code]) * fraction
    return np.flatnonzero(batch.notional_usd <= limit[batch.asset_class])


def structuring_alert_id(volume_id: str) -> str:
    """The id of the episode the volume model gives on the small trades (fixed
    when the episode opens), hashed with the typology: a structuring finding on
    the same trades as a volume burst is a different alert."""
    return hashlib.sha256(f"{TYPOLOGY}|{volume_id}".encode()).hexdigest()[:24]


class StructuringDetector:
    """Many trades each well under the floor adding up inside a window."""

    name = TYPOLOGY

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.config = resolve_config(config)

    def detect(self, batch: TradeBatch, baselines: Baselines | None = None) -> Detection:
        cfg = self.config
        if not isinstance(batch, TradeBatch):
            raise TypeError(f"batch must be a TradeBatch, got {type(batch).__name__}")
        check_baselines(baselines, cfg)
        if len(batch) == 0:
            return Detection([], [], 0, 0)
        small = batch.take(small_trade_rows(batch, cfg.structuring_trade_fraction))
        inner = detect(small, cfg, baselines)
        alerts: list[Alert] = []
        suppressed: list[SuppressedEpisode] = []
        for a in inner.alerts:
            if len(a.trades) < cfg.structuring_min_trades:
                suppressed.append(
                    SuppressedEpisode(
                        a.trader_id,
                        a.asset_class,
                        a.start_ns,
                        a.end_ns,
                        a.peak_ns,
                        a.peak_window_sum_usd,
                        len(a.trades),
                        f"too few pieces: {len(a.trades)} trades under "
                        f"{cfg.structuring_trade_fraction:g} x the floor in the peak window "
                        f"(structuring needs >= {cfg.structuring_min_trades})",
                        a.explanation,
                        TYPOLOGY,
                    )
                )
                continue
            alerts.append(
                msgspec.structs.replace(
                    a, alert_id=structuring_alert_id(a.alert_id), typology=TYPOLOGY
                )
            )
        suppressed += [
            msgspec.structs.replace(s, typology=TYPOLOGY, reason=f"{s.reason} (small trades only)")
            for s in inner.suppressed
        ]

        def key(x):
            return (x.start_ns, x.trader_id, x.asset_class)

        return Detection(
            sorted(alerts, key=key), sorted(suppressed, key=key), len(batch), inner.n_floor_episodes
        )

    def calibrate(self, history: TradeBatch) -> Baselines:
        """Baselines of the history's small trades (its own normal)."""
        cfg = self.config
        return calibrate(
            history.take(small_trade_rows(history, cfg.structuring_trade_fraction)), cfg
        )

    @property
    def horizon_ns(self) -> int:
        return self.config.window_ns

    def __repr__(self) -> str:
        return f"StructuringDetector({self.config!r})"
