"""Rolling time-window statistics per group: validating wrappers over
:mod:`surv_kernel.kernels`.

The window of a row is every row of the *same group* whose timestamp lies in
``[t - window_ns, t]``, both ends inclusive. Every row with an equal timestamp
is inside the window whatever its position in the input, so results do not
depend on input order. The usual group is (trader, asset class): a trader's
activity is judged per asset class because the static floors are per asset
class and one USD sum across rates and equities mixes incomparable sizes.

Sorting: rows are arranged by a stable counting sort on the dense group code
(O(n + n_groups)) and then, only for the groups whose timestamps are not
already non-decreasing in input order, by a stable time sort inside the group.
Feeds arrive time-ordered, so usually no group needs the second step.

Summation is compensated and never subtracts (see :mod:`surv_kernel.kernels`
for the error bound and the NaN / infinity semantics): a window holding a NaN
sums to NaN, ``+inf`` and ``-inf`` together give NaN, and a non-finite value
affects only the windows that contain it.
"""

from __future__ import annotations

import datetime
import operator
from typing import NamedTuple

import numpy as np

from . import dtypes, kernels

__all__ = [
    "MAD_TO_SIGMA",
    "WindowStats",
    "group_median_mad",
    "rolling_window_sums",
    "window_stats",
]

#: MAD * MAD_TO_SIGMA estimates sigma for normally distributed data (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602

_CODE_LIMIT = np.iinfo(np.int32).max


class WindowStats(NamedTuple):
    """Window statistics in (group, time) order; see :func:`window_stats`."""

    order: np.ndarray
    """int64[n]: input row of the k-th row in (group, time) order; stable."""
    group_offsets: np.ndarray
    """int64[n_groups+1]: rows of group g are ``order[off[g]:off[g+1]]``."""
    sums: np.ndarray
    """float64[n], sorted order: sum of notional over the window of row k."""
    counts: np.ndarray
    """int64[n], sorted order: number of rows in the window of row k."""
    first: np.ndarray
    """int64[n]: sorted-order index of the first row of row k's window."""
    last: np.ndarray
    """int64[n]: sorted-order index of the last row of row k's window (>= k)."""


# --------------------------------------------------------------------------
# boundary conversion
# --------------------------------------------------------------------------


def _as_1d(name: str, a: object) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _codes(group_codes: object) -> tuple[np.ndarray, int]:
    """Codes as ``dtypes.CODE`` and the largest code (-1 when empty)."""
    codes = _as_1d("group_codes", group_codes)
    if codes.size == 0 and codes.dtype.kind == "f":
        codes = codes.astype(dtypes.CODE)  # np.asarray([]) is float64
    if codes.dtype.kind not in "iu":
        raise TypeError(
            f"group_codes must be integer dense codes (e.g. Dictionary.encode), got {codes.dtype}"
        )
    if codes.size == 0:
        return codes.astype(dtypes.CODE, copy=False), -1
    cmin = int(codes.min())
    cmax = int(codes.max())
    if cmin < 0:
        raise ValueError(f"group_codes must be >= 0, got minimum {cmin}")
    if cmax > _CODE_LIMIT:
        raise ValueError(f"group_codes must be dense codes that fit int32, got maximum {cmax}")
    return codes.astype(dtypes.CODE, copy=False), cmax


def _timestamps(timestamps_ns: object) -> np.ndarray:
    ts = _as_1d("timestamps_ns", timestamps_ns)
    if ts.dtype.kind == "M":
        ts_ns = ts.astype("datetime64[ns]")
        if np.isnat(ts_ns).any():
            raise ValueError("timestamps_ns contains NaT; drop or quarantine those rows first")
        return ts_ns.view(dtypes.TIMESTAMP)
    if ts.dtype == dtypes.TIMESTAMP:
        return ts
    if ts.dtype.kind in "iu":
        if ts.dtype == np.uint64 and ts.size and ts.max() > np.iinfo(np.int64).max:
            raise ValueError("timestamps_ns exceed the int64 nanosecond range")
        return ts.astype(dtypes.TIMESTAMP)
    if ts.size == 0 and ts.dtype.kind == "f":
        return ts.astype(dtypes.TIMESTAMP)
    raise TypeError(
        f"timestamps_ns must be integer nanoseconds since the epoch (int64) or datetime64, "
        f"got {ts.dtype}; convert float seconds with np.round(seconds * 1e9).astype(np.int64)"
    )


def _notional(notional: object) -> np.ndarray:
    x = _as_1d("notional", notional)
    if x.dtype == dtypes.NOTIONAL:
        return x
    if x.dtype.kind not in "iuf":
        raise TypeError(f"notional must be a real number array, got {x.dtype}")
    return x.astype(dtypes.NOTIONAL)


def _window(window_ns: object) -> int:
    if isinstance(window_ns, np.timedelta64):
        if np.isnat(window_ns):
            raise ValueError("window_ns is NaT")
        w = int(window_ns.astype("timedelta64[ns]").astype(np.int64))
    elif isinstance(window_ns, datetime.timedelta):
        w = (
            window_ns.days * 86_400 + window_ns.seconds
        ) * dtypes.NS_PER_SECOND + window_ns.microseconds * 1000
    elif isinstance(window_ns, (bool, np.bool_)):
        raise TypeError("window_ns must be an integer number of nanoseconds, got a bool")
    else:
        try:
            w = operator.index(window_ns)
        except TypeError:
            raise TypeError(
                f"window_ns must be an integer number of nanoseconds (or a timedelta), "
                f"got {type(window_ns).__name__}; e.g. 30 * surv_kernel.dtypes.NS_PER_MINUTE"
            ) from None
    if w < 0:
        raise ValueError(f"window_ns must be >= 0, got {w}")
    if w > np.iinfo(np.int64).max:
        raise ValueError(f"window_ns must fit int64 nanoseconds, got {w}")
    return w


