"""Slow, obviously-correct references for the kernels (pure Python / numpy).

Other test modules may import these. Each follows the definition literally:
no sorting tricks, no incremental state.
"""

from __future__ import annotations

import math

import numpy as np


def exact_sum(values) -> float:
    """Correctly rounded sum with IEEE semantics for non-finite values.

    ``math.fsum`` is exact for finite values but raises on ``inf + -inf``; the
    window kernel follows IEEE addition: any NaN -> NaN, +inf and -inf -> NaN,
    otherwise an infinity wins.
    """
    vals = [float(v) for v in values]
    if any(math.isnan(v) for v in vals):
        return math.nan
    pos = any(v == math.inf for v in vals)
    neg = any(v == -math.inf for v in vals)
    if pos and neg:
        return math.nan
    if pos:
        return math.inf
    if neg:
        return -math.inf
    return math.fsum(vals)


def window_members(group_codes, timestamps_ns, window_ns, i) -> list[int]:
    """Input rows in the window of input row ``i``: same group, timestamp in
    ``[t_i - window_ns, t_i]`` (Python ints: no overflow)."""
    g = int(group_codes[i])
    t = int(timestamps_ns[i])
    w = int(window_ns)
    return [
        j
        for j in range(len(group_codes))
        if int(group_codes[j]) == g and t - w <= int(timestamps_ns[j]) <= t
    ]


def rolling_window_sums(group_codes, timestamps_ns, notional, window_ns):
    """O(n^2) reference of ``surv_kernel.rolling_window_sums``: input order."""
    n = len(group_codes)
    sums = np.empty(n, dtype=np.float64)
    counts = np.empty(n, dtype=np.int64)
    for i in range(n):
        members = window_members(group_codes, timestamps_ns, window_ns, i)
        sums[i] = exact_sum(notional[j] for j in members)
        counts[i] = len(members)
    return sums, counts


def window_abs_sums(group_codes, timestamps_ns, notional, window_ns):
    """Per input row, ``math.fsum(|x|)`` over its window (finite values only):
    the scale for the absolute error slack of a compensated sum."""
    n = len(group_codes)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        members = window_members(group_codes, timestamps_ns, window_ns, i)
        out[i] = math.fsum(abs(float(notional[j])) for j in members if math.isfinite(notional[j]))
    return out


def stable_group_time_order(group_codes, timestamps_ns) -> np.ndarray:
    """Input rows sorted by (group, time), ties in input order."""
    n = len(group_codes)
    return np.array(
        sorted(range(n), key=lambda i: (int(group_codes[i]), int(timestamps_ns[i]), i)),
        dtype=np.int64,
    )


def group_median_mad(values, group_offsets):
    """numpy reference of ``surv_kernel.windows.group_median_mad``: NaN values
    dropped, then ``np.median`` and ``np.median(|v - median|)``."""
    n_groups = len(group_offsets) - 1
    median = np.full(n_groups, np.nan)
    mad = np.full(n_groups, np.nan)
    for g in range(n_groups):
        v = np.asarray(values[group_offsets[g] : group_offsets[g + 1]], dtype=np.float64)
        v = v[~np.isnan(v)]
        if v.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            median[g] = np.median(v)
            mad[g] = np.median(np.abs(v - median[g]))
    return median, mad


# -- time-of-day factors (surv_kernel.model.profiles) ---------------------------------------

TOD_PSEUDO, TOD_LO, TOD_HI = 20.0, 1.0, 1.5
DAY_NS, BUCKET_NS, N_BUCKETS = 86_400 * 10**9, 30 * 60 * 10**9, 48


def utc_bucket(t: int) -> int:
    return (int(t) % DAY_NS) // BUCKET_NS


def tod_factor_of_profile(counts, b: int) -> float:
    """A desk's factor at bucket ``b`` from its records per bucket: records in
    ``b`` over the typical bucket, both plus the pseudo-count, clipped; 1
    without records. Typical: walking the buckets from the quietest, the count
    of the one where the running total first reaches half the records."""
    total = 0.0
    for c in sorted(counts):  # in the order the running total below adds them
        total += c
    if not total > 0:
        return 1.0
    running, typical = 0.0, 0.0
    for c in sorted(counts):
        running += c
        if 2.0 * running >= total:
            typical = c
            break
    return min(max((counts[b] + TOD_PSEUDO) / (typical + TOD_PSEUDO), TOD_LO), TOD_HI)


def day_tod_factor(trades, group, desk, t: int, window_ns: int) -> float:
    """The factor of a window of ``group`` on ``desk`` at ``t`` from the day's
    ``trades`` (tuples (group, desk, timestamp)), leaving the group's own out."""
    counts = [0.0] * N_BUCKETS
    for g, d, u in trades:
        if d == desk and g != group:
            counts[utc_bucket(u)] += 1.0
    return tod_factor_of_profile(counts, utc_bucket(int(t) - int(window_ns) // 2))
