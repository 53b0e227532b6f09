"""Detection settings: :class:`DetectionConfig`, and the input checks every
caller of the model shares (batch detection, the stream, the pipeline)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from .. import dtypes

__all__ = ["POLICIES", "DetectionConfig", "check_baselines", "resolve_config"]

POLICIES = ("robust", "static")
#: Longest window: ``t - W`` and ``watermark + W`` must stay inside int64 ns.
MAX_WINDOW_NS = 2**60
#: Largest floor multiplier: beyond it every floor is above any real window.
MAX_THRESHOLD_MULTIPLIER = 1e9


class DetectionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Detection settings; the defaults are the documented model.

    - ``window_minutes``: window length W (legacy meaning).
    - ``threshold_multiplier``: static floor = asset-class floor x this, on USD
      window sums (legacy meaning).
    - ``policy``: ``"robust"`` (floor AND baseline deviation) or ``"static"``
      (every floor-passing episode is alerted; the old meaning without pair
      duplicates).
    - ``z_level`` / ``ratio_level``: a window breaches when its robust z is
      ``>= z_level`` and its sum is ``>= ratio_level`` x the baseline median.
      Both are needed: z alone flags small absolute moves of very regular
      traders, the ratio alone ignores how volatile a trader normally is.
      The z scale is the spread of the group's activity-weighted windows
      (see :func:`baseline_stats`), so bursty traders need a larger multiple.
    - ``min_windows``: an own baseline needs this many windows (history or
      batch); fewer is a cold start and uses a peer baseline.
    - ``stable_windows``: below this many samples an own MAD is too noisy to
      trust (3 samples give almost any MAD); such groups use the typical
      relative dispersion of their asset class (``rel_scale`` of the class
      peers) instead of their own MAD.
    - ``min_peer_groups``: a peer baseline needs this many peer groups.
    - ``peer_quantile``: the peer baseline is this quantile of the peer
      groups' medians (and MADs). The lower quartile, not the median: a cold
      trader is more often a small newcomer than a desk's typical member,
      and institutional books would otherwise lift the desk "normal" over a
      newcomer's abuse. The cost: a cold block trader alerts more readily.
    - ``scale_rel`` / ``scale_abs_usd``: the scale floor (see module docs).
    - ``evidence_floor`` / ``reliability_samples``: the breach test combines
      the evidence ``z / z_level`` and ``ratio / ratio_level`` into one score
      (their geometric mean, weights 1/2) that must reach ``1 +
      reliability_samples / n`` for an own baseline of ``n`` samples (1 for
      peers), each piece reaching at least ``evidence_floor`` of its level
      (1: both levels must be met, as before; below 1 a strong ratio carries
      a z just under its level, and vice versa). See
      :func:`surv_kernel.model.scoring.evidence` for the measurements.
    - ``time_of_day``: scale each window's expected value (baseline median and
      sigma) by its desk's activity at that time of day over the desk's typical
      time (:mod:`surv_kernel.model.profiles`): from the calibrated desk
      profiles when baselines are given, else from the day itself leaving the
      group's own trades out. A busy open is not a burst (factors are in [1,
      1.5]: quiet times do not lower the expectation). False (the default for
      now): every factor is 1, the model before time of day. Off by default
      because the stream and the bounded-memory engine do not carry the
      factors yet (they refuse it), and defaults must give the same alerts on
      every engine; measured gains with it on are in the README.
    - ``detectors``: the typologies the pipeline runs (keys of
      ``model.DETECTORS``: ``"volume_burst"``, ``"structuring"``).
    - ``structuring_trade_fraction`` / ``structuring_min_trades``: the
      structuring detector looks at trades of at most this fraction of their
      asset-class floor, and needs this many of them in the peak window (see
      :mod:`surv_kernel.model.structuring`).

    The defaults were chosen on labelled days of :mod:`surv_kernel.scenario`
    across seeds, trader mixes and knob settings (``python -m
    surv_kernel.scenario``), not on one day, and checked on an independent
    generator built differently (clustered arrivals, heavy-tailed sizes,
    cross-asset traders, 3-30x intensities: ``tests/alt_scenarios.py``).
    """

    window_minutes: float = 30.0
    threshold_multiplier: float = 3.0
    policy: str = "robust"
    z_level: float = 6.0
    ratio_level: float = 4.0
    min_windows: int = 3
    stable_windows: int = 8
    min_peer_groups: int = 3
    peer_quantile: float = 0.25
    scale_rel: float = 0.1
    scale_abs_usd: float = 1000.0
    time_of_day: bool = False
    evidence_floor: float = 1.0
    reliability_samples: float = 0.0
    detectors: tuple[str, ...] = ("volume_burst",)
    structuring_trade_fraction: float = 0.5
    structuring_min_trades: int = 8

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"DetectionConfig.{name} must be a finite number > 0, got {v!r}")

        for name in ("window_minutes", "threshold_multiplier", "z_level", "ratio_level"):
            positive(name)
        # the window in int64 nanoseconds, with room for t - W and wm + W
        if self.window_minutes * dtypes.NS_PER_MINUTE > MAX_WINDOW_NS:
            raise ValueError(
                f"DetectionConfig.window_minutes must be at most {MAX_WINDOW_NS / 6e10:.4g} "
                f"(2**60 ns, about 36 years), got {self.window_minutes!r}"
            )
        if self.threshold_multiplier > MAX_THRESHOLD_MULTIPLIER:
            raise ValueError(
                f"DetectionConfig.threshold_multiplier must be at most "
                f"{MAX_THRESHOLD_MULTIPLIER:g} (a floor no trade can reach switches detection "
                f"off), got {self.threshold_multiplier!r}"
            )
        if self.policy not in POLICIES:
            raise ValueError(
                f"DetectionConfig.policy must be one of {POLICIES}, got {self.policy!r}"
            )
        for name in ("min_windows", "stable_windows", "min_peer_groups"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"DetectionConfig.{name} must be an int >= 1, got {v!r}")
        if not (0.0 <= self.peer_quantile <= 1.0):
            raise ValueError(
                f"DetectionConfig.peer_quantile must be in [0, 1], got {self.peer_quantile!r}"
            )
        if not (math.isfinite(self.scale_rel) and self.scale_rel >= 0):
            raise ValueError(f"DetectionConfig.scale_rel must be >= 0, got {self.scale_rel!r}")
        positive("scale_abs_usd")
        if not (math.isfinite(self.evidence_floor) and 0.0 < self.evidence_floor <= 1.0):
            raise ValueError(
                f"DetectionConfig.evidence_floor must be in (0, 1], got {self.evidence_floor!r}"
            )
        if not (math.isfinite(self.reliability_samples) and self.reliability_samples >= 0):
            raise ValueError(
                "DetectionConfig.reliability_samples must be a finite number >= 0, "
                f"got {self.reliability_samples!r}"
            )
        if not (
            isinstance(self.detectors, tuple)
            and self.detectors
            and all(isinstance(x, str) for x in self.detectors)
            and len(set(self.detectors)) == len(self.detectors)
        ):
            raise ValueError(
                "DetectionConfig.detectors must be a non-empty list of distinct detector "
                f"names, got {self.detectors!r}"
            )
        from .detector import DETECTORS  # the registry imports this module

        unknown = [x for x in self.detectors if x not in DETECTORS]
        if unknown:
            raise ValueError(
                f"DetectionConfig.detectors: unknown {unknown}; known: {sorted(DETECTORS)}"
            )
        if not (
            math.isfinite(self.structuring_trade_fraction)
            and 0.0 < self.structuring_trade_fraction <= 1.0
        ):
            raise ValueError(
                "DetectionConfig.structuring_trade_fraction must be in (0, 1], "
                f"got {self.structuring_trade_fraction!r}"
            )
        if not (isinstance(self.structuring_min_trades, int) and self.structuring_min_trades >= 2):
            raise ValueError(
                "DetectionConfig.structuring_min_trades must be an int >= 2, "
                f"got {self.structuring_min_trades!r}"
            )
        if not isinstance(self.time_of_day, bool):
            raise ValueError(
                f"DetectionConfig.time_of_day must be true or false, got {self.time_of_day!r}"
            )

    @property
    def window_ns(self) -> int:
        return round(self.window_minutes * dtypes.NS_PER_MINUTE)


def resolve_config(config: Any) -> DetectionConfig:
    """``config``, or the defaults for None; a clear TypeError for anything else."""
    cfg = config if config is not None else DetectionConfig()
    if not isinstance(cfg, DetectionConfig):
        raise TypeError(f"config must be a DetectionConfig, got {type(cfg).__name__}")
    return cfg


def check_baselines(baselines: Any, cfg: DetectionConfig) -> None:
    """Refuse anything that is not :class:`~surv_kernel.model.Baselines` made
    with ``cfg``'s window (None passes: baselines from the data itself)."""
    from .baselines import Baselines

    if baselines is None:
        return
    if not isinstance(baselines, Baselines):
        raise TypeError(
            f"baselines must be Baselines (see calibrate), got {type(baselines).__name__}"
        )
    if not math.isclose(baselines.window_minutes, cfg.window_minutes):
        raise ValueError(
            f"baselines were calibrated with {baselines.window_minutes}-minute windows but the "
            f"config uses {cfg.window_minutes}; recalibrate with the same window_minutes"
        )
