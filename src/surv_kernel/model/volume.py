"""The volume-window detector: today's model, as the first Detector.

``detect``: windows of every (trader, asset class) group -> the static floor
test of every window (one jitted pass) -> the baseline test of the
floor-passing windows only -> episodes -> one explained alert per episode,
and a suppression report for every floor-passing episode that is not
alerted. The rules are in :mod:`surv_kernel.model`'s docstring.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..batch import TradeBatch
from ..kernels import scoring as kernels
from ..reference import asset_class_floor
from ..windows import WindowStats, window_stats
from .alerts import Alert, Detection, episode_alert, episode_explanation, episode_suppressed
from .baselines import (
    Baselines,
    CodeBaselines,
    baselines_from_batch,
    check_notional,
    group_codes,
    resolve_baselines,
)
from .config import DetectionConfig, check_baselines, resolve_config
from .episodes import episode_starts, segment_argmax
from .profiles import day_tod_factors
from .scoring import score_windows

__all__ = ["detect", "detect_from_stats", "floor_rows", "floors_of"]


def floors_of(batch: TradeBatch, offsets: np.ndarray, n_ac: int) -> np.ndarray:
    """Asset-class floors by code (inf for classes without trades); raises
    UnknownAssetClassError for a class that has trades but no floor. Reads
    the group sizes, not the n-long asset class column."""
    names = batch.dictionaries.asset_class.values
    rows = np.diff(offsets)
    present = np.zeros(n_ac, bool)
    np.logical_or.at(present, np.arange(len(rows)) % n_ac, rows > 0)
    out = np.full(n_ac, np.inf)
    for code, name in enumerate(names):
        if present[code]:
            out[code] = asset_class_floor(name)
    return out


def detect(
    batch: TradeBatch, config: DetectionConfig | None = None, baselines: Baselines | None = None
) -> Detection:
    """Alerts and the suppression report for ``batch``.

    Without ``baselines`` each group's baseline is computed from the batch
    itself (the legacy path); with them (see :func:`calibrate`) detection is
    local in time and a stream can reproduce it. Raises ``ValueError`` for
    non-finite notionals or baselines calibrated with another window, and
    ``UnknownAssetClassError`` for an asset class without a floor.
    """
    cfg = resolve_config(config)
    if not isinstance(batch, TradeBatch):
        raise TypeError(
            "batch must be a TradeBatch (see surv_kernel.columns_from_dicts), "
            f"got {type(batch).__name__}"
        )
    check_baselines(baselines, cfg)
    if len(batch) == 0:
        return Detection([], [], 0, 0)
    check_notional(batch)
    codes, n_ac, n_groups = group_codes(batch)
    ws = window_stats(codes, batch.timestamp_ns, batch.notional_usd, cfg.window_ns, n_groups)
    return detect_from_stats(batch, ws, codes, cfg, baselines)


def floor_rows(
    ws: WindowStats, floors: np.ndarray, n_ac: int, cfg: DetectionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The floor-passing windows: their sorted-order rows and groups, grouped
    and time-ordered (``floors`` by asset-class code, see :func:`floors_of`)."""
    n = len(ws.sums)
    n_groups = len(ws.group_offsets) - 1
    group_floor = floors[np.arange(n_groups) % n_ac] * cfg.threshold_multiplier
    rows = np.empty(n, np.int64)
    rows_g = np.empty(n, np.int64)
    m = kernels.rows_above(ws.sums, ws.group_offsets, group_floor, rows, rows_g)
    return rows[:m].copy(), rows_g[:m].copy()


class _Rows(NamedTuple):
    """Per floor-passing window arrays (index i in 0..m), sorted (group, time)."""

    F: np.ndarray  # sorted-order row of the window
    g: np.ndarray  # group
    s: np.ndarray  # window sum
    ts: np.ndarray  # timestamp of the window's row
    med: np.ndarray
    mad: np.ndarray
    n: np.ndarray  # baseline_n
    src: np.ndarray  # baseline source code
    desk: np.ndarray  # peer desk code for PEER_DESK, else -1
    scale: np.ndarray
    scale_src: np.ndarray
    z: np.ndarray
    ratio: np.ndarray
    breach: np.ndarray
    tod: np.ndarray  # time-of-day factor of the expected value


