"""Numba kernels of the alert model: jitted code only.

Arrays and scalars in, preallocated outputs, no defaults; the validating
callers live in :mod:`surv_kernel.model`. Rows are in the (group, time) order
of :class:`surv_kernel.windows.WindowStats`: group ``g`` owns the sorted rows
``offsets[g]:offsets[g + 1]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rows_above(values, offsets, threshold, out_rows, out_groups):
    """Write the sorted-order rows ``k`` of group ``g`` with
    ``values[k] > threshold[g]`` to ``out_rows`` (ascending, so grouped by group
    and time-ordered inside a group) and their group to ``out_groups``; return
    how many.

    This is the static-floor test of every window. It is one pass over the
    window sums with a per-group threshold held in a register, instead of
    materialising an n-long per-row threshold array (np.repeat + compare +
    flatnonzero reads and writes ~3 n-long arrays). A NaN sum or threshold
    compares False: NaN windows cannot occur (detect rejects non-finite
    notionals) and groups without a floor get an infinite threshold.
    """
    m = 0
    for g in range(offsets.shape[0] - 1):
        t = threshold[g]
        for k in range(offsets[g], offsets[g + 1]):
            if values[k] > t:
                out_rows[m] = k
                out_groups[m] = g
                m += 1
    return m


@njit(cache=True, nogil=True)
def thin_windows(offsets, first, values, out_values, out_counts):
    """Per group, keep the windows that do not overlap the previously kept one.

    Walking each group in time order, row ``k`` is kept when its window starts
    after the last kept row (``first[k] > kept``): the kept windows are
    disjoint and at least one window length apart, so a burst of many trades
    inside one window contributes one baseline sample instead of one per
    trade. Kept values are written group after group to ``out_values``;
    ``out_counts[g]`` is the number kept for group ``g``. Returns the total.
    Deterministic in the group's trades: rows at an equal timestamp share
    ``first`` and the sum, so whichever of them is met first is kept.
    """
    m = 0
    for g in range(offsets.shape[0] - 1):
        kept = np.int64(-1)
        c = 0
        for k in range(offsets[g], offsets[g + 1]):
            if first[k] > kept:
                out_values[m] = values[k]
                m += 1
                c += 1
                kept = k
        out_counts[g] = c
    return m


@njit(cache=True, nogil=True)
def values_at_most(offsets, values, limit, out_values, out_counts):
    """Per group ``g``, copy the values ``<= limit[g]`` to ``out_values`` (group
    after group, order kept) and count them in ``out_counts[g]``; return the
    total. Used to trim a group's outlying windows before taking a median; a
    NaN limit keeps nothing."""
    m = 0
    for g in range(offsets.shape[0] - 1):
        t = limit[g]
        c = 0
        for k in range(offsets[g], offsets[g + 1]):
            if values[k] <= t:
                out_values[m] = values[k]
                m += 1
                c += 1
        out_counts[g] = c
    return m


@njit(cache=True, nogil=True)
def group_desk_counts(codes, desk, out):
    """``out[g, k]`` += number of rows of group ``g`` on desk ``k`` (``out``
    zeroed by the caller, shape (n_groups, n_desks)). One pass instead of
    building an n-long combined key for ``np.bincount``."""
    for i in range(codes.shape[0]):
        out[codes[i], desk[i]] += 1


# baseline sources and scale sources (model.SOURCE_NAMES / model.SCALE_NAMES)
OWN, PEER_DESK, PEER_CLASS, FLOOR_ONLY = 0, 1, 2, 3
SCALE_MAD, SCALE_CLASS, SCALE_REL, SCALE_ABS = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def score_windows(
    sums,
    groups,
    in_rows,
    desk,
    tod,
    g_median,
    g_mad,
    g_n,
    g_time_median,
    p_median,
    p_mad,
    p_n,
    p_source,
    class_rel,
    n_ac,
    min_windows,
    stable_windows,
    mad_to_sigma,
    scale_rel,
    scale_abs,
    z_level,
    ratio_level,
    evidence_floor,
    reliability_samples,
    med_out,
    mad_out,
    n_out,
    src_out,
    peer_desk_out,
    scale_out,
    scale_src_out,
    z_out,
    ratio_out,
    breach_out,
):
    """The breach test of each floor-passing window ``i`` (sum ``sums[i]``,
    group ``groups[i]``, input row ``in_rows[i]``): which baseline, which
    scale, z, ratio, breach. One pass; everything a window's verdict uses is
    its own sum, its group's baseline and (cold groups) its own desk.

    - own baseline when the group has ``>= min_windows`` samples and a finite
      median, else the effective peer baseline of (asset class, the row's
      desk), whose source may be ``FLOOR_ONLY`` (no baseline: breach = True,
      z and ratio NaN);
    - sigma = MAD * 1.4826, or for an own baseline with fewer than
      ``stable_windows`` samples the asset class's typical relative sigma
      (sigma / time median of the thinned samples) times the group's own
      time median (when known: NaN means unknown);
    - scale = max(sigma, scale_rel * median, scale_abs) (NaN stays NaN as
      with np.maximum; only floor-only rows have a NaN median);
    - ratio = sum / median, +inf for a median <= 0;
    - with the time-of-day factor ``f = tod[i]``: the median and sigma are
      the baseline's times ``f`` (what this window is expected to hold at
      this time of its desk's day); ``scale_abs`` is not scaled (it is a
      USD floor), ``med_out`` is the unscaled baseline median;
    - breach (see :func:`surv_kernel.model.scoring.evidence`): both pieces of
      evidence ``z / z_level`` and ``ratio / ratio_level`` reach
      ``evidence_floor`` (compared in their own units, ``z >= evidence_floor
      * z_level``, so a floor of 1 is exactly the old AND of the two levels)
      and their geometric mean (weights 1/2 each) reaches ``1 +
      reliability_samples / n`` for an own baseline of ``n`` samples (1 for
      peers): a baseline of few samples needs stronger evidence.
    """
    z_floor = evidence_floor * z_level
    r_floor = evidence_floor * ratio_level
    for i in range(sums.shape[0]):
        g = groups[i]
        med = g_median[g]
        mad = g_mad[g]
        n = g_n[g]
        src = OWN
        pd = -1
        if not (n >= min_windows and np.isfinite(med)):
            a = g % n_ac
            k = desk[in_rows[i]]
            med = p_median[a, k]
            mad = p_mad[a, k]
            n = p_n[a, k]
            src = p_source[a, k]
            if src == PEER_DESK:
                pd = k
        sigma = mad * mad_to_sigma
        ssrc = SCALE_MAD
        if src == OWN and n < stable_windows:
            rel = class_rel[g % n_ac]
            if np.isfinite(rel):
                sigma = rel * g_time_median[g]
                ssrc = SCALE_CLASS
        f = tod[i]
        base_med = med
        med = med * f
        sigma = sigma * f
        rf = scale_rel * med
        if rf > sigma:
            ssrc = SCALE_REL
        scale = np.nan if (np.isnan(sigma) or np.isnan(rf)) else max(sigma, rf)
        if scale_abs > scale:
            ssrc = SCALE_ABS
        if not np.isnan(scale):
            scale = max(scale, scale_abs)
        s = sums[i]
        if src == FLOOR_ONLY:
            z = np.nan
            ratio = np.nan
            breach = True
        else:
            z = (s - med) / scale
            ratio = s / med if med > 0 else np.inf
            need = 1.0 + reliability_samples / n if (src == OWN and n > 0) else 1.0
            comb = np.sqrt(max(z / z_level, 0.0) * max(ratio / ratio_level, 0.0))
            breach = z >= z_floor and ratio >= r_floor and comb >= need
        med_out[i] = base_med
        mad_out[i] = mad
        n_out[i] = n
        src_out[i] = src
        peer_desk_out[i] = pd
        scale_out[i] = scale
        scale_src_out[i] = ssrc
        z_out[i] = z
        ratio_out[i] = ratio
        breach_out[i] = breach


# -- time-of-day profiles (surv_kernel.model.profiles.day_tod_factors) ------------------------


@njit(cache=True, nogil=True)
def desk_bucket_counts(desk, ts, day_ns, bucket_ns, out):
    """``out[desk[i], (ts[i] % day_ns) // bucket_ns] += 1`` for every row
    (``out`` zeroed by the caller, shape (n_desks, buckets per day)): one pass
    instead of an n-long bucket array, a combined key and a bincount."""
    for i in range(ts.shape[0]):
        out[desk[i], (ts[i] % day_ns) // bucket_ns] += 1.0


@njit(cache=True, nogil=True)
def group_desk_bucket_counts(offsets, order, desk, ts, groups, pair_of, day_ns, bucket_ns, out):
    """For the groups ``groups[j]`` (their input rows ``order[offsets[g]:
    offsets[g + 1]]``): ``out[p, bucket of the row] += 1`` where ``p =
    pair_of[j, desk[row]]`` is the (group, desk) pair's row in ``out``; rows
    on a desk whose pair is -1 are not counted (``out`` zeroed by the caller).

    A group's rows are in time order, so the bucket is recomputed (two int64
    divisions, the loop's main cost otherwise) only when a row leaves the
    current bucket's ``[lo, hi)``; timestamps may be negative (before 1970),
    where ``%`` and ``//`` floor like numpy's."""
    for j in range(groups.shape[0]):
        g = groups[j]
        lo = np.int64(1)
        hi = np.int64(0)  # empty: the first row computes its bucket
        b = 0
        for k in range(offsets[g], offsets[g + 1]):
            r = order[k]
            p = pair_of[j, desk[r]]
            if p < 0:
                continue
            t = ts[r]
            if not (lo <= t < hi):
                b = (t % day_ns) // bucket_ns
                lo = t - (t % bucket_ns)
                hi = lo + bucket_ns
            out[p, b] += 1.0
