"""Numba kernels: jitted code only.

Every function here takes arrays and scalars (no ``None``, no objects, no
defaults) and writes into preallocated outputs. Validation, dtype conversion
and allocation live in :mod:`surv_kernel.windows`; the slow, obviously-correct
twins of these kernels live in ``tests/naive.py``.

Layout used throughout: rows are arranged by dense group code (a stable
counting sort) and, inside each group, by timestamp (stable: equal timestamps
keep input order). ``offsets[g]:offsets[g + 1]`` are the rows of group ``g``.

Numerics of the window sums (why the kernel looks the way it does)
------------------------------------------------------------------
The usual sliding sum adds the row entering the window and subtracts the row
leaving it. That has two failure modes: (1) after a huge value (1e18) leaves,
a window of small values (1.0) is left holding the rounding error of the huge
one, even with Kahan/Neumaier compensation the error is proportional to the
magnitude of everything that ever passed through the running sum, not to the
window; (2) a running float sum cannot "un-add" a NaN or an infinity, so
pandas and polars count non-finite values apart and patch the result.

We never subtract. The window ``[first, last]`` of a group is split at a
pivot ``p`` into a *front* ``[first, p)`` and a *back* ``[p, last]``
(the "two-stacks" sliding aggregation):

* the back is a running compensated sum of ``x[p..last]``, extended as
  ``last`` advances;
* the front is a table of compensated *suffix* sums ``F[j] = sum x[j..p-1]``,
  built right-to-left in one pass when the pivot is (re)placed; as ``first``
  advances we just read ``F[first]``;
* when ``first`` passes the pivot, the pivot moves to ``last + 1`` and the
  front table is rebuilt over the current window. Each row enters the back
  once and one rebuild once, so the cost is amortised O(1) per row.

Every partial sum therefore contains only rows of the current window. Each
partial is a double-double style compensated sum (TwoSum of the running high
part, rounding errors accumulated in a separate low part; the Kahan-Babuska /
Neumaier scheme), and the two partials are combined with one more TwoSum.
Error bound for a window of ``m`` rows: ``|got - exact| <= 2u|exact| +
O(m u^2) sum|x|`` with ``u = 2**-53``; the result matches ``math.fsum`` to
about 1 ulp except when the window cancels almost to zero (``|exact| <<
m u sum|x|``), where only the tiny absolute term remains. Notionals are
non-negative in practice, so that case needs negative amounts (corrections).

Non-finite values follow IEEE addition over the window's rows, exactly as
``sum`` of the window would: a window holding a NaN sums to NaN, one holding
``+inf`` (and no NaN, no ``-inf``) sums to ``+inf``, one holding both ``+inf``
and ``-inf`` sums to NaN. Because no partial ever contains a row outside the
window, nothing non-finite "sticks" after it leaves. Once a partial's high part
is non-finite its low part is NaN (``inf - inf`` inside TwoSum), so the final
combination returns the high part alone in that case. Finite values whose sum
exceeds the float64 range give ``+-inf`` (``math.fsum`` would raise).
"""

from __future__ import annotations

import numpy as np
from numba import njit

INT64_MIN = np.iinfo(np.int64).min


# --------------------------------------------------------------------------
# counting sort by group, time sort inside groups
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def group_counts(codes, timestamps, counts, unsorted):
    """Histogram of ``codes`` into ``counts`` (zeroed, int64[n_groups]) and
    ``unsorted[g] = 1`` when group ``g``'s timestamps are not non-decreasing in
    input order (so the time sort can be skipped for the groups that are, the
    usual case when feeds arrive time-ordered). Codes must be in range."""
    n_groups = counts.shape[0]
    last_t = np.full(n_groups, INT64_MIN, dtype=np.int64)
    for i in range(codes.shape[0]):
        g = codes[i]
        counts[g] += 1
        t = timestamps[i]
        if t < last_t[g]:
            unsorted[g] = 1
        else:
            last_t[g] = t


@njit(cache=True, nogil=True)
def scatter_by_group(codes, timestamps, values, offsets, order, ts_out, values_out):
    """Stable counting-sort scatter: rows of group ``g`` go to
    ``offsets[g]:offsets[g+1]`` in input order. One fused pass writes the
    permutation and both gathered columns (three separate numpy fancy-index
    gathers would each re-read the permutation)."""
    cursor = offsets[:-1].copy()
    for i in range(codes.shape[0]):
        g = codes[i]
        p = cursor[g]
        cursor[g] = p + 1
        order[p] = i
        ts_out[p] = timestamps[i]
        values_out[p] = values[i]


