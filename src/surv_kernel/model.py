"""The alert model: robust baselines, breaching windows, episodes, explained alerts.

Data flow: TradeBatch -> window statistics (:func:`surv_kernel.window_stats`,
one sort) -> static-floor test of every window (one jitted pass) -> baseline
test of the floor-breaching windows only -> episodes -> one alert per episode,
and a suppression report for every floor-breaching episode that is not alerted.

Group
    (trader, asset class). The static floors are per asset class, and one
    trader's equity and rates books have different normal sizes (a 20M
    rates half hour is routine where a 20M equity half hour is not), so a
    baseline mixing them would be too wide for one and too tight for the other.

Window
    The window of a trade at time ``t`` is the group's trades with timestamp in
    ``[t - W, t]`` (both ends inclusive, every trade at an equal timestamp
    included); its sum is in USD (ingest converted the notionals).

Breach
    A window *passes the floor* when its sum is ``> floor(asset class) *
    threshold_multiplier`` (the received rule's meaning, now on USD window
    sums instead of raw pairs). It *breaches* when it also stands out from its
    baseline: robust ``z = (sum - median) / scale >= z_level`` AND ``sum /
    median >= ratio_level`` (defaults 6 and 4: at least four times the
    group's normal, more for groups whose windows vary a lot). ``scale =
    max(sigma, scale_rel * median, scale_abs_usd)`` with ``sigma = MAD *
    1.4826``: the MAD of a trader whose every window is one trade of the same
    size is 0, so the scale never drops below a tenth of the median.

Baseline
    Per group, a median and MAD of its window sums (:func:`baseline_stats`:
    thinned to disjoint windows so a group's own burst cannot become its
    normal, then median and MAD re-taken over all windows under an outlier
    fence so they are activity-weighted like the windows tested: a trader
    whose trades come in clusters has busy windows in its normal, and its
    spread says so). Without ``baselines`` (the
    legacy entry point) they come from the batch itself; otherwise from
    :func:`calibrate` on history. A group with fewer than ``min_windows``
    samples (cold start) uses a peer baseline: the lower quartile
    (``peer_quantile``) over the peer groups of their thinned medians and
    thinned MADs, peers being the groups of the same asset class whose main
    desk is the trade's desk, else the same asset class on any desk (each
    level needs ``min_peer_groups`` groups with ``min_windows`` samples). A
    group with fewer than ``stable_windows`` samples keeps its own median but
    takes sigma = (its asset class's typical thinned MAD / time median) x
    its own time median: three samples give almost any MAD. With no usable baseline
    at all the floor alone decides (source ``"floor-only"``): the model never
    goes quieter than the static rule for lack of data. Alerts name the
    baseline they used (``explanation.baseline_source``, ``.scale_source``).

Episode
    Breaching windows of one group, in time order, belong to the same episode
    while each breach's window overlaps the previous breach's window, i.e. the
    gap between consecutive breach timestamps is ``<= W``
    (:func:`episode_starts`). One alert per episode: its peak is the breaching
    window with the largest sum (on ties the earliest, then the one whose
    own trade has the smallest id: never the input order), its trades are the trades
    of the peak window in (timestamp, trade id) order; ``start_ns`` is the
    first trade of the first breaching window and ``end_ns`` the last breach.
    The alert id is the episode's identity, ``sha256(trader | asset class |
    start_ns | first trade id of the first breaching window in (timestamp,
    trade id) order)``: fixed when the episode opens, it does not change as
    the episode grows or its peak moves. Only trades of the group arriving
    out of order can move an episode's start earlier and so give it a new
    id (a stream then withdraws the old id, see :mod:`surv_kernel.stream`).
    Floor episodes are built the same way over floor-passing windows; a floor
    episode without any breach goes to :attr:`Detection.suppressed` with the
    reason. ``policy="static"`` alerts every floor episode instead.

Locality (for streaming). With ``baselines`` given, whether a window breaches
and everything an alert carries depend only on the baselines and the group's
trades in ``[t - W, t]`` of the windows involved (a cold group's peer lookup
uses the trade's own desk), so a stream holding the last ``W`` of each group,
plus O(1) state per open episode (first window start, peak, last flagged
time), reproduces batch detection exactly; an episode closes once the
group's time passes its last flagged window by more than ``W``. Alert ids hash
strings and timestamps only (never dictionary codes or row positions), so the
same trades give the same ids whatever the input order or chunking.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from . import dtypes
from .batch import TradeBatch
from .kernels import scoring as model_kernels
from .reference import asset_class_floor
from .windows import MAD_TO_SIGMA, WindowStats, group_median_mad, window_stats

__all__ = [
    "POLICIES",
    "Alert",
    "BaselineStat",
    "Baselines",
    "Detection",
    "DetectionConfig",
    "Explanation",
    "SuppressedEpisode",
    "calibrate",
    "detect",
    "baseline_stats",
    "detect_from_stats",
    "episode_starts",
    "group_codes",
]

POLICIES = ("robust", "static")

# baseline source codes (per row, defined with the kernel) and their names
OWN, PEER_DESK, PEER_CLASS, FLOOR_ONLY = (
    model_kernels.OWN,
    model_kernels.PEER_DESK,
    model_kernels.PEER_CLASS,
    model_kernels.FLOOR_ONLY,
)
SOURCE_NAMES = ("own", "peer:desk", "peer:asset_class", "floor-only")
# where the z scale came from (per row)
SCALE_NAMES = ("MAD", "class dispersion", "relative floor", "absolute floor")


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

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"DetectionConfig.{name} must be a finite number > 0, got {v!r}")

        for name in ("window_minutes", "threshold_multiplier", "z_level", "ratio_level"):
            positive(name)
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

    @property
    def window_ns(self) -> int:
        return round(self.window_minutes * dtypes.NS_PER_MINUTE)


# -- baselines -------------------------------------------------------------------------


class BaselineStat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Median and raw (unscaled) MAD of window sums in USD; ``n`` is the number
    of baseline samples (own baseline) or of peer groups (peer baseline).

    Own baselines: ``median`` is the trimmed activity-weighted median,
    ``window_mad`` the MAD of the same windows (the z scale; None in
    baselines saved before it existed: ``mad`` is used), ``time_median`` and
    ``mad`` the median and MAD of the thinned samples (see
    :func:`baseline_stats`). Peer baselines: ``median`` and ``mad`` are
    quantiles of the members' time medians and thinned (time-weighted) MADs,
    and ``rel_scale`` the median over the members with ``>= stable_windows``
    samples of ``thinned MAD * 1.4826 / time_median``, the typical relative
    dispersion (None: no such member).
    """

    median: float
    mad: float
    n: int
    time_median: float | None = None
    rel_scale: float | None = None
    window_mad: float | None = None