def _score_rows(
    batch: TradeBatch,
    ws: WindowStats,
    cfg: DetectionConfig,
    base: CodeBaselines,
    F: np.ndarray,
    Fg: np.ndarray,
    n_ac: int,
    from_day: bool,
) -> _Rows:
    """Baseline, z, ratio and the breach decision of each floor-passing window
    (:func:`surv_kernel.model.scoring.score_windows`, one jitted pass).
    ``from_day``: time-of-day factors from the day itself (no baselines)."""
    in_rows = ws.order[F]
    s = ws.sums[F]
    ts = batch.timestamp_ns[in_rows]
    tod = None
    if from_day and cfg.time_of_day:
        n_desk = max(len(batch.dictionaries.desk), 1)
        tod = day_tod_factors(
            batch.desk, batch.timestamp_ns, n_desk, ws.group_offsets, ws.order, Fg,
            batch.desk[in_rows].astype(np.int64), ts, cfg.window_ns,
        )  # fmt: skip
    scored = score_windows(s, Fg, in_rows, batch.desk, ts, base, n_ac, cfg, tod)
    return _Rows(F, Fg, s, ts, *scored)


def detect_from_stats(
    batch: TradeBatch,
    ws: WindowStats,
    codes: np.ndarray,
    cfg: DetectionConfig,
    baselines: Baselines | None = None,
    code_baselines: CodeBaselines | None = None,
) -> Detection:
    """:func:`detect` from window statistics already computed on
    ``group_codes(batch)`` (so a caller holding them does not sort twice).

    ``code_baselines``: the baselines already resolved to this batch's codes
    (the bounded-memory engine computes the day's own baselines group by
    group over slices of the day and passes them here; it then takes
    precedence over ``baselines``)."""
    n = len(batch)
    d = batch.dictionaries
    n_ac = max(len(d.asset_class), 1)
    off = ws.group_offsets
    n_groups = len(off) - 1
    floors = floors_of(batch, off, n_ac)

    # 1. static floor, every window: one jitted pass
    F, Fg = floor_rows(ws, floors, n_ac, cfg)
    m = len(F)
    if m == 0:
        return Detection([], [], n, 0)

    # 2. baselines, looked up for the floor-passing windows only
    if code_baselines is not None:
        base = code_baselines
    elif baselines is None:

        def need_peers(n_win: np.ndarray) -> bool:
            # peers (and the class dispersion) serve cold and small-sample
            # groups only; skip their O(n) desk count when none passes the floor
            return bool(np.any(n_win[Fg] < max(cfg.min_windows, cfg.stable_windows)))

        trim = np.zeros(n_groups, np.bool_)
        trim[Fg] = True
        base = baselines_from_batch(batch, ws, codes, n_ac, cfg, need_peers, trim)
    else:
        base = resolve_baselines(
            baselines, d.trader.values, d.asset_class.values, d.desk.values, cfg
        )
    r = _score_rows(batch, ws, cfg, base, F, Fg, n_ac, baselines is None)

    # 3. episodes: floor episodes over the floor-passing windows; alert
    # episodes over the breaching ones (all floor episodes under "static")
    W = cfg.window_ns
    f_starts = episode_starts(r.g, r.ts, W)
    f_ends = np.append(f_starts[1:], m) - 1
    if cfg.policy == "static":
        B = np.arange(m)
        a_starts = f_starts
        suppressed_eps = np.empty(0, np.int64)
    else:
        B = np.flatnonzero(r.breach)
        a_starts = episode_starts(r.g[B], r.ts[B], W)
        alerted = np.logical_or.reduceat(r.breach, f_starts)
        suppressed_eps = np.flatnonzero(~alerted)

    def row_tid(i: int) -> str:
        # peak tie-break among windows at one timestamp: the row's own trade id
        return batch.trade_id[ws.order[r.F[i]]]

    alerts: list[Alert] = []
    if len(B):
        a_ends = np.append(a_starts[1:], len(B)) - 1
        a_peaks = B[segment_argmax(r.s[B], a_starts, r.ts[B], lambda p: row_tid(B[p]))]
        alerts = _build(
            batch, ws, cfg, floors, r, B[a_starts], B[a_ends], a_peaks, a_ends - a_starts + 1, True
        )
    suppressed: list[Any] = []
    if len(suppressed_eps):
        f_peaks = segment_argmax(r.s, f_starts, r.ts, row_tid)[suppressed_eps]
        firsts, lasts = f_starts[suppressed_eps], f_ends[suppressed_eps]
        suppressed = _build(
            batch, ws, cfg, floors, r, firsts, lasts, f_peaks, lasts - firsts + 1, False
        )
    return Detection(alerts, suppressed, n, len(f_starts))


