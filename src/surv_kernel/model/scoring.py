"""The breach test of floor-passing windows: the one scoring wrapper.

Batch detection and the stream score windows with :func:`score_windows`: the
same baselines, the same kernel call, the same outputs, so a window's verdict
cannot differ between them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..kernels import scoring as kernels
from ..windows import MAD_TO_SIGMA
from .baselines import CodeBaselines
from .config import DetectionConfig
from .profiles import window_bucket

__all__ = ["EVIDENCE_WEIGHTS", "SCALE_NAMES", "ScoredWindows", "evidence", "score_windows"]

#: The weights of the pieces of evidence in the combined score (a weighted
#: geometric mean): window sum over expected in sigmas (z / z_level) and as a
#: multiple (ratio / ratio_level).
EVIDENCE_WEIGHTS = {"z": 0.5, "ratio": 0.5}

#: Where the z scale came from (per window), by the kernel's code.
SCALE_NAMES = ("MAD", "class dispersion", "relative floor", "absolute floor")


def evidence(
    z: float, ratio: float, n: int, own: bool, cfg: DetectionConfig
) -> tuple[float, float, float, float]:
    """``(z / z_level, ratio / ratio_level, combined, required)`` of one scored
    window, as the kernel decides its breach (NaN for floor-only): combined =
    the weighted geometric mean of the two (negative evidence counts as 0),
    required = ``1 + reliability_samples / n`` for an own baseline of ``n``
    samples (fewer samples, stronger evidence needed), 1 for peers. A window
    breaches when combined >= required and each piece >= ``evidence_floor``
    of its level.

    The defaults (floor 1, reliability 0) are the AND of the two levels: of the
    settings measured on the quality-table cases (seeds 0-3, 300 and 2000
    traders, three generators, with time of day), every one traded recall for
    precision or the reverse, none improved both:

    - floor 0.85 or 0.9: recall +0-2 points, precision -1 to -8 (alt 2000 day
      0.59 -> 0.51);
    - reliability 2: precision +1 to +7 points (scenario 2000 day 0.76 ->
      0.83, session 2000 day 0.52 -> 0.56), recall -1 to -2 (alt 300 day 0.958
      -> 0.938), and on tests/test_model_robustness.py's clustered days with
      every desk in one feed recall 0.900 -> 0.871 (at >= 5x 0.940 -> 0.918);
    - reliability 4 / 8: precision up to 0.87 / 0.93 on scenario 2000 day,
      recall down to 0.885 / 0.823 on alt 2000 day.

    A site that prefers fewer false alarms sets ``reliability_samples`` (the
    calibration sweep is the place to choose it on its own labelled days)."""
    ez, er = z / cfg.z_level, ratio / cfg.ratio_level
    if math.isnan(ez) or math.isnan(er):
        return ez, er, math.nan, math.nan
    comb = math.sqrt(max(ez, 0.0) * max(er, 0.0))
    need = 1.0 + cfg.reliability_samples / n if (own and n > 0) else 1.0
    return ez, er, comb, need


class ScoredWindows(NamedTuple):
    """Per scored window: the baseline it was judged against and the verdict."""

    median: np.ndarray  # baseline median (NaN for floor-only)
    mad: np.ndarray  # raw MAD of that baseline
    n: np.ndarray  # samples (own) or peer groups (peer) behind it
    source: np.ndarray  # int8: OWN, PEER_DESK, PEER_CLASS, FLOOR_ONLY
    desk: np.ndarray  # the peer desk code for PEER_DESK, else -1
    scale: np.ndarray  # the sigma used for z
    scale_source: np.ndarray  # int8 into SCALE_NAMES
    z: np.ndarray
    ratio: np.ndarray
    breach: np.ndarray  # bool
    tod: np.ndarray  # the time-of-day factor the window's expected value was scaled by


def score_windows(
    sums: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    row_desk: np.ndarray,
    ts: np.ndarray,
    base: CodeBaselines,
    n_ac: int,
    cfg: DetectionConfig,
    tod: np.ndarray | None = None,
) -> ScoredWindows:
    """Score the windows whose sums are ``sums``: window ``i`` belongs to the
    dense group ``groups[i]`` (``trader * n_ac + asset class``, indexing
    ``base``'s own arrays) and sits at the trade ``rows[i]`` of ``row_desk``
    (a cold group's peers are its trade's desk). Everything is per window:
    its verdict depends on its own sum, its group's baseline and its desk.

    ``ts`` are the windows' timestamps: the expected value (median and sigma)
    is scaled by the time-of-day factor ``base.tod[desk, bucket of the
    window's midpoint]``, or by ``tod`` (one factor per window) when given:
    day detection's factors from the day itself. All 1 with
    ``cfg.time_of_day`` off."""
    m = len(sums)
    if not cfg.time_of_day:
        tod = np.ones(m)
    elif tod is None:
        tod = base.tod[row_desk[rows], window_bucket(ts, cfg.window_ns)]
    med, mad, scale, z, ratio = (np.empty(m) for _ in range(5))
    n, desk = np.empty(m, np.int64), np.empty(m, np.int64)
    src, scale_src = np.empty(m, np.int8), np.empty(m, np.int8)
    breach = np.empty(m, np.bool_)
    kernels.score_windows(
        sums,
        groups,
        rows,
        row_desk,
        tod,
        base.median,
        base.mad,
        base.n,
        base.time_median,
        base.peer_median,
        base.peer_mad,
        base.peer_n,
        base.peer_source,
        base.class_rel_scale,
        n_ac,
        cfg.min_windows,
        cfg.stable_windows,
        MAD_TO_SIGMA,
        cfg.scale_rel,
        cfg.scale_abs_usd,
        cfg.z_level,
        cfg.ratio_level,
        cfg.evidence_floor,
        cfg.reliability_samples,
        med,
        mad,
        n,
        src,
        desk,
        scale,
        scale_src,
        z,
        ratio,
        breach,
    )
    return ScoredWindows(med, mad, n, src, desk, scale, scale_src, z, ratio, breach, tod)