def _prepare(group_codes, timestamps_ns, notional, window_ns, n_groups):
    codes, cmax = _codes(group_codes)
    ts = _timestamps(timestamps_ns)
    x = _notional(notional)
    w = _window(window_ns)
    if not (codes.shape[0] == ts.shape[0] == x.shape[0]):
        raise ValueError(
            f"group_codes, timestamps_ns and notional must have equal lengths, got "
            f"{codes.shape[0]}, {ts.shape[0]}, {x.shape[0]}"
        )
    if n_groups is None:
        n_groups = cmax + 1
    else:
        n_groups = operator.index(n_groups)
        if n_groups <= cmax:
            raise ValueError(f"n_groups={n_groups} but group_codes has code {cmax}")
    return codes, ts, x, w, n_groups


def _arrange(codes, ts, x, n_groups):
    """Counting sort by group, then time sort of the unsorted groups."""
    n = codes.shape[0]
    counts = np.zeros(n_groups, dtype=np.int64)
    unsorted = np.zeros(n_groups, dtype=np.uint8)
    kernels.group_counts(codes, ts, counts, unsorted)
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.empty(n, dtype=np.int64)
    ts_s = np.empty(n, dtype=dtypes.TIMESTAMP)
    x_s = np.empty(n, dtype=dtypes.NOTIONAL)
    kernels.scatter_by_group(codes, ts, x, offsets, order, ts_s, x_s)
    if unsorted.any():
        kernels.sort_unsorted_segments(offsets, unsorted, order, ts_s, x_s)
    return offsets, order, ts_s, x_s


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def window_stats(group_codes, timestamps_ns, notional, window_ns, n_groups=None) -> WindowStats:
    """Window sum and count of every row, in (group, time) order.

    Parameters
    ----------
    group_codes : int array (n,)
        Dense group codes >= 0 (e.g. from ``Dictionary.encode``).
    timestamps_ns : int64 array (n,) or datetime64
        Nanoseconds since the epoch; any order; negative values are allowed.
    notional : float array (n,)
        Amounts to sum (USD). NaN / inf follow IEEE addition over each window.
    window_ns : int >= 0 or timedelta
        Window length; the window of row k is ``[t_k - window_ns, t_k]``
        (inclusive) within row k's group. 0 means "rows at the same instant".
    n_groups : int, optional
        Number of groups (so ``group_offsets`` covers codes with no rows);
        defaults to ``max(group_codes) + 1``.

    The input arrays are not modified.
    """
    codes, ts, x, w, n_groups = _prepare(group_codes, timestamps_ns, notional, window_ns, n_groups)
    offsets, order, ts_s, x_s = _arrange(codes, ts, x, n_groups)
    n = codes.shape[0]
    sums = np.empty(n, dtype=dtypes.NOTIONAL)
    counts = np.empty(n, dtype=dtypes.COUNT)
    first = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    kernels.window_sums_sorted(offsets, ts_s, x_s, w, sums, counts, first, last)
    return WindowStats(order, offsets, sums, counts, first, last)


def rolling_window_sums(group_codes, timestamps_ns, notional, window_ns):
    """Window sum and count of every row, aligned with the INPUT order.

    Same arguments and semantics as :func:`window_stats`; returns
    ``(sums float64[n], counts int64[n])``. The input arrays are not modified.
    """
    codes, ts, x, w, n_groups = _prepare(group_codes, timestamps_ns, notional, window_ns, None)
    offsets, order, ts_s, x_s = _arrange(codes, ts, x, n_groups)
    n = codes.shape[0]
    sums = np.empty(n, dtype=dtypes.NOTIONAL)
    counts = np.empty(n, dtype=dtypes.COUNT)
    kernels.window_sums_to_input(offsets, ts_s, x_s, order, w, sums, counts)
    return sums, counts


def group_median_mad(values, group_offsets):
    """Per group median and raw (unscaled) MAD, by selection in O(n).

    ``values`` are already arranged by group (e.g. ``WindowStats.sums``); group
    ``g`` is ``values[group_offsets[g]:group_offsets[g+1]]``. Returns
    ``(median, mad)``, float64[n_groups] each. NaN values are ignored; a group
    with no non-NaN value gets NaN for both. Infinities take part as ordered
    values (a MAD needing ``inf - inf`` is NaN, as with numpy). Multiply the
    MAD by :data:`MAD_TO_SIGMA` for a sigma estimate.
    """
    v = _as_1d("values", values)
    if v.dtype.kind not in "iuf":
        raise TypeError(f"values must be a real number array, got {v.dtype}")
    v = v.astype(np.float64, copy=False)
    off = _as_1d("group_offsets", group_offsets)
    if off.dtype.kind not in "iu":
        raise TypeError(f"group_offsets must be integers, got {off.dtype}")
    off = off.astype(np.int64, copy=False)
    if off.shape[0] < 1:
        raise ValueError("group_offsets must have n_groups + 1 >= 1 entries")
    if off[0] != 0 or off[-1] != v.shape[0]:
        raise ValueError(
            f"group_offsets must start at 0 and end at len(values)={v.shape[0]}, "
            f"got {off[0]} .. {off[-1]}"
        )
    if off.shape[0] > 1 and (np.diff(off) < 0).any():
        raise ValueError("group_offsets must be non-decreasing")
    n_groups = off.shape[0] - 1
    median = np.empty(n_groups, dtype=np.float64)
    mad = np.empty(n_groups, dtype=np.float64)
    kernels.group_median_mad(v, off, median, mad)
    return median, mad
