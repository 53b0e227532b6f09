"""Calibration: baselines and desk profiles from past days of trades."""

from __future__ import annotations

import contextlib

import numpy as np

from ..batch import TradeBatch
from ..reference import ReferenceDataError, asset_class_floor
from ..windows import window_stats
from .baselines import (
    Baselines,
    baseline_stats_with_thinned_mad,
    build_baselines,
    check_notional,
    group_codes,
    main_desk,
)
from .config import DetectionConfig
from .episodes import episode_starts
from .profiles import desk_profiles
from .volume import floor_rows

__all__ = ["calibrate"]


def calibrate(history: TradeBatch, config: DetectionConfig | None = None) -> Baselines:
    """Baselines from ``history`` (one or more past days of trades).

    Own baselines for every (trader, asset class) seen, with their window
    counts (``detect`` decides cold start with its own ``min_windows``), peer
    baselines over the groups with at least ``config.min_windows`` windows,
    and every desk's profile (its normal day by time of day, see
    :mod:`surv_kernel.model.profiles`). O(n) after the window sort.
    """
    cfg = config if config is not None else DetectionConfig()
    if not isinstance(history, TradeBatch):
        raise TypeError(f"history must be a TradeBatch, got {type(history).__name__}")
    check_notional(history)
    d = history.dictionaries
    codes, n_ac, n_groups = group_codes(history)
    ws = window_stats(codes, history.timestamp_ns, history.notional_usd, cfg.window_ns, n_groups)
    median, mad, n_win, m_t, mad_t = baseline_stats_with_thinned_mad(ws, cfg.scale_rel)
    g = np.arange(n_groups)
    group_desk = main_desk(codes, history.desk, n_groups, d.desk.values)
    # the history's floor-passing episodes, by their group's main desk: what a
    # desk normally gives the detector to judge (an asset class without a
    # floor has none; ingest refuses its trades anyway)
    floors = np.full(n_ac, np.inf)
    for code, name in enumerate(d.asset_class.values):
        with contextlib.suppress(ReferenceDataError):
            floors[code] = asset_class_floor(name)
    F, Fg = floor_rows(ws, floors, n_ac, cfg)
    starts = episode_starts(Fg, history.timestamp_ns[ws.order[F]], cfg.window_ns)
    profiles = desk_profiles(history, group_desk[Fg[starts]])
    return build_baselines(
        cfg,
        d.trader.values,
        d.asset_class.values,
        d.desk.values,
        g // n_ac,
        g % n_ac,
        np.flatnonzero(n_win > 0),
        median,
        mad_t,
        n_win,
        m_t,
        mad,
        group_desk,
        profiles,
    )
