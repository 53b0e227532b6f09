"""The breach test of floor-passing windows: the one scoring wrapper.

Batch detection and the stream score windows with :func:`score_windows`: the
same baselines, the same kernel call, the same outputs, so a window's verdict
cannot differ between them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import scoring as kernels
from ..windows import MAD_TO_SIGMA
from .baselines import CodeBaselines
from .config import DetectionConfig
from .profiles import window_bucket

__all__ = ["SCALE_NAMES", "ScoredWindows", "score_windows"]

#: Where the z scale came from (per window), by the kernel's code.
SCALE_NAMES = ("MAD", "class dispersion", "relative floor", "absolute floor")


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
