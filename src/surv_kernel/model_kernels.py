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