def _name_rank(names: tuple[str, ...]) -> np.ndarray:
    """rank[code] = position of the code's string in sorted order."""
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
    return rank


def _build(
    batch: TradeBatch,
    ws: WindowStats,
    cfg: DetectionConfig,
    floors: np.ndarray,
    r: _Rows,
    first: np.ndarray,
    last: np.ndarray,
    peak: np.ndarray,
    n_windows: np.ndarray,
    as_alerts: bool,
) -> list[Any]:
    """Alerts (``as_alerts``) or suppressed episodes for the episodes whose
    first, last and peak floor-passing windows are ``first``, ``last``,
    ``peak`` (indices into ``r``), in (start_ns, trader_id, asset_class)
    order. Column arithmetic in NumPy; Python only to make the records."""
    d = batch.dictionaries
    n_ac = max(len(d.asset_class), 1)
    g = r.g[first]
    trader_c, ac_c = g // n_ac, g % n_ac
    # the episode starts with the first trade of its first window
    start_ns = batch.timestamp_ns[ws.order[ws.first[r.F[first]]]]
    key = np.lexsort(
        (_name_rank(d.asset_class.values)[ac_c], _name_rank(d.trader.values)[trader_c], start_ns)
    )
    first, last, peak, n_windows = first[key], last[key], peak[key], n_windows[key]
    trader_c, ac_c, start_ns = trader_c[key], ac_c[key], start_ns[key]
    traders = d.trader.values
    classes = d.asset_class.values
    desks = d.desk.values
    cols = zip(
        [traders[t] for t in trader_c.tolist()],
        [classes[a] for a in ac_c.tolist()],
        start_ns.tolist(),
        r.ts[last].tolist(),
        r.ts[peak].tolist(),
        r.s[peak].tolist(),
        floors[ac_c].tolist(),
        r.src[peak].tolist(),
        r.desk[peak].tolist(),
        r.med[peak].tolist(),
        r.mad[peak].tolist(),
        r.n[peak].tolist(),
        r.scale[peak].tolist(),
        r.scale_src[peak].tolist(),
        r.z[peak].tolist(),
        r.ratio[peak].tolist(),
        n_windows.tolist(),
        peak.tolist(),
        ws.counts[r.F[peak]].tolist(),
        first.tolist(),
        r.tod[peak].tolist(),
        strict=True,
    )
    out = []
    for (
        trader,
        ac,
        start,
        end,
        pk_ns,
        s,
        acf,
        src,
        dk,
        med,
        mad,
        bn,
        sc,
        ssrc,
        z,
        ratio,
        nw,
        i,
        ntr,
        fw,
        tod,
    ) in cols:
        desk = desks[dk] if dk >= 0 else ""
        expl = episode_explanation(
            cfg, s, acf, src, desk, med, mad, bn, sc, ssrc, z, ratio, nw, tod
        )
        if not as_alerts:
            out.append(episode_suppressed(cfg, trader, ac, start, end, pk_ns, ntr, expl))
            continue
        # the id is fixed when the episode opens however its peak moves later
        k0 = int(r.F[fw])
        head = ws.order[ws.first[k0] : ws.last[k0] + 1]
        head = head[batch.timestamp_ns[head] == start]
        first_trade = min(batch.trade_id[head].tolist())
        k = int(r.F[i])
        # the peak window's trades in (timestamp, trade id) order: input
        # order of equal timestamps must not leak into the output
        in_rows = ws.order[ws.first[k] : ws.last[k] + 1]
        pairs = sorted(
            zip(
                batch.timestamp_ns[in_rows].tolist(),
                batch.trade_id[in_rows].tolist(),
                strict=True,
            )
        )
        trades = [t for _, t in pairs]
        out.append(episode_alert(cfg, trader, ac, start, first_trade, end, pk_ns, trades, expl))
    return out