@njit(cache=True, nogil=True)
def sort_unsorted_segments(offsets, unsorted, order, timestamps, values):
    """Stable time sort, in place, of each segment flagged in ``unsorted``.
    Ties keep their current (input) order, so ``order`` stays stable."""
    for g in range(offsets.shape[0] - 1):
        if unsorted[g] == 0:
            continue
        a = offsets[g]
        b = offsets[g + 1]
        perm = np.argsort(timestamps[a:b], kind="mergesort")
        o = order[a:b].copy()
        t = timestamps[a:b].copy()
        v = values[a:b].copy()
        for j in range(b - a):
            q = perm[j]
            order[a + j] = o[q]
            timestamps[a + j] = t[q]
            values[a + j] = v[q]


# --------------------------------------------------------------------------
# window sums
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _segment_windows(
    ts,
    x,
    a,
    b,
    window_ns,
    order,
    to_input,
    sums,
    counts,
    first_out,
    last_out,
    fhi,
    flo,
):
    """Windows of the time-sorted segment ``[a, b)``; see the module docstring.

    ``to_input``: write ``sums``/``counts`` at input row ``order[k]`` (and skip
    ``first_out``/``last_out``); otherwise write at sorted row ``k``.
    ``fhi``/``flo`` is the front-table scratch; it is grown when a window is
    longer than it and returned (possibly reallocated)."""
    first = a
    last = a - 1
    p = a  # pivot: front = [first, p) read from the table, back = [p, last]
    base = a  # sorted index stored at table slot 0
    bhi = 0.0
    blo = 0.0
    # lower bound t - W without int64 overflow (negative timestamps allowed)
    low_limit = INT64_MIN + window_ns
    k = a
    while k < b:
        t = ts[k]
        # every row with an equal timestamp belongs to the window, whatever its
        # position: extend the back to the end of the tie run
        while last + 1 < b and ts[last + 1] == t:
            last += 1
            v = x[last]
            s = bhi + v
            bb = s - bhi
            blo += (bhi - (s - bb)) + (v - bb)  # TwoSum error of bhi + v
            bhi = s
        lo = t - window_ns if t >= low_limit else INT64_MIN
        while ts[first] < lo:
            first += 1
        if first >= p:
            # front exhausted: move the pivot past the window and rebuild the
            # suffix table over [first, last]; the back restarts empty
            m = last - first + 1
            if m > fhi.shape[0]:
                cap = max(m, 2 * fhi.shape[0])
                fhi = np.empty(cap, dtype=np.float64)
                flo = np.empty(cap, dtype=np.float64)
            base = first
            shi = 0.0
            slo = 0.0
            for j in range(last, first - 1, -1):
                v = x[j]
                s = shi + v
                bb = s - shi
                slo += (shi - (s - bb)) + (v - bb)
                shi = s
                fhi[j - base] = shi
                flo[j - base] = slo
            p = last + 1
            bhi = 0.0
            blo = 0.0
        fh = fhi[first - base]
        fl = flo[first - base]
        s = fh + bhi
        if np.isfinite(s):
            bb = s - fh
            err = (fh - (s - bb)) + (bhi - bb)
            total = s + (err + (fl + blo))
        else:
            # a non-finite high part carries a NaN low part (inf - inf in
            # TwoSum); IEEE addition of the high parts is the answer
            total = s
        cnt = last - first + 1
        if to_input:
            for kk in range(k, last + 1):
                r = order[kk]
                sums[r] = total
                counts[r] = cnt
        else:
            for kk in range(k, last + 1):
                sums[kk] = total
                counts[kk] = cnt
                first_out[kk] = first
                last_out[kk] = last
        k = last + 1
    return fhi, flo


@njit(cache=True, nogil=True)
def window_sums_sorted(offsets, ts, x, window_ns, sums, counts, first, last):
    """Window sum, count and [first, last] bounds of every row, in sorted
    order (rows grouped by ``offsets``, time-sorted inside each group)."""
    fhi = np.empty(64, dtype=np.float64)
    flo = np.empty(64, dtype=np.float64)
    dummy = np.empty(0, dtype=np.int64)
    for g in range(offsets.shape[0] - 1):
        fhi, flo = _segment_windows(
            ts,
            x,
            offsets[g],
            offsets[g + 1],
            window_ns,
            dummy,
            False,
            sums,
            counts,
            first,
            last,
            fhi,
            flo,
        )


