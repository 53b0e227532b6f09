"""Rolling time-window statistics per group: validating wrappers over
:mod:`surv_kernel.kernels.windows`.

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

Summation is compensated and never subtracts (see :mod:`surv_kernel.kernels.windows`
for the error bound and the NaN / infinity semantics): a window holding a NaN
sums to NaN, ``+inf`` and ``-inf`` together give NaN, and a non-finite value
affects only the windows that contain it. Results match ``math.fsum`` over
each window to ~1 ulp (tests: 1e-9 relative, plus 1e-15 * sum|x| absolute for
windows that cancel to ~0).

Threads: large inputs are split into row chunks and group blocks run by
plain Python threads over ``nogil`` kernels (:func:`set_num_threads`,
``SURV_KERNEL_NUM_THREADS``); results are bitwise identical for any number of
threads.
"""

from __future__ import annotations

import datetime
import itertools
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import NamedTuple

import numpy as np

from . import dtypes
from .kernels import stats as stat_kernels
from .kernels import windows as kernels

__all__ = [
    "MAD_TO_SIGMA",
    "WindowStats",
    "get_num_threads",
    "group_median_mad",
    "precompile",
    "rolling_window_sums",
    "set_num_threads",
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
    # contiguous: a strided view would make numba compile another
    # specialisation of every kernel (seconds) and run slower
    return np.ascontiguousarray(arr)


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
        if not 0 <= n_groups <= _CODE_LIMIT + 1:
            raise ValueError(f"n_groups must be in [0, 2**31], got {n_groups}")
        if n_groups <= cmax:
            raise ValueError(f"n_groups={n_groups} but group_codes has code {cmax}")
    return codes, ts, x, w, n_groups


_EMPTY_I64 = np.empty(0, dtype=np.int64)

# --------------------------------------------------------------------------
# threads: the kernels release the GIL (nogil), so plain Python threads run
# them side by side on disjoint row chunks / group blocks. Unlike numba's
# ``parallel=True`` this is safe whatever threading layer is installed and
# when callers themselves run detections from several threads (desks.py).
# Every output element is computed by the same operations for any number of
# threads: results are bitwise identical (tests check 1 vs several threads).
# --------------------------------------------------------------------------

#: Below this many rows a single thread is used (thread hand-off costs ~50 us).
PARALLEL_MIN_ROWS = 200_000

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()
_num_threads: int | None = None


def _forget_pool_after_fork() -> None:
    # a forked child inherits the pool object but not its threads: tasks
    # submitted to it would never run and the caller would wait forever
    global _pool, _pool_workers, _pool_lock
    _pool = None
    _pool_workers = 0
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _default_threads() -> int:
    env = os.environ.get("SURV_KERNEL_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(
                f"SURV_KERNEL_NUM_THREADS must be a positive integer, got {env!r}"
            ) from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """Threads used by the window kernels (default: CPUs available to this
    process, or ``SURV_KERNEL_NUM_THREADS``)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the threads used by the window kernels (results do not depend on it)."""
    global _num_threads
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _num_threads = n


def _run(fn, arg_lists) -> None:
    """Run ``fn(*args)`` for every args. Tasks are taken dynamically by the
    caller and up to ``threads - 1`` pool workers, so a thread slowed down by
    other processes on the machine takes fewer tasks instead of holding up the
    phase. The caller always works too: it progresses even when other callers
    keep the shared pool busy."""
    n_tasks = len(arg_lists)
    helpers = min(get_num_threads(), n_tasks) - 1
    if helpers <= 0:
        for args in arg_lists:
            fn(*args)
        return
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < helpers:
            if _pool is not None:
                _pool.shutdown(wait=False)  # running tasks finish; threads then exit
            _pool_workers = max(1, get_num_threads() - 1)
            _pool = ThreadPoolExecutor(max_workers=_pool_workers, thread_name_prefix="surv-kernel")
        pool = _pool
    counter = itertools.count()  # next() is atomic under the GIL

    def work() -> None:
        while (i := next(counter)) < n_tasks:
            fn(*arg_lists[i])

    futures = [pool.submit(work) for _ in range(helpers)]
    try:
        work()
    finally:
        # never return (or raise) while a worker may still write an output
        wait(futures)
    for f in futures:
        f.result()


#: Tasks per thread and phase: small enough to balance, large enough that the
#: ~20 us hand-off per task stays negligible.
_TASKS_PER_THREAD = 4


def _n_parts(n_rows: int) -> int:
    if n_rows < PARALLEL_MIN_ROWS or get_num_threads() == 1:
        return 1
    min_rows = max(1, PARALLEL_MIN_ROWS // _TASKS_PER_THREAD)
    return max(1, min(get_num_threads() * _TASKS_PER_THREAD, n_rows // min_rows))


def _row_chunks(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def _group_blocks(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split groups into up to ``parts`` contiguous blocks of about equal rows."""
    n_groups = offsets.shape[0] - 1
    if parts == 1 or n_groups <= 1:
        return [(0, n_groups)]
    n = int(offsets[-1])
    targets = [n * i // parts for i in range(1, parts)]
    cuts = np.searchsorted(offsets, targets, side="left").tolist()
    bounds = [0, *(min(max(c, 0), n_groups) for c in cuts), n_groups]
    blocks = [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]
    return blocks or [(0, n_groups)]


def _arrange(codes, ts, x, n_groups, *, for_input_order):
    """Counting sort by group, then a time sort of only the groups that are
    not already time-ordered. Returns ``offsets, ts_s, x_s, order, rank,
    prepos, group_unsorted, blocks``.

    ``for_input_order=False`` (window_stats): ``order`` (sorted -> input row)
    is computed; ``rank`` and ``prepos`` are empty.
    ``for_input_order=True`` (rolling_window_sums): no ``order``; ``rank``
    (input row -> position after the counting sort) and, for time-sorted
    groups, ``prepos`` (sorted row -> its position before the time sort), so
    results written at ``prepos`` come back to input order through ``rank``."""
    n = codes.shape[0]
    parts = _n_parts(n)
    # per-chunk tables are parts x n_groups: keep them O(n) when groups are many
    row_parts = max(1, min(parts, n // max(1, 4 * n_groups)))
    chunks = _row_chunks(n, row_parts)
    counts = np.zeros((row_parts, n_groups), dtype=np.int64)
    unsorted = np.zeros((row_parts, n_groups), dtype=np.uint8)
    first_t = np.empty((row_parts, n_groups), dtype=np.int64)
    max_t = np.empty((row_parts, n_groups), dtype=np.int64)
    _run(
        kernels.chunk_group_stats,
        [
            (codes, ts, lo, hi, counts[c], unsorted[c], first_t[c], max_t[c])
            for c, (lo, hi) in enumerate(chunks)
        ],
    )
    offsets = np.empty(n_groups + 1, dtype=np.int64)
    cursors = np.empty((row_parts, n_groups), dtype=np.int64)
    group_unsorted = np.empty(n_groups, dtype=np.uint8)
    kernels.combine_chunk_stats(counts, unsorted, first_t, max_t, offsets, cursors, group_unsorted)
    any_unsorted = bool(group_unsorted.any())
    order = np.empty(0 if for_input_order else n, dtype=np.int64)
    # rank and prepos are int32 whenever they fit: less to write and to read
    # (int64 only past 2**31 rows, a second compiled signature)
    pos_dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    rank = np.empty(n if for_input_order else 0, dtype=pos_dtype)
    prepos = np.empty(n if (for_input_order and any_unsorted) else 0, dtype=pos_dtype)
    ts_s = np.empty(n, dtype=dtypes.TIMESTAMP)
    x_s = np.empty(n, dtype=dtypes.NOTIONAL)
    _run(
        kernels.scatter_chunk,
        [
            (codes, ts, x, lo, hi, cursors[c], ts_s, x_s, order, rank)
            for c, (lo, hi) in enumerate(chunks)
        ],
    )
    blocks = _group_blocks(offsets, parts)
    if any_unsorted:
        _run(
            kernels.sort_unsorted_segments,
            [(offsets, group_unsorted, g0, g1, ts_s, x_s, order, prepos) for g0, g1 in blocks],
        )
    return offsets, ts_s, x_s, order, rank, prepos, group_unsorted, blocks


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
    offsets, ts_s, x_s, order, _, prepos, unsorted, blocks = _arrange(
        codes, ts, x, n_groups, for_input_order=False
    )
    n = codes.shape[0]
    sums = np.empty(n, dtype=dtypes.NOTIONAL)
    counts = np.empty(n, dtype=dtypes.COUNT)
    first = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    _run(
        kernels.window_sums_sorted,
        [
            (offsets, g0, g1, ts_s, x_s, w, sums, counts, first, last, unsorted, prepos)
            for g0, g1 in blocks
        ],
    )
    return WindowStats(order, offsets, sums, counts, first, last)


def rolling_window_sums(group_codes, timestamps_ns, notional, window_ns):
    """Window sum and count of every row, aligned with the INPUT order.

    Same arguments and semantics as :func:`window_stats`; returns
    ``(sums float64[n], counts int64[n])``. The input arrays are not modified.
    """
    codes, ts, x, w, n_groups = _prepare(group_codes, timestamps_ns, notional, window_ns, None)
    offsets, ts_s, x_s, _, rank, prepos, unsorted, blocks = _arrange(
        codes, ts, x, n_groups, for_input_order=True
    )
    n = codes.shape[0]
    sums_s = np.empty(n, dtype=dtypes.NOTIONAL)
    counts_s = np.empty(n, dtype=dtypes.COUNT)
    _run(
        kernels.window_sums_sorted,
        [
            (
                offsets,
                g0,
                g1,
                ts_s,
                x_s,
                w,
                sums_s,
                counts_s,
                _EMPTY_I64,
                _EMPTY_I64,
                unsorted,
                prepos,
            )
            for g0, g1 in blocks
        ],
    )
    # sums_s/counts_s are at counting-sort positions, which rank maps input
    # rows to. x_s and ts_s (int64, like counts) are free now: reuse them as
    # the outputs instead of touching fresh memory
    counts = ts_s.view(dtypes.COUNT)
    _run(
        kernels.gather_by_rank,
        [(rank, lo, hi, sums_s, counts_s, x_s, counts) for lo, hi in _row_chunks(n, _n_parts(n))],
    )
    return x_s, counts


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
    _run(
        stat_kernels.group_median_mad,
        [(v, off, g0, g1, median, mad) for g0, g1 in _group_blocks(off, _n_parts(v.shape[0]))],
    )
    return median, mad


def precompile() -> float:
    """Compile (or load from the Numba cache) every kernel behind this module
    with tiny inputs, touching each code path (time-ordered groups, the time
    sort, window bounds, median/MAD). Returns the seconds it took: several on
    a cold cache, well under one on a warm one. Call it at service start or
    after installing, so the first real batch does not pay for compilation."""
    import time

    t0 = time.perf_counter()
    g = np.array([0, 0, 1, 1], dtype=dtypes.CODE)
    t = np.array([1, 2, 5, 3], dtype=dtypes.TIMESTAMP)
    x = np.ones(4, dtype=dtypes.NOTIONAL)
    rolling_window_sums(g, t, x, 2)
    stats = window_stats(g, t, x, 2)
    group_median_mad(stats.sums, stats.group_offsets)
    return time.perf_counter() - t0