class Baselines(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-group and peer baselines, keyed by names (never dictionary codes,
    which differ between runs).

    - ``groups[trader_id][asset_class]``: the group's own baseline;
    - ``group_desk[trader_id][asset_class]``: the group's main desk (most
      trades; ties to the smallest name), which makes it a peer of that desk;
    - ``desk_peers[asset_class][desk]`` and ``class_peers[asset_class]``:
      the ``peer_quantile`` of the time medians (and MADs) of the peer groups
      with at least ``min_windows`` samples, plus the class dispersion.

    Baselines are only valid for the window length they were made with
    (``window_minutes``; :func:`detect` refuses others).
    """

    window_minutes: float
    min_windows: int
    groups: dict[str, dict[str, BaselineStat]]
    group_desk: dict[str, dict[str, str]]
    desk_peers: dict[str, dict[str, BaselineStat]]
    class_peers: dict[str, BaselineStat]
    version: int = 1

    def to_bytes(self, format: str = "json") -> bytes:
        if format == "json":
            return msgspec.json.encode(self)
        if format == "msgpack":
            return msgspec.msgpack.encode(self)
        raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")

    @classmethod
    def from_bytes(cls, data: bytes, format: str = "json") -> Baselines:
        if format == "json":
            return msgspec.json.decode(data, type=cls)
        if format == "msgpack":
            return msgspec.msgpack.decode(data, type=cls)
        raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")

    @staticmethod
    def _format_of(path: str | os.PathLike[str]) -> str:
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return "json"
        if suffix in (".msgpack", ".mpk"):
            return "msgpack"
        raise ValueError(f"baseline file must end in .json, .msgpack or .mpk, got {str(path)!r}")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path``; the format follows the suffix (.json / .msgpack)."""
        data = self.to_bytes(self._format_of(path))
        tmp = Path(f"{path}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baselines:
        return cls.from_bytes(Path(path).read_bytes(), cls._format_of(path))


class _CodeBaselines(NamedTuple):
    """Baselines resolved to the dictionary codes of one batch."""

    median: np.ndarray  # float64[n_groups], NaN when unknown
    mad: np.ndarray
    n: np.ndarray  # int64[n_groups]: samples behind the own baseline
    time_median: np.ndarray  # float64[n_groups]: median of the thinned samples
    peer_median: np.ndarray  # float64[n_ac, n_desk]: effective peer baseline
    peer_mad: np.ndarray
    peer_n: np.ndarray  # int64[n_ac, n_desk]
    peer_source: np.ndarray  # int8[n_ac, n_desk]: PEER_DESK, PEER_CLASS or FLOOR_ONLY
    class_rel_scale: np.ndarray  # float64[n_ac]: typical sigma / median, NaN if unknown


def group_codes(batch: TradeBatch) -> tuple[np.ndarray, int, int]:
    """Dense (trader, asset class) group codes ``trader * n_ac + asset_class``;
    returns ``(codes int32[n], n_asset_classes, n_groups)``."""
    d = batch.dictionaries
    n_ac = max(len(d.asset_class), 1)
    n_groups = max(len(d.trader), 1) * n_ac
    if n_groups > np.iinfo(dtypes.CODE).max:
        raise ValueError(f"{n_groups} (trader, asset class) groups exceed the int32 code range")
    codes = batch.trader * dtypes.CODE.type(n_ac)
    codes += batch.asset_class
    return codes, n_ac, n_groups


def _main_desk(codes: np.ndarray, desk: np.ndarray, n_groups: int, desk_names: tuple) -> np.ndarray:
    """The desk with most trades per group (ties: smallest desk name), -1 for
    empty groups. Order-independent, so peers do not depend on input order."""
    n_desk = max(len(desk_names), 1)
    counts = np.zeros((n_groups, n_desk), np.int64)
    model_kernels.group_desk_counts(codes, desk, counts)
    by_name = np.argsort(np.array(desk_names, dtype=object), kind="stable") if desk_names else [0]
    best = np.asarray(by_name)[np.argmax(counts[:, by_name], axis=1)]
    return np.where(counts.sum(axis=1) > 0, best, -1)


def _peer_stats(
    members: np.ndarray, median: np.ndarray, mad: np.ndarray, stable: np.ndarray, q: float
) -> BaselineStat:
    st = members[stable[members] & (median[members] > 0)]
    rel = float(np.median(mad[st] * MAD_TO_SIGMA / median[st])) if len(st) else None
    med = float(np.quantile(median[members], q))
    return BaselineStat(med, float(np.quantile(mad[members], q)), int(len(members)), med, rel)


def _peer_tables(
    median: np.ndarray,
    mad: np.ndarray,
    own_ok: np.ndarray,
    stable: np.ndarray,
    group_ac: np.ndarray,
    group_desk: np.ndarray,
    n_ac: int,
    min_peer_groups: int,
    q: float,
) -> tuple[dict[tuple[int, int], BaselineStat], dict[int, BaselineStat]]:
    """Desk-level and class-level peer baselines over groups with an own baseline."""
    desk_peers: dict[tuple[int, int], BaselineStat] = {}
    class_peers: dict[int, BaselineStat] = {}
    ok = own_ok & (group_desk >= 0)
    for ac in range(n_ac):
        in_class = ok & (group_ac == ac)
        if np.count_nonzero(in_class) >= min_peer_groups:
            class_peers[ac] = _peer_stats(np.flatnonzero(in_class), median, mad, stable, q)
        for dk in np.unique(group_desk[in_class]):
            members = np.flatnonzero(in_class & (group_desk == dk))
            if len(members) >= min_peer_groups:
                desk_peers[(ac, int(dk))] = _peer_stats(members, median, mad, stable, q)
    return desk_peers, class_peers


def _effective_peers(
    desk_peers: dict[tuple[int, int], BaselineStat],
    class_peers: dict[int, BaselineStat],
    n_ac: int,
    n_desk: int,
    min_peer_groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rel = np.full(n_ac, np.nan)
    for ac, stat in class_peers.items():
        if stat.rel_scale is not None:
            rel[ac] = stat.rel_scale
    med = np.full((n_ac, n_desk), np.nan)
    mad = np.full((n_ac, n_desk), np.nan)
    n = np.zeros((n_ac, n_desk), np.int64)
    src = np.full((n_ac, n_desk), FLOOR_ONLY, np.int8)
    for ac in range(n_ac):
        for dk in range(n_desk):
            for stat, source in (
                (desk_peers.get((ac, dk)), PEER_DESK),
                (class_peers.get(ac), PEER_CLASS),
            ):
                if stat is not None and stat.n >= min_peer_groups and math.isfinite(stat.median):
                    med[ac, dk], mad[ac, dk], n[ac, dk], src[ac, dk] = (
                        stat.median,
                        stat.mad,
                        stat.n,
                        source,
                    )
                    break
    return med, mad, n, src, rel


#: Outlier fence of the trimmed median and MAD (see :func:`baseline_stats`).
#: Loose on purpose: a window the breach test would not alert on (under
#: ratio_level x normal) is no outlier to remove from the normal; only the
#: group's extreme windows (its abuse among them) are trimmed.
FENCE_Z = 8.0
FENCE_RATIO = 8.0


def baseline_stats(
    ws: WindowStats, scale_rel: float = 0.1, trim: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per group baseline ``(median, mad, n, m_t)`` of its window sums.

    Two robust steps, because a group's own windows contain its abuse:

    1. *Thinned* samples: the window sums kept by
       :func:`surv_kernel.kernels.scoring.thin_windows` (disjoint windows, at
       most one per window length). A burst of k trades would put k windows
       into its own baseline; thinned it puts one or two, so a quiet trader
       whose day is mostly one structuring episode keeps a normal median.
       Their median ``m_t`` and raw MAD ``mad_t`` are robust but
       *time*-weighted, while the windows we test sit at trades, i.e. are
       *activity*-weighted (busy opens and clusters of trades count more),
       so ``m_t`` understates an active trader's normal and ``mad_t`` a
       bursty trader's spread. ``n`` is the number of thinned samples
       ("enough history").
    2. ``median`` and ``mad`` are the median and raw MAD of **all** the
       group's window sums under the outlier fence ``m_t + FENCE_Z *
       sigma_t``, ``sigma_t = mad_t * 1.4826`` clipped to ``[scale_rel,
       (FENCE_RATIO - 1) / FENCE_Z] * m_t`` (so the fence is at most
       ``FENCE_RATIO * m_t``: a MAD from three samples, one of them the
       abuse, must not lift the fence over the abuse): activity-weighted like
       the tested windows, outlying windows trimmed. Both matter for traders
       whose trades come in clusters: their ordinary busy half hours are part
       of their normal (median) and of its spread (MAD), so a cluster of
       ordinary trades is not read as many sigmas; a trader whose windows are
       regular keeps a tight spread.

    ``trim`` (bool per group) limits step 2 to the groups that need it
    (detect: groups with a floor-passing window); the others get ``median =
    m_t`` and ``mad = mad_t``. Groups without windows get NaN and n = 0.
    """
    median, mad, counts, m_t, _ = _baseline_stats(ws, scale_rel, trim)
    return median, mad, counts, m_t


def _baseline_stats(
    ws: WindowStats, scale_rel: float, trim: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`baseline_stats` plus the thinned MAD ``mad_t`` (peers use the
    thinned statistics: they do not depend on which groups were trimmed)."""
    n = len(ws.sums)
    n_groups = len(ws.group_offsets) - 1
    values = np.empty(n, dtypes.NOTIONAL)
    counts = np.empty(n_groups, np.int64)
    m = model_kernels.thin_windows(ws.group_offsets, ws.first, ws.sums, values, counts)
    offsets = np.zeros(n_groups + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    m_t, mad_t = group_median_mad(values[:m], offsets)
    sigma_t = np.clip(mad_t * MAD_TO_SIGMA, scale_rel * m_t, m_t * (FENCE_RATIO - 1.0) / FENCE_Z)
    fence = m_t + FENCE_Z * sigma_t
    if trim is not None:
        fence = np.where(trim, fence, -np.inf)  # keeps nothing: NaN, replaced below
    kept = np.empty(n_groups, np.int64)
    m = model_kernels.values_at_most(ws.group_offsets, ws.sums, fence, values, kept)
    np.cumsum(kept, out=offsets[1:])
    # at least half the thinned samples are <= m_t < fence, so every trimmed
    # group with windows keeps some: NaN only for empty (or untrimmed) groups
    median, mad = group_median_mad(values[:m], offsets)
    if trim is not None:
        median = np.where(trim, median, m_t)
        mad = np.where(trim, mad, mad_t)
    return median, mad, counts, m_t, mad_t


def calibrate(history: TradeBatch, config: DetectionConfig | None = None) -> Baselines:
    """Baselines from ``history`` (one or more past days of trades).

    Own baselines for every (trader, asset class) seen, with their window
    counts (``detect`` decides cold start with its own ``min_windows``), and
    peer baselines over the groups with at least ``config.min_windows``
    windows. O(n) after the window sort.
    """
    cfg = config if config is not None else DetectionConfig()
    if not isinstance(history, TradeBatch):
        raise TypeError(f"history must be a TradeBatch, got {type(history).__name__}")
    _check_notional(history)
    d = history.dictionaries
    codes, n_ac, n_groups = group_codes(history)
    ws = window_stats(codes, history.timestamp_ns, history.notional_usd, cfg.window_ns, n_groups)
    median, mad, n_win, m_t, mad_t = _baseline_stats(ws, cfg.scale_rel, None)
    group_ac = np.arange(n_groups) % n_ac
    desk_names = d.desk.values
    group_desk = _main_desk(codes, history.desk, n_groups, desk_names)
    own_ok = (n_win >= cfg.min_windows) & np.isfinite(median)
    stable = own_ok & (n_win >= cfg.stable_windows)
    desk_p, class_p = _peer_tables(
        m_t,
        mad_t,
        own_ok,
        stable,
        group_ac,
        group_desk,
        n_ac,
        cfg.min_peer_groups,
        cfg.peer_quantile,
    )
    groups: dict[str, dict[str, BaselineStat]] = {}
    gdesk: dict[str, dict[str, str]] = {}
    for g in np.flatnonzero(n_win > 0):
        trader, ac = d.trader[g // n_ac], d.asset_class[g % n_ac]
        groups.setdefault(trader, {})[ac] = BaselineStat(
            float(median[g]), float(mad_t[g]), int(n_win[g]), float(m_t[g]), None, float(mad[g])
        )
        gdesk.setdefault(trader, {})[ac] = desk_names[group_desk[g]]
    desk_peers: dict[str, dict[str, BaselineStat]] = {}
    for (ac, dk), stat in desk_p.items():
        desk_peers.setdefault(d.asset_class[ac], {})[desk_names[dk]] = stat
    return Baselines(
        window_minutes=float(cfg.window_minutes),
        min_windows=cfg.min_windows,
        groups=groups,
        group_desk=gdesk,
        desk_peers=desk_peers,
        class_peers={d.asset_class[ac]: s for ac, s in class_p.items()},
    )


def _baselines_from_batch(
    batch: TradeBatch,
    ws: WindowStats,
    codes: np.ndarray,
    n_ac: int,
    cfg: DetectionConfig,
    need_peers: Any,
    trim: np.ndarray,
) -> _CodeBaselines:
    n_groups = len(ws.group_offsets) - 1
    median, mad, n_win, m_t, mad_t = _baseline_stats(ws, cfg.scale_rel, trim)
    own_ok = (n_win >= cfg.min_windows) & np.isfinite(median)
    desk_names = batch.dictionaries.desk.values
    n_desk = max(len(desk_names), 1)
    desk_p: dict[tuple[int, int], BaselineStat] = {}
    class_p: dict[int, BaselineStat] = {}
    if need_peers(n_win):
        group_desk = _main_desk(codes, batch.desk, n_groups, desk_names)
        desk_p, class_p = _peer_tables(
            m_t,
            mad_t,
            own_ok,
            own_ok & (n_win >= cfg.stable_windows),
            np.arange(n_groups) % n_ac,
            group_desk,
            n_ac,
            cfg.min_peer_groups,
            cfg.peer_quantile,
        )
    peers = _effective_peers(desk_p, class_p, n_ac, n_desk, cfg.min_peer_groups)
    return _CodeBaselines(median, mad, n_win, m_t, *peers)


def _baselines_from_given(
    batch: TradeBatch, baselines: Baselines, n_ac: int, n_groups: int, cfg: DetectionConfig
) -> _CodeBaselines:
    d = batch.dictionaries
    median = np.full(n_groups, np.nan)
    mad = np.full(n_groups, np.nan)
    n = np.zeros(n_groups, np.int64)
    m_t = np.full(n_groups, np.nan)
    ac_names = d.asset_class.values
    for t, trader in enumerate(d.trader.values):
        books = baselines.groups.get(trader)
        if not books:
            continue
        for a, ac in enumerate(ac_names):
            stat = books.get(ac)
            if stat is not None:
                g = t * n_ac + a
                median[g], n[g] = stat.median, stat.n
                mad[g] = stat.mad if stat.window_mad is None else stat.window_mad
                m_t[g] = stat.median if stat.time_median is None else stat.time_median
    desk_names = d.desk.values
    n_desk = max(len(desk_names), 1)
    desk_p = {}
    for a, ac in enumerate(ac_names):
        for k, desk in enumerate(desk_names):
            stat = baselines.desk_peers.get(ac, {}).get(desk)
            if stat is not None:
                desk_p[(a, k)] = stat
    class_p = {
        a: baselines.class_peers[ac] for a, ac in enumerate(ac_names) if ac in baselines.class_peers
    }
    peers = _effective_peers(desk_p, class_p, n_ac, n_desk, cfg.min_peer_groups)
    return _CodeBaselines(median, mad, n, m_t, *peers)


# -- alerts -----------------------------------------------------------------------------


class Explanation(msgspec.Struct, frozen=True):
    """Why a window was (or was not) alerted, at the episode's peak window."""

    window_sum_usd: float  # the peak window's USD sum
    floor_usd: float  # asset-class floor x threshold multiplier
    asset_class_floor_usd: float
    threshold_multiplier: float
    baseline_source: str  # "own", "peer:desk", "peer:asset_class" or "floor-only"
    baseline_desk: str  # the peer desk for "peer:desk", else ""
    baseline_median_usd: float  # NaN for floor-only
    baseline_mad_usd: float  # raw MAD (x 1.4826 for sigma)
    baseline_n: int  # samples behind an own baseline, peer groups behind a peer one
    scale_usd: float  # the sigma used for z: max(sigma, scale_rel*median, scale_abs_usd)
    scale_source: str  # "MAD", "class dispersion", "relative floor", "absolute floor", ""
    z: float  # NaN for floor-only
    ratio: float  # window sum / baseline median; NaN for floor-only
    z_level: float
    ratio_level: float
    n_windows: int  # breaching windows (alerts) or floor-passing windows (suppressed)

    def describe(self) -> str:
        """One human-readable sentence with every number of the decision."""
        head = (
            f"window sum {_fmt_usd(self.window_sum_usd)} USD > floor {_fmt_usd(self.floor_usd)} "
            f"({_fmt_usd(self.asset_class_floor_usd)} x {self.threshold_multiplier:g})"
        )
        if self.baseline_source == SOURCE_NAMES[FLOOR_ONLY]:
            return f"{head}; no baseline (too little history, no peers): the floor alone decides"
        where = self.baseline_source + (f" {self.baseline_desk}" if self.baseline_desk else "")
        unit = "samples" if self.baseline_source == SOURCE_NAMES[OWN] else "peer groups"
        return (
            f"{head}; {self.ratio:.1f}x the {where} baseline median "
            f"{_fmt_usd(self.baseline_median_usd)} over {self.baseline_n} {unit} (MAD "
            f"{_fmt_usd(self.baseline_mad_usd)}, sigma {_fmt_usd(self.scale_usd)} from "
            f"{self.scale_source}); {_verdict(self.z, self.ratio, self.z_level, self.ratio_level)}"
        )


class Alert(msgspec.Struct, frozen=True):
    alert_id: str  # sha256(trader|asset class|start_ns|first trade of the first breach), 24 hex
    trader_id: str
    asset_class: str
    start_ns: int  # first trade of the episode's first breaching window
    end_ns: int  # the episode's last breaching trade
    peak_ns: int  # the peak window's last trade
    peak_window_sum_usd: float
    trades: list[str]  # the peak window's trades, (timestamp, trade id) order
    score: float  # 0..100, see _score
    window_minutes: float
    policy: str
    explanation: Explanation

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the legacy keys (``trader_id``, ``trades``,
        ``combined_notional`` = peak window USD sum, ``window_minutes``), every
        field of the alert, and ``explanation["text"]``."""
        out = msgspec.to_builtins(self)
        out["combined_notional"] = self.peak_window_sum_usd
        out["explanation"]["text"] = self.explanation.describe()
        return out


class SuppressedEpisode(msgspec.Struct, frozen=True):
    """A floor-passing episode that was not alerted, and why.

    The peak window's trades are the group's trades with timestamps in
    ``[peak_ns - W, peak_ns]`` (``n_trades`` of them); they are not copied
    here because a busy institutional day has thousands of such episodes.
    """

    trader_id: str
    asset_class: str
    start_ns: int
    end_ns: int
    peak_ns: int
    peak_window_sum_usd: float
    n_trades: int
    reason: str
    explanation: Explanation


class Detection(msgspec.Struct):
    """Result of :func:`detect`: the alerts, and the suppression report holding
    every floor-passing episode that was not alerted, both sorted by
    (start_ns, trader_id, asset_class). ``n_floor_episodes`` counts the
    floor-passing episodes: each one contains at least one alerted episode or
    is in ``suppressed`` (under ``policy="static"`` each is one alert)."""

    alerts: list[Alert]
    suppressed: list[SuppressedEpisode]
    n_trades: int
    n_floor_episodes: int


def episode_starts(group: np.ndarray, timestamps_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """Episode boundaries over flagged rows given in (group, time) order.

    A row starts a new episode when it is the first row, belongs to another
    group than the previous row, or comes more than ``window_ns`` after the
    previous row (its window ``[t - W, t]`` no longer overlaps the previous
    flagged window). Returns the indices of the episode starts. This is the
    whole merge rule; a stream applies it to one group's rows as they come.
    """
    n = len(group)
    if n == 0:
        return np.empty(0, np.int64)
    new = np.empty(n, np.bool_)
    new[0] = True
    np.not_equal(group[1:], group[:-1], out=new[1:])
    new[1:] |= np.diff(timestamps_ns) > window_ns
    return np.flatnonzero(new)


def _segment_argmax(
    values: np.ndarray,
    starts: np.ndarray,
    times: np.ndarray | None = None,
    tie_key: Any = None,
) -> np.ndarray:
    """Per segment (``starts`` ascending, last one runs to the end), the index
    of its maximum: rows are time-ordered, so the earliest on ties. With
    ``times`` and ``tie_key`` (index -> sortable key), maxima at that same
    earliest timestamp go to the smallest key: rows of one group at equal
    timestamps share their window (and sum) but not their own trade (its desk
    picks a cold group's peers), and their row order is the input order."""
    seg_max = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    is_max = values == np.repeat(seg_max, lengths)
    pos = np.flatnonzero(is_max)
    seg = np.searchsorted(starts, pos, side="right") - 1
    first = np.ones(len(pos), np.bool_)
    first[1:] = seg[1:] != seg[:-1]
    out = pos[first]
    if tie_key is not None and times is not None and len(pos) > len(out):
        tied = times[pos] == times[out[seg]]
        n_tied = np.bincount(seg[tied], minlength=len(out))
        for j in np.flatnonzero(n_tied > 1).tolist():
            cands = pos[tied & (seg == j)].tolist()
            out[j] = min(cands, key=tie_key)
    return out


def _check_notional(batch: TradeBatch) -> None:
    x = batch.notional_usd
    if len(x) and not np.isfinite(x.sum()):
        bad = np.flatnonzero(~np.isfinite(x))
        if len(bad):
            raise ValueError(
                f"{len(bad)} trades have a non-finite USD notional (first: trade "
                f"{batch.trade_id[bad[0]]!r} = {x[bad[0]]!r}); quarantine them at ingest: a NaN "
                "window sum would never breach and silently blind detection for that window"
            )
        raise ValueError(
            "the USD notionals sum to infinity (values near the float64 limit); "
            "they cannot be real trade sizes, quarantine them at ingest"
        )


def _floors(batch: TradeBatch, offsets: np.ndarray, n_ac: int) -> np.ndarray:
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


def _fmt_usd(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    for unit, scale in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _verdict(z: float, ratio: float, z_level: float, ratio_level: float) -> str:
    zs = ">=" if z >= z_level else "<"
    rs = ">=" if ratio >= ratio_level else "<"
    return f"z={z:.1f} {zs} {z_level:g}, ratio {ratio:.1f} {rs} {ratio_level:g}"


def _score(z: float, ratio: float, s: float, floor: float, floor_only: bool, cfg) -> float:
    """0..100: ``100 f^2 / (1 + f^2)`` with ``f = min(z / z_level, ratio /
    ratio_level)``, so 50 when the weaker test sits exactly at its level, 80
    at twice it, 90 at three times; static-policy alerts inside the baseline
    score below 50. Floor-only alerts use ``f = sum / floor``."""
    f = s / floor if floor_only else min(z / cfg.z_level, ratio / cfg.ratio_level)
    f = max(f, 0.0)
    if math.isinf(f):
        return 100.0
    return round(100.0 * f * f / (1.0 + f * f), 1)


def _alert_id(trader: str, ac: str, start_ns: int, first_trade: str) -> str:
    key = f"{trader}|{ac}|{start_ns}|{first_trade}".encode()
    return hashlib.sha256(key).hexdigest()[:24]


# -- per-episode records: the one place batch (_build) and stream make them ----------


def episode_explanation(
    cfg: DetectionConfig,
    window_sum: float,
    ac_floor: float,
    src: int,
    desk: str,
    median: float,
    mad: float,
    baseline_n: int,
    scale: float,
    scale_src: int,
    z: float,
    ratio: float,
    n_windows: int,
) -> Explanation:
    """The :class:`Explanation` of one episode from its peak window's plain
    values: ``src`` / ``scale_src`` are SOURCE_NAMES / SCALE_NAMES codes,
    ``desk`` the peer desk's name ("" for none)."""
    floor_only = src == FLOOR_ONLY
    # positional construction: ~3x cheaper than keywords, and a busy day
    # has tens of thousands of suppressed episodes (order: the fields)
    return Explanation(
        window_sum,  # window_sum_usd
        ac_floor * cfg.threshold_multiplier,  # floor_usd
        ac_floor,  # asset_class_floor_usd
        cfg.threshold_multiplier,
        SOURCE_NAMES[src],  # baseline_source
        desk,  # baseline_desk
        median,  # baseline_median_usd
        mad,  # baseline_mad_usd
        baseline_n,  # baseline_n
        math.nan if floor_only else scale,  # scale_usd
        "" if floor_only else SCALE_NAMES[scale_src],  # scale_source
        z,
        ratio,
        cfg.z_level,
        cfg.ratio_level,
        n_windows,
    )


def episode_suppressed(
    cfg: DetectionConfig,
    trader: str,
    ac: str,
    start_ns: int,
    end_ns: int,
    peak_ns: int,
    n_trades: int,
    expl: Explanation,
) -> SuppressedEpisode:
    """A floor-passing episode that was not alerted, explained by ``expl``
    (from :func:`episode_explanation`)."""
    return SuppressedEpisode(
        trader,  # trader_id
        ac,  # asset_class
        start_ns,
        end_ns,
        peak_ns,
        expl.window_sum_usd,  # peak_window_sum_usd
        n_trades,
        "within baseline: " + _verdict(expl.z, expl.ratio, cfg.z_level, cfg.ratio_level),
        expl,
    )


def episode_alert(
    cfg: DetectionConfig,
    trader: str,
    ac: str,
    start_ns: int,
    first_trade: str,
    end_ns: int,
    peak_ns: int,
    trades: list[str],
    expl: Explanation,
) -> Alert:
    """An alerted episode: its id is the episode's (start and the first
    trade, in (timestamp, trade id) order, of its first breaching window);
    ``trades`` are the peak window's trades; ``expl`` from
    :func:`episode_explanation`."""
    s = expl.window_sum_usd
    floor_only = expl.baseline_source == SOURCE_NAMES[FLOOR_ONLY]
    return Alert(
        alert_id=_alert_id(trader, ac, start_ns, first_trade),
        trader_id=trader,
        asset_class=ac,
        start_ns=start_ns,
        end_ns=end_ns,
        peak_ns=peak_ns,
        peak_window_sum_usd=s,
        trades=trades,
        score=_score(expl.z, expl.ratio, s, expl.floor_usd, floor_only, cfg),
        window_minutes=cfg.window_minutes,
        policy=cfg.policy,
        explanation=expl,
    )


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
    cfg = config if config is not None else DetectionConfig()
    if not isinstance(cfg, DetectionConfig):
        raise TypeError(f"config must be a DetectionConfig, got {type(cfg).__name__}")
    if not isinstance(batch, TradeBatch):
        raise TypeError(
            "batch must be a TradeBatch (see surv_kernel.columns_from_dicts), "
            f"got {type(batch).__name__}"
        )
    if baselines is not None:
        if not isinstance(baselines, Baselines):
            raise TypeError(
                f"baselines must be Baselines (see calibrate), got {type(baselines).__name__}"
            )
        if not math.isclose(baselines.window_minutes, cfg.window_minutes):
            raise ValueError(
                f"baselines were calibrated with {baselines.window_minutes}-minute windows but the "
                f"config uses {cfg.window_minutes}; recalibrate with the same window_minutes"
            )
    if len(batch) == 0:
        return Detection([], [], 0, 0)
    _check_notional(batch)
    codes, n_ac, n_groups = group_codes(batch)
    ws = window_stats(codes, batch.timestamp_ns, batch.notional_usd, cfg.window_ns, n_groups)
    return detect_from_stats(batch, ws, codes, cfg, baselines)


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


def _score_rows(
    batch: TradeBatch,
    ws: WindowStats,
    cfg: DetectionConfig,
    base: _CodeBaselines,
    F: np.ndarray,
    Fg: np.ndarray,
    n_ac: int,
) -> _Rows:
    """Baseline, z, ratio and the breach decision of each floor-passing window
    (:func:`surv_kernel.kernels.scoring.score_windows`: one jitted pass).
    Everything here is per row: a window's verdict depends on its own sum,
    its group's baseline and (cold groups) its own desk."""
    m = len(F)
    in_rows = ws.order[F]
    s = ws.sums[F]
    ts = batch.timestamp_ns[in_rows]
    med, mad, scale, z, ratio = (np.empty(m) for _ in range(5))
    bn, peer_desk = np.empty(m, np.int64), np.empty(m, np.int64)
    src, scale_src = np.empty(m, np.int8), np.empty(m, np.int8)
    breach = np.empty(m, np.bool_)
    model_kernels.score_windows(
        s,
        Fg,
        in_rows,
        batch.desk,
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
        bn,
        src,
        peer_desk,
        scale,
        scale_src,
        z,
        ratio,
        breach,
    )
    return _Rows(F, Fg, s, ts, med, mad, bn, src, peer_desk, scale, scale_src, z, ratio, breach)


def detect_from_stats(
    batch: TradeBatch,
    ws: WindowStats,
    codes: np.ndarray,
    cfg: DetectionConfig,
    baselines: Baselines | None = None,
) -> Detection:
    """:func:`detect` from window statistics already computed on
    ``group_codes(batch)`` (so a caller holding them does not sort twice)."""
    n = len(batch)
    d = batch.dictionaries
    n_ac = max(len(d.asset_class), 1)
    off = ws.group_offsets
    n_groups = len(off) - 1
    floors = _floors(batch, off, n_ac)

    # 1. static floor, every window: one jitted pass
    group_floor = floors[np.arange(n_groups) % n_ac] * cfg.threshold_multiplier
    rows = np.empty(n, np.int64)
    rows_g = np.empty(n, np.int64)
    m = model_kernels.rows_above(ws.sums, off, group_floor, rows, rows_g)
    F, Fg = rows[:m].copy(), rows_g[:m].copy()  # sorted-order rows, grouped, time-ordered
    del rows, rows_g
    if m == 0:
        return Detection([], [], n, 0)

    # 2. baselines, looked up for the floor-passing windows only
    if baselines is None:

        def need_peers(n_win: np.ndarray) -> bool:
            # peers (and the class dispersion) serve cold and small-sample
            # groups only; skip their O(n) desk count when none passes the floor
            return bool(np.any(n_win[Fg] < max(cfg.min_windows, cfg.stable_windows)))

        trim = np.zeros(n_groups, np.bool_)
        trim[Fg] = True
        base = _baselines_from_batch(batch, ws, codes, n_ac, cfg, need_peers, trim)
    else:
        base = _baselines_from_given(batch, baselines, n_ac, n_groups, cfg)
    r = _score_rows(batch, ws, cfg, base, F, Fg, n_ac)

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
        a_peaks = B[_segment_argmax(r.s[B], a_starts, r.ts[B], lambda p: row_tid(B[p]))]
        alerts = _build(
            batch, ws, cfg, floors, r, B[a_starts], B[a_ends], a_peaks, a_ends - a_starts + 1, True
        )
    suppressed: list[Any] = []
    if len(suppressed_eps):
        f_peaks = _segment_argmax(r.s, f_starts, r.ts, row_tid)[suppressed_eps]
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
    ) in cols:
        desk = desks[dk] if dk >= 0 else ""
        expl = episode_explanation(cfg, s, acf, src, desk, med, mad, bn, sc, ssrc, z, ratio, nw)
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
