"""Robust-statistics kernels: per-group median and MAD by selection.

Jitted code only (arrays and scalars in, preallocated outputs); the wrapper is
:func:`surv_kernel.windows.group_median_mad`, the slow twin in ``tests/naive.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------
# robust statistics: per-group median and MAD by selection
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _heapsort(a, lo, hi):
    """In-place heapsort of ``a[lo:hi+1]`` (the selection's O(m log m) guard)."""
    n = hi - lo + 1
    for start in range(n // 2 - 1, -1, -1):
        _sift_down(a, lo, start, n)
    for end in range(n - 1, 0, -1):
        tmp = a[lo]
        a[lo] = a[lo + end]
        a[lo + end] = tmp
        _sift_down(a, lo, 0, end)


@njit(cache=True, nogil=True)
def _sift_down(a, lo, root, n):
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and a[lo + child + 1] > a[lo + child]:
            child += 1
        if a[lo + root] >= a[lo + child]:
            return
        tmp = a[lo + root]
        a[lo + root] = a[lo + child]
        a[lo + child] = tmp
        root = child


@njit(cache=True, nogil=True)
def _select(a, lo, hi, k):
    """Rearrange ``a[lo:hi+1]`` so ``a[k]`` is its k-th smallest, with
    ``a[lo:k] <= a[k] <= a[k+1:hi+1]`` (quickselect, expected O(m)).

    Hoare partitioning copes with many equal values. The pivot is the median
    of three values at pseudo-random positions (a fixed-seed xorshift, so runs
    are reproducible; the selected value does not depend on pivots anyway):
    fixed positions (first/middle/last) degrade on V-shaped inputs such as the
    deviations |x - median| of sorted data. A budget of ~2 log2(m) partition
    rounds bounds adversarial inputs (introselect): when it runs out the
    remaining range is heapsorted, O(m log m) worst case. No NaN in ``a``."""
    state = np.uint64(0x9E3779B97F4A7C15)
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
            _heapsort(a, lo, hi)
            return
        budget -= 1
        span = np.uint64(hi - lo + 1)
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        x0 = a[lo + np.int64(state % span)]
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        x1 = a[lo + np.int64(state % span)]
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        x2 = a[lo + np.int64(state % span)]
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
def group_median_mad(values, offsets, g0, g1, median, mad):
    """Per group ``g`` in ``[g0, g1)``: median and raw (unscaled) MAD of
    the non-NaN values in ``values[offsets[g]:offsets[g+1]]``; NaN for a group
    with no such value. Infinities take part as ordered values; a deviation
    ``|inf - inf|`` is NaN and makes that group's MAD NaN (as numpy does)."""
    longest = 0
    for g in range(g0, g1):
        longest = max(longest, offsets[g + 1] - offsets[g])
    scratch = np.empty(longest, dtype=np.float64)
    for g in range(g0, g1):
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
