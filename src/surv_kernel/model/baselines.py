"""Baselines: what is normal for each (trader, asset class) and its peers.

:func:`surv_kernel.model.calibrate` makes :class:`Baselines` from history; detection without
them computes the same statistics from the batch (:func:`baselines_from_batch`);
:func:`resolve_baselines` turns name-keyed baselines into code arrays for the
scoring kernel (batch and stream alike). See the model's docstring
(:mod:`surv_kernel.model`) for the rules.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from .. import dtypes
from ..batch import TradeBatch
from ..errors import DataError
from ..kernels import scoring as kernels
from ..windows import MAD_TO_SIGMA, WindowStats, group_median_mad
from .config import DetectionConfig
from .profiles import N_BUCKETS, DeskProfile, history_tod_table

__all__ = [
    "FENCE_RATIO",
    "FENCE_Z",
    "FLOOR_ONLY",
    "OWN",
    "PEER_CLASS",
    "PEER_DESK",
    "SOURCE_NAMES",
    "BaselineStat",
    "Baselines",
    "CodeBaselines",
    "baseline_stats",
    "baseline_stats_with_thinned_mad",
    "baselines_from_batch",
    "build_baselines",
    "check_notional",
    "group_codes",
    "main_desk",
    "main_desk_of_counts",
    "peer_tables",
    "resolve_baselines",
]

# baseline source codes (per row, defined with the kernel) and their names
OWN, PEER_DESK, PEER_CLASS, FLOOR_ONLY = (
    kernels.OWN,
    kernels.PEER_DESK,
    kernels.PEER_CLASS,
    kernels.FLOOR_ONLY,
)
SOURCE_NAMES = ("own", "peer:desk", "peer:asset_class", "floor-only")

log = logging.getLogger(__name__)


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
    #: desk -> its normal day by time of day (version 2; see :mod:`.profiles`)
    desks: dict[str, DeskProfile] = {}

    def to_bytes(self, format: str = "json") -> bytes:
        """The baselines in an envelope carrying the SHA-256 of their encoding,
        so a file damaged or edited after :func:`calibrate` wrote it is refused."""
        enc = _codec(format)[0]
        payload = enc(self)
        digest = hashlib.sha256(payload).hexdigest()
        return enc(_Envelope(BASELINES_FORMAT, digest, msgspec.Raw(payload)))

    @classmethod
    def from_bytes(cls, data: bytes, format: str = "json") -> Baselines:
        """Decode, verify the checksum and the version, validate every value;
        anything wrong is one :class:`~surv_kernel.errors.DataError` saying what.
        Files written before the envelope existed (no checksum) are read after
        the same validation, with a warning."""
        enc, dec = _codec(format)
        try:
            head = dec(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a baselines file: {exc}") from None
        if isinstance(head, dict) and "format" in head:
            try:
                env = dec(data, type=_Envelope)
            except msgspec.DecodeError as exc:
                raise DataError(f"not a baselines file: {exc}") from None
            if env.format != BASELINES_FORMAT:
                raise DataError(f"not a baselines file: format {env.format!r}")
            payload = bytes(env.baselines)
            if hashlib.sha256(payload).hexdigest() != env.sha256:
                raise DataError(
                    "baselines checksum mismatch: the file was changed or damaged after "
                    "calibrate wrote it; recalibrate"
                )
        else:
            payload = data
            log.warning(
                "baselines without a checksum (written before checksums existed): values "
                "validated, recalibrate to get a verifiable file",
                extra={"event": "baselines_unverified"},
            )
        fields = head if payload is data else dec(payload)
        if not isinstance(fields, dict):
            raise DataError(f"not a baselines file: a {type(fields).__name__}, not an object")
        # the version first: a newer schema's fields would only say "unknown field"
        version = fields.get("version", 1)
        if version not in READABLE_VERSIONS:
            raise DataError(
                f"baselines version {version!r}; this code reads versions "
                f"{list(READABLE_VERSIONS)}: recalibrate with this version"
            )
        try:
            baselines = dec(payload, type=cls)
        except msgspec.DecodeError as exc:
            raise DataError(f"not a baselines file: {exc}") from None
        baselines.validate()
        return baselines

    def validate(self) -> None:
        """Every number finite and >= 0, counts whole, the window positive;
        raises :class:`~surv_kernel.errors.DataError` naming the first bad value."""
        if not (math.isfinite(self.window_minutes) and self.window_minutes > 0):
            raise DataError(f"baselines window_minutes = {self.window_minutes!r}: must be > 0")
        if self.min_windows < 1:
            raise DataError(f"baselines min_windows = {self.min_windows!r}: must be >= 1")
        if self.version not in READABLE_VERSIONS:
            raise DataError(
                f"baselines version {self.version!r}; this code reads {list(READABLE_VERSIONS)}"
            )

        def check(where: str, stat: BaselineStat) -> None:
            for name in ("median", "mad", "time_median", "rel_scale", "window_mad"):
                v = getattr(stat, name)
                if v is not None and not (math.isfinite(v) and v >= 0):
                    raise DataError(
                        f"baselines {where}: {name} = {v!r} (must be a finite number >= 0)"
                    )
            if stat.n < 0:
                raise DataError(f"baselines {where}: n = {stat.n!r} (must be >= 0)")

        for trader, books in self.groups.items():
            for ac, stat in books.items():
                check(f"groups[{trader!r}][{ac!r}]", stat)
        for ac, desks in self.desk_peers.items():
            for desk, stat in desks.items():
                check(f"desk_peers[{ac!r}][{desk!r}]", stat)
        for ac, stat in self.class_peers.items():
            check(f"class_peers[{ac!r}]", stat)
        for desk, prof in self.desks.items():
            where = f"desks[{desk!r}]"
            if prof.days < 1 or not (0.0 <= prof.min_day_ratio <= 1.0):
                raise DataError(f"baselines {where}: days {prof.days}, ratio {prof.min_day_ratio}")
            for name in ("records", "notional_usd"):
                values = getattr(prof, name)
                if len(values) != N_BUCKETS or not all(math.isfinite(v) and v >= 0 for v in values):
                    raise DataError(
                        f"baselines {where}: {name} must be {N_BUCKETS} finite numbers >= 0"
                    )
            if not (
                math.isfinite(prof.floor_episodes_per_day) and prof.floor_episodes_per_day >= 0
            ):
                raise DataError(f"baselines {where}: floor_episodes_per_day must be >= 0")

    @staticmethod
    def format_of(path: str | os.PathLike[str]) -> str:
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return "json"
        if suffix in (".msgpack", ".mpk"):
            return "msgpack"
        raise ValueError(f"baseline file must end in .json, .msgpack or .mpk, got {str(path)!r}")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path``; the format follows the suffix (.json / .msgpack)."""
        data = self.to_bytes(self.format_of(path))
        tmp = Path(f"{path}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baselines:
        """Read and verify ``path`` (see :meth:`from_bytes`); a problem names the file."""
        data = Path(path).read_bytes()
        try:
            return cls.from_bytes(data, cls.format_of(path))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None


#: What :meth:`Baselines.to_bytes` writes around the baselines.
BASELINES_FORMAT = "surv_kernel.baselines"
#: The Baselines schema this code writes: 2 added ``desks`` (desk profiles).
BASELINES_VERSION = 2
#: Versions of the Baselines schema this code reads.
READABLE_VERSIONS = (1, 2)


class _Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    sha256: str  # of the encoded baselines, exactly as stored
    baselines: msgspec.Raw


def _codec(format: str) -> tuple[Any, Any]:
    if format == "json":
        return msgspec.json.encode, msgspec.json.decode
    if format == "msgpack":
        return msgspec.msgpack.encode, msgspec.msgpack.decode
    raise ValueError(f"format must be 'json' or 'msgpack', got {format!r}")


class CodeBaselines(NamedTuple):
    """Baselines resolved to dictionary codes: own baselines per dense group
    ``trader * n_ac + asset_class`` and peer baselines per (asset class, desk)
    (see :func:`resolve_baselines`)."""

    median: np.ndarray  # float64[n_groups], NaN when unknown
    mad: np.ndarray
    n: np.ndarray  # int64[n_groups]: samples behind the own baseline
    time_median: np.ndarray  # float64[n_groups]: median of the thinned samples
    peer_median: np.ndarray  # float64[n_ac, n_desk]: effective peer baseline
    peer_mad: np.ndarray
    peer_n: np.ndarray  # int64[n_ac, n_desk]
    peer_source: np.ndarray  # int8[n_ac, n_desk]: PEER_DESK, PEER_CLASS or FLOOR_ONLY
    class_rel_scale: np.ndarray  # float64[n_ac]: typical sigma / median, NaN if unknown
    #: float64[n_desk, N_BUCKETS]: time-of-day factors from calibrated desk
    #: profiles (all 1 without them; day detection computes its own per window)
    tod: np.ndarray


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


def main_desk(codes: np.ndarray, desk: np.ndarray, n_groups: int, desk_names: tuple) -> np.ndarray:
    """The desk with most trades per group (ties: smallest desk name), -1 for
    empty groups. Order-independent, so peers do not depend on input order."""
    counts = np.zeros((n_groups, max(len(desk_names), 1)), np.int64)
    kernels.group_desk_counts(codes, desk, counts)
    return main_desk_of_counts(counts, desk_names)


def main_desk_of_counts(counts: np.ndarray, desk_names: Sequence[str]) -> np.ndarray:
    """Per row of ``counts`` (trades per group x desk code), the desk with
    most trades, ties to the smallest desk name; -1 where a row is empty."""
    if not len(desk_names):
        return np.full(counts.shape[0], -1, np.int64)
    by_name = np.argsort(np.array(desk_names, dtype=object), kind="stable")
    best = by_name[np.argmax(counts[:, by_name], axis=1)]
    return np.where(counts.sum(axis=1) > 0, best, -1)


def _peer_stats(
    members: np.ndarray, median: np.ndarray, mad: np.ndarray, stable: np.ndarray, q: float
) -> BaselineStat:
    st = members[stable[members] & (median[members] > 0)]
    rel = float(np.median(mad[st] * MAD_TO_SIGMA / median[st])) if len(st) else None
    med = float(np.quantile(median[members], q))
    return BaselineStat(med, float(np.quantile(mad[members], q)), int(len(members)), med, rel)


def peer_tables(
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


def effective_peers(
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
    median, mad, counts, m_t, _ = baseline_stats_with_thinned_mad(ws, scale_rel, trim)
    return median, mad, counts, m_t


def baseline_stats_with_thinned_mad(
    ws: WindowStats, scale_rel: float, trim: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`baseline_stats` plus the thinned MAD ``mad_t`` (peers use the
    thinned statistics: they do not depend on which groups were trimmed)."""
    n = len(ws.sums)
    n_groups = len(ws.group_offsets) - 1
    values = np.empty(n, dtypes.NOTIONAL)
    counts = np.empty(n_groups, np.int64)
    m = kernels.thin_windows(ws.group_offsets, ws.first, ws.sums, values, counts)
    offsets = np.zeros(n_groups + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    m_t, mad_t = group_median_mad(values[:m], offsets)
    sigma_t = np.clip(mad_t * MAD_TO_SIGMA, scale_rel * m_t, m_t * (FENCE_RATIO - 1.0) / FENCE_Z)
    fence = m_t + FENCE_Z * sigma_t
    if trim is not None:
        fence = np.where(trim, fence, -np.inf)  # keeps nothing: NaN, replaced below
    kept = np.empty(n_groups, np.int64)
    m = kernels.values_at_most(ws.group_offsets, ws.sums, fence, values, kept)
    np.cumsum(kept, out=offsets[1:])
    # at least half the thinned samples are <= m_t < fence, so every trimmed
    # group with windows keeps some: NaN only for empty (or untrimmed) groups
    median, mad = group_median_mad(values[:m], offsets)
    if trim is not None:
        median = np.where(trim, median, m_t)
        mad = np.where(trim, mad, mad_t)
    return median, mad, counts, m_t, mad_t


def build_baselines(
    cfg: DetectionConfig,
    traders: Sequence[str],
    asset_classes: Sequence[str],
    desks: Sequence[str],
    group_trader: np.ndarray,
    group_ac: np.ndarray,
    present: np.ndarray,
    median: np.ndarray,
    mad: np.ndarray,
    n: np.ndarray,
    time_median: np.ndarray,
    window_mad: np.ndarray | None,
    group_desk: np.ndarray,
    desk_profiles: dict[str, DeskProfile] | None = None,
) -> Baselines:
    """:class:`Baselines` from per-group statistics over a group index space
    (``group_trader`` / ``group_ac`` / ``group_desk`` codes into the name
    tuples; ``group_desk`` -1 for a group without trades). The groups
    ``present`` get an own :class:`BaselineStat`, in that order; peers are
    taken over every group with ``>= cfg.min_windows`` samples from its
    ``time_median`` and ``mad`` (the thinned statistics: they do not depend
    on which groups were trimmed). :func:`calibrate` and the stream's
    warm-up both build their baselines here."""
    own_ok = (n >= cfg.min_windows) & np.isfinite(time_median)
    stable = own_ok & (n >= cfg.stable_windows)
    desk_p, class_p = peer_tables(
        time_median,
        mad,
        own_ok,
        stable,
        np.asarray(group_ac, np.int64),
        group_desk,
        max(len(asset_classes), 1),
        cfg.min_peer_groups,
        cfg.peer_quantile,
    )
    groups: dict[str, dict[str, BaselineStat]] = {}
    gdesk: dict[str, dict[str, str]] = {}
    for g in present.tolist():
        trader, ac = traders[group_trader[g]], asset_classes[group_ac[g]]
        groups.setdefault(trader, {})[ac] = BaselineStat(
            float(median[g]),
            float(mad[g]),
            int(n[g]),
            float(time_median[g]),
            None,
            None if window_mad is None else float(window_mad[g]),
        )
        if group_desk[g] >= 0:
            gdesk.setdefault(trader, {})[ac] = desks[group_desk[g]]
    desk_peers: dict[str, dict[str, BaselineStat]] = {}
    for (ac, dk), stat in desk_p.items():
        desk_peers.setdefault(asset_classes[ac], {})[desks[dk]] = stat
    return Baselines(
        window_minutes=float(cfg.window_minutes),
        min_windows=cfg.min_windows,
        groups=groups,
        group_desk=gdesk,
        desk_peers=desk_peers,
        class_peers={asset_classes[ac]: s for ac, s in class_p.items()},
        version=BASELINES_VERSION,
        desks=desk_profiles or {},
    )


def baselines_from_batch(
    batch: TradeBatch,
    ws: WindowStats,
    codes: np.ndarray,
    n_ac: int,
    cfg: DetectionConfig,
    need_peers: Any,
    trim: np.ndarray,
) -> CodeBaselines:
    n_groups = len(ws.group_offsets) - 1
    median, mad, n_win, m_t, mad_t = baseline_stats_with_thinned_mad(ws, cfg.scale_rel, trim)
    own_ok = (n_win >= cfg.min_windows) & np.isfinite(median)
    desk_names = batch.dictionaries.desk.values
    n_desk = max(len(desk_names), 1)
    desk_p: dict[tuple[int, int], BaselineStat] = {}
    class_p: dict[int, BaselineStat] = {}
    if need_peers(n_win):
        group_desk = main_desk(codes, batch.desk, n_groups, desk_names)
        desk_p, class_p = peer_tables(
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
    peers = effective_peers(desk_p, class_p, n_ac, n_desk, cfg.min_peer_groups)
    return CodeBaselines(median, mad, n_win, m_t, *peers, np.ones((n_desk, N_BUCKETS)))


def resolve_baselines(
    baselines: Baselines,
    traders: Sequence[str],
    asset_classes: Sequence[str],
    desks: Sequence[str],
    cfg: DetectionConfig,
) -> CodeBaselines:
    """``baselines`` (keyed by names) resolved to codes: own baselines of the
    dense groups ``t * n_ac + a`` of these ``traders`` x ``asset_classes``
    (NaN / 0 where a group has none) and the effective peer baseline of every
    (asset class, desk) code. Batch detection resolves a batch's dictionaries,
    the stream its own groups."""
    n_ac = max(len(asset_classes), 1)
    n_groups = max(len(traders), 1) * n_ac
    median = np.full(n_groups, np.nan)
    mad = np.full(n_groups, np.nan)
    n = np.zeros(n_groups, np.int64)
    m_t = np.full(n_groups, np.nan)
    for t, trader in enumerate(traders):
        books = baselines.groups.get(trader)
        if not books:
            continue
        for a, ac in enumerate(asset_classes):
            stat = books.get(ac)
            if stat is not None:
                g = t * n_ac + a
                median[g], n[g] = stat.median, stat.n
                mad[g] = stat.mad if stat.window_mad is None else stat.window_mad
                m_t[g] = stat.median if stat.time_median is None else stat.time_median
    n_desk = max(len(desks), 1)
    desk_p = {}
    for a, ac in enumerate(asset_classes):
        for k, desk in enumerate(desks):
            stat = baselines.desk_peers.get(ac, {}).get(desk)
            if stat is not None:
                desk_p[(a, k)] = stat
    class_p = {
        a: baselines.class_peers[ac]
        for a, ac in enumerate(asset_classes)
        if ac in baselines.class_peers
    }
    peers = effective_peers(desk_p, class_p, n_ac, n_desk, cfg.min_peer_groups)
    return CodeBaselines(median, mad, n, m_t, *peers, history_tod_table(baselines.desks, desks))


def check_notional(batch: TradeBatch) -> None:
    """Refuse non-finite USD notionals (ingest quarantines them; a batch made
    by hand may still hold one): a NaN window sum would never breach."""
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
