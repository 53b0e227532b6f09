"""Desk profiles: each desk's normal day by time of day, from calibration history.

A feed that arrives whole but short (the desk sent the morning only, a
filter upstream dropped half the book) decodes cleanly: nothing in the bytes
says trades are missing. Only history does. :func:`desk_profiles` records,
per desk, the mean number of records and of USD notional in each
``BUCKET_MINUTES`` bucket of the UTC day over the history's days, how quiet
its quietest day was relative to the mean, and how many floor-passing
episodes (alerted or suppressed) a day normally has there. The pipeline
compares a run with it (:mod:`surv_kernel.pipeline.plausibility`).
"""

from __future__ import annotations

import msgspec
import numpy as np

from .. import dtypes
from ..batch import TradeBatch

__all__ = [
    "BUCKET_MINUTES",
    "N_BUCKETS",
    "TOD_MAX",
    "TOD_MIN",
    "TOD_PSEUDO_RECORDS",
    "DeskProfile",
    "day_tod_factors",
    "desk_profiles",
    "history_tod_table",
    "tod_factor",
    "utc_bucket",
    "window_bucket",
]

BUCKET_MINUTES = 30
N_BUCKETS = 24 * 60 // BUCKET_MINUTES
_DAY_NS = 86_400 * dtypes.NS_PER_SECOND
_BUCKET_NS = BUCKET_MINUTES * dtypes.NS_PER_MINUTE


class DeskProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One desk's normal day (means over the history days it traded)."""

    days: int  # history days (UTC dates) with trades on the desk
    records: list[float]  # mean records per day in each UTC bucket
    notional_usd: list[float]  # mean USD notional per day in each UTC bucket
    #: the quietest history day's records over the mean day's (1.0: one day)
    min_day_ratio: float
    #: floor-passing episodes (alerted or suppressed) per day, by the group's main desk
    floor_episodes_per_day: float
    bucket_minutes: int = BUCKET_MINUTES


def utc_bucket(timestamps_ns: np.ndarray) -> np.ndarray:
    """The time-of-day bucket (0..N_BUCKETS-1, UTC) of each timestamp."""
    return (timestamps_ns % _DAY_NS) // _BUCKET_NS


def desk_profiles(batch: TradeBatch, episode_desk: np.ndarray) -> dict[str, DeskProfile]:
    """Profiles of every desk in ``batch`` (history of one or more days);
    ``episode_desk`` holds the desk code of each floor-passing episode."""
    names = batch.dictionaries.desk.values
    if not len(batch):
        return {}
    day = batch.timestamp_ns // _DAY_NS
    bucket = utc_bucket(batch.timestamp_ns)
    n_desk = len(names)
    days, day_code = np.unique(day, return_inverse=True)
    # per desk x history day: records (which days a desk traded, and how much)
    per_day = np.zeros((n_desk, len(days)), np.int64)
    np.add.at(per_day, (batch.desk, day_code), 1)
    records = np.zeros((n_desk, N_BUCKETS))
    np.add.at(records, (batch.desk, bucket), 1.0)
    notional = np.zeros((n_desk, N_BUCKETS))
    np.add.at(notional, (batch.desk, bucket), batch.notional_usd)
    episodes = np.bincount(episode_desk[episode_desk >= 0], minlength=n_desk)
    out = {}
    for k, name in enumerate(names):
        active = per_day[k][per_day[k] > 0]
        if not len(active):
            continue
        n_days = len(active)
        out[name] = DeskProfile(
            days=n_days,
            records=(records[k] / n_days).tolist(),
            notional_usd=(notional[k] / n_days).tolist(),
            min_day_ratio=float(active.min() / active.mean()),
            floor_episodes_per_day=float(episodes[k] / n_days),
        )
    return out


# -- time-of-day factors: a desk's activity at this time over its typical time ------------
#
# A group's baseline median is activity-weighted (taken over its windows, one per
# trade), so "normal" is the group's typical window at a typical busy moment of its
# desk. At the open, the close or a release the whole desk trades several times its
# typical rate and an ordinary trader's window follows; in the lunch lull it falls.
# The factor of desk d at bucket b is the desk's records in b over the desk's
# typical bucket, both shrunk towards each other by TOD_PSEUDO_RECORDS records so a
# small desk's noisy buckets stay near 1, and clipped to [TOD_MIN, TOD_MAX] =
# [1, 1.5]: busy times raise the expectation by at most half, quiet times do not
# lower it. Measured on the three labelled generators (tests/quality_table.py
# cases, seeds 0-3, 300 and 2000 traders): a lower clip of 0.5 made precision
# FALL everywhere (scenario 2000 day 0.66 -> 0.53, alt 2000 day 0.46 -> 0.34),
# because the ordinary clusters of a lull then need half the evidence; [1, 4]
# raised it everywhere (0.66 -> 0.76, 0.46 -> 0.59) but cost recall (alt 2000
# day 0.958 -> 0.948; on the clustered days of tests/test_model_robustness.py
# with every desk in one feed, recall at >= 5x 0.962 -> 0.929: an open-hour
# burst hidden behind a 3-4x open); [1, 1.5] keeps nearly all the precision
# (0.76, 0.58) at the old recall (0.958; 0.940). [1, 2] measured as [1, 4]; the
# pseudo-count (10, 20 or 40) made no difference.
# The typical bucket is the activity-weighted MEDIAN bucket (the bucket count
# that half the desk's trades see or less), because the baseline it rescales is a
# median over the group's windows: with the activity-weighted mean, a desk whose
# open and close hold half its trades would call every ordinary half hour a lull
# (factor ~0.3).
# Day counts are whole numbers, so every sum below is exact in float64 and the
# factor is one correctly rounded division of exact values (the reference in
# tests/naive.py gets the same bits).