@njit(cache=True, nogil=True)
def window_sums_to_input(offsets, ts, x, order, window_ns, sums, counts):
    """As :func:`window_sums_sorted`, but writes sums and counts straight to
    input positions ``order[k]`` (no sorted-order intermediate, no bounds)."""
    fhi = np.empty(64, dtype=np.float64)
    flo = np.empty(64, dtype=np.float64)
    dummy = np.empty(0, dtype=np.int64)
    for g in range(offsets.shape[0] - 1):
        fhi, flo = _segment_windows(
            ts,
            x,
            offsets[g],
            offsets[g + 1],
            window_ns,
            order,
            True,
            sums,
            counts,
            dummy,
            dummy,
            fhi,
            flo,
        )


# --------------------------------------------------------------------------
# robust statistics: per-group median and MAD by selection
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _select(a, lo, hi, k):
    """Rearrange ``a[lo:hi+1]`` so ``a[k]`` is its k-th smallest, with
    ``a[lo:k] <= a[k] <= a[k+1:hi+1]`` (quickselect, expected O(m)).

    Median-of-three Hoare partitioning copes with many equal values; a budget
    of ~2 log2(m) partition rounds bounds adversarial inputs (introselect):
    when it runs out the remaining range is sorted, O(m log m) worst case.
    ``a`` must hold no NaN."""
    budget = 8
    m = hi - lo + 1
    while m > 1:
        budget += 2
        m >>= 1
    while hi > lo:
        if hi - lo < 16:
            # insertion sort of a short range
            for i in range(lo + 1, hi + 1):
                v = a[i]
                j = i - 1
                while j >= lo and a[j] > v:
                    a[j + 1] = a[j]
                    j -= 1
                a[j + 1] = v
            return
        if budget == 0:
            a[lo : hi + 1] = np.sort(a[lo : hi + 1])
            return
        budget -= 1
        mid = (lo + hi) >> 1
        x0 = a[lo]
        x1 = a[mid]
        x2 = a[hi]
        if x0 > x1:
            x0, x1 = x1, x0
        if x1 > x2:
            x1 = x2
            if x0 > x1:
                x1 = x0
        pivot = x1  # median of the three; a value present in the range
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
        # now a[lo:j+1] <= pivot, a[i:hi+1] >= pivot, a[j+1:i] == pivot
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True, nogil=True)
def _median_inplace(a, m):
    """Median of ``a[:m]`` (m >= 1, no NaN), reordering it. Even m: the mean
    of the two middle values computed as numpy does, ``(lo + hi) / 2``."""
    k = m >> 1
    _select(a, 0, m - 1, k)
    if m & 1:
        return a[k]
    lower = a[0]
    for i in range(1, k):
        if a[i] > lower:
            lower = a[i]
    return (lower + a[k]) / 2.0


@njit(cache=True, nogil=True)
def group_median_mad(values, offsets, median, mad):
    """Per group ``g``: median and raw (unscaled) median absolute deviation of
    the non-NaN values in ``values[offsets[g]:offsets[g+1]]``; NaN for a group
    with no such value. Infinities take part as ordered values; a deviation
    ``|inf - inf|`` is NaN and makes that group's MAD NaN (as numpy does)."""
    n_groups = offsets.shape[0] - 1
    longest = 0
    for g in range(n_groups):
        longest = max(longest, offsets[g + 1] - offsets[g])
    scratch = np.empty(longest, dtype=np.float64)
    for g in range(n_groups):
        m = 0
        for j in range(offsets[g], offsets[g + 1]):
            v = values[j]
            if not np.isnan(v):
                scratch[m] = v
                m += 1
        if m == 0:
            median[g] = np.nan
            mad[g] = np.nan
            continue
        med = _median_inplace(scratch, m)
        median[g] = med
        bad = False
        for j in range(m):
            d = abs(scratch[j] - med)
            if np.isnan(d):
                bad = True
            scratch[j] = d
        mad[g] = np.nan if bad else _median_inplace(scratch, m)