#: Pseudo-count (records per bucket) shrinking a desk's factor towards 1.
TOD_PSEUDO_RECORDS = 20.0
TOD_MIN = 1.0
TOD_MAX = 1.5


def tod_factor(count: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """``clip((count + a) / (typical + a), TOD_MIN, TOD_MAX)``; 1 where the
    desk has no records (``typical`` NaN)."""
    a = TOD_PSEUDO_RECORDS
    f = np.clip((count + a) / (typical + a), TOD_MIN, TOD_MAX)
    return np.where(np.isnan(typical), 1.0, f)


def typical_bucket(counts: np.ndarray) -> np.ndarray:
    """Per row of ``counts`` (records per bucket), the activity-weighted median
    bucket count: the smallest count ``c`` such that the buckets with counts
    ``<= c`` hold at least half the row's records (NaN for an empty row)."""
    counts = np.atleast_2d(counts)
    srt = np.sort(counts, axis=1)
    cs = np.cumsum(srt, axis=1)
    total = cs[:, -1]
    k = np.argmax(2.0 * cs >= total[:, None], axis=1)
    out = srt[np.arange(len(srt)), k]
    return np.where(total > 0, out, np.nan)


def window_bucket(timestamps_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """The bucket of each window's midpoint (the window of a row at ``t`` is
    ``[t - W, t]``): a window straddling two buckets is judged by the one
    holding most of it."""
    return utc_bucket(np.asarray(timestamps_ns, np.int64) - window_ns // 2)


def history_tod_table(profiles: dict[str, DeskProfile], desks: tuple[str, ...]) -> np.ndarray:
    """Factors ``[desk code, bucket]`` from calibrated desk profiles (mean
    records per history day); 1 for desks without a profile. Sums with
    ``math.fsum`` so the value does not depend on the summation order."""
    import math

    out = np.ones((max(len(desks), 1), N_BUCKETS))
    for k, name in enumerate(desks):
        prof = profiles.get(name)
        if prof is None or prof.bucket_minutes != BUCKET_MINUTES:
            continue
        c = np.asarray(prof.records, np.float64)
        if not math.fsum(c.tolist()) > 0:
            continue
        out[k] = tod_factor(c, np.full(N_BUCKETS, typical_bucket(c)[0]))
    return out


def day_tod_factors(
    desk: np.ndarray,
    timestamps_ns: np.ndarray,
    n_desk: int,
    group_offsets: np.ndarray,
    order: np.ndarray,
    win_group: np.ndarray,
    win_desk: np.ndarray,
    win_ts: np.ndarray,
    window_ns: int,
) -> np.ndarray:
    """Per window (group ``win_group``, trade desk ``win_desk``, timestamp
    ``win_ts``): the factor of its desk at its midpoint's bucket from the
    day itself, **leaving the group out** (the desk's records minus the
    group's own on that desk), so a group's own burst cannot raise the
    profile it is judged against. Groups alone on their desk get 1.

    ``desk`` / ``timestamps_ns``: every trade of the day; ``group_offsets``
    and ``order`` the (group, time) layout of :class:`WindowStats` (group
    ``g`` owns the input rows ``order[group_offsets[g]:group_offsets[g+1]]``),
    so only the windows' own groups' trades are read twice. Two jitted
    passes (:mod:`surv_kernel.kernels.scoring`): numpy's ``np.add.at`` / isin /
    bincount route measured +0.10 s on a 2M-trade day, a third of detect."""
    m = len(win_group)
    if m == 0:
        return np.ones(0)
    from ..kernels import scoring as kernels

    nb = N_BUCKETS
    c = np.zeros((n_desk, nb))
    kernels.desk_bucket_counts(desk, timestamps_ns, _DAY_NS, _BUCKET_NS, c)
    # the (group, desk) pairs the windows need, numbered through a dense
    # (window group x desk) slot table: no sort of the windows when they come
    # grouped (detect's floor-passing windows do), no searchsorted
    wg = np.asarray(win_group, np.int64)
    if m == 1 or bool(np.all(wg[1:] >= wg[:-1])):
        new = np.empty(m, np.bool_)
        new[0] = True
        np.not_equal(wg[1:], wg[:-1], out=new[1:])
        groups = wg[new]
        gi = np.cumsum(new) - 1
    else:
        groups, gi = np.unique(wg, return_inverse=True)
    slot = gi * n_desk + win_desk
    used = np.zeros(len(groups) * n_desk, np.bool_)
    used[slot] = True
    pair_of = np.cumsum(used) - 1
    n_pairs = int(pair_of[-1]) + 1
    pair_desk = np.flatnonzero(used) % n_desk
    pair_of = np.where(used, pair_of, -1).reshape(len(groups), n_desk)
    own = np.zeros((n_pairs, nb))
    kernels.group_desk_bucket_counts(
        group_offsets, order, desk, timestamps_ns, groups, pair_of, _DAY_NS, _BUCKET_NS, own
    )
    rest = c[pair_desk] - own  # the desk without the group, per pair
    typical = typical_bucket(rest)
    p = pair_of.reshape(-1)[slot]
    b = window_bucket(win_ts, window_ns)
    return tod_factor(rest[p, b], typical[p])
