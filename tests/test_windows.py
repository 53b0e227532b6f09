"""Window kernel and robust statistics against the slow references in naive.py."""

from __future__ import annotations

import datetime
import math
import os
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import naive
from surv_kernel import dtypes
from surv_kernel.windows import (
    MAD_TO_SIGMA,
    WindowStats,
    group_median_mad,
    rolling_window_sums,
    window_stats,
)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Notionals: ordinary, tiny, huge (1e15..1e18), exact cancellation partners.
FINITE = st.one_of(
    st.sampled_from([0.0, 1.0, 2.5, 100.0, 1e-3, 1e-300, 1e15, 1e18, 3.3e17]),
    st.floats(min_value=0.0, max_value=1e18, allow_nan=False),
    st.floats(min_value=-1e18, max_value=1e18, allow_nan=False),
)
ANY_FLOAT = st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf]))


@st.composite
def trades(draw, values=FINITE, max_n=40, max_groups=5, t_span=50):
    n = draw(st.integers(0, max_n))
    n_groups = draw(st.integers(1, max_groups))
    base = draw(st.sampled_from([0, -(10**12), 1_700_000_000 * 10**9]))
    g = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)), np.int32)
    # few distinct timestamps -> many ties
    t = base + np.array(
        draw(st.lists(st.integers(0, t_span), min_size=n, max_size=n)), dtype=np.int64
    )
    x = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    w = draw(st.sampled_from([0, 1, 3, 10, 10**18]))
    return g, t, x, w


def assert_sums_close(got, ref, abs_scale, rtol=1e-9):
    """``got`` matches the correctly rounded window sums ``ref``.

    Finite windows: relative 1e-9, plus an absolute slack of 1e-15 * sum|x| of
    the window. The compensated sum's error is <= 2u|S| + m^2 u^2 sum|x|
    (kernels/windows.py); the second term only matters when the window cancels to
    (nearly) zero, where no relative bound can hold. 1e-15 covers m^2 u^2
    for windows up to ~1e8 rows. Non-finite windows must match exactly.
    """
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape
    nonfinite = ~np.isfinite(ref)
    assert np.array_equal(got[nonfinite], ref[nonfinite], equal_nan=True), (
        got[nonfinite],
        ref[nonfinite],
    )
    f = ~nonfinite
    err = np.abs(got[f] - ref[f])
    tol = rtol * np.abs(ref[f]) + 1e-15 * abs_scale[f]
    assert (err <= tol).all(), (got[f][err > tol], ref[f][err > tol])


def check_against_reference(g, t, x, w):
    sums, counts = rolling_window_sums(g, t, x, w)
    ref_sums, ref_counts = naive.rolling_window_sums(g, t, x, w)
    np.testing.assert_array_equal(counts, ref_counts)
    assert sums.dtype == np.float64 and counts.dtype == np.int64
    assert_sums_close(sums, ref_sums, naive.window_abs_sums(g, t, x, w))
    return sums, counts


# --------------------------------------------------------------------------
# rolling_window_sums vs brute force
# --------------------------------------------------------------------------


@SETTINGS
@given(trades())
@example((np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), 5))
@example((np.zeros(1, np.int32), np.zeros(1, np.int64), np.ones(1), 0))
def test_rolling_sums_match_brute_force(data):
    check_against_reference(*data)


@settings(max_examples=60, deadline=None)
@given(trades(values=ANY_FLOAT))
def test_non_finite_semantics_match_reference(data):
    check_against_reference(*data)


@settings(max_examples=40, deadline=None)
@given(trades(max_n=80, max_groups=30, t_span=2000))
def test_many_groups(data):
    check_against_reference(*data)


def test_huge_value_leaving_does_not_swamp_small_window():
    # 1e18 enters and leaves; the windows after it hold only 1.0s. A running
    # add/subtract sum would return 0.0 or 128.0 here instead of exact counts.
    t = np.array([0, 1, 10, 11, 12, 13], np.int64)
    x = np.array([1e18, 1.0, 1.0, 1.0, 1.0, 1.0])
    g = np.zeros(6, np.int32)
    sums, counts = rolling_window_sums(g, t, x, 5)
    np.testing.assert_array_equal(sums, [1e18, 1e18 + 1.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(counts, [1, 2, 1, 2, 3, 4])


def test_cancellation_is_exact():
    # fsum of each window is exact here; naive left-to-right would give 0.0
    t = np.array([0, 0, 0, 1], np.int64)
    x = np.array([1e18, 1.0, -1e18, 1e-3])
    sums, _ = rolling_window_sums(np.zeros(4, np.int32), t, x, 1)
    assert sums[0] == 1.0 and sums[3] == math.fsum([1e18, 1.0, -1e18, 1e-3])


def test_nan_and_inf_affect_only_their_windows():
    t = np.array([0, 1, 2, 10, 11, 20, 21, 30], np.int64)
    x = np.array([1.0, np.nan, 1.0, np.inf, 2.0, np.inf, -np.inf, 5.0])
    sums, counts = rolling_window_sums(np.zeros(8, np.int32), t, x, 3)
    np.testing.assert_array_equal(sums, [1.0, np.nan, np.nan, np.inf, np.inf, np.inf, np.nan, 5.0])
    np.testing.assert_array_equal(counts, [1, 2, 3, 1, 2, 1, 2, 1])


def test_equal_timestamps_all_inside_whatever_position():
    # rows 0 and 2 share t=5 but are apart in the input: both see both
    g = np.array([0, 0, 0, 1], np.int32)
    t = np.array([5, 3, 5, 5], np.int64)
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    sums, counts = rolling_window_sums(g, t, x, 0)
    np.testing.assert_array_equal(sums, [101.0, 10.0, 101.0, 1000.0])
    np.testing.assert_array_equal(counts, [2, 1, 2, 1])


def test_window_bounds_inclusive():
    t = np.array([0, 10, 20], np.int64)
    sums, _ = rolling_window_sums(np.zeros(3, np.int32), t, np.ones(3), 10)
    np.testing.assert_array_equal(sums, [1.0, 2.0, 2.0])


def test_extreme_timestamps_do_not_overflow():
    lo = np.iinfo(np.int64).min
    hi = np.iinfo(np.int64).max
    t = np.array([lo, lo + 1, -1, 0, hi - 1, hi], np.int64)
    x = np.ones(6)
    g = np.zeros(6, np.int32)
    for w in (0, 1, 2, 10**18, hi):
        check_against_reference(g, t, x, w)


@settings(max_examples=40, deadline=None)
@given(trades(), st.randoms(use_true_random=False))
def test_independent_of_input_permutation(data, rnd):
    g, t, x, w = data
    sums, counts = rolling_window_sums(g, t, x, w)
    perm = np.arange(len(g))
    rnd.shuffle(perm)
    s2, c2 = rolling_window_sums(g[perm], t[perm], x[perm], w)
    # same multiset per window; the compensated sum of a window is not
    # bitwise order-free, but within the fsum tolerance
    np.testing.assert_array_equal(c2, counts[perm])
    ref = naive.rolling_window_sums(g, t, x, w)[0][perm]
    assert_sums_close(s2, ref, naive.window_abs_sums(g, t, x, w)[perm])


@settings(max_examples=30, deadline=None)
@given(trades())
def test_inputs_not_modified(data):
    g, t, x, w = data
    copies = [a.copy() for a in (g, t, x)]
    rolling_window_sums(g, t, x, w)
    window_stats(g, t, x, w)
    for a, b in zip((g, t, x), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_arrival_as_time_ordered_feeds_matches_shuffled():
    rng = np.random.default_rng(7)
    n = 3000
    g = rng.integers(0, 40, n).astype(np.int32)
    t = rng.integers(0, 10**6, n).astype(np.int64)
    x = rng.lognormal(10, 2, n)
    # each group's rows are time-ordered (skip-sort path), groups interleaved
    order = np.lexsort((t, g % 6))
    s_sorted, c_sorted = rolling_window_sums(g[order], t[order], x[order], 50_000)
    s_shuf, c_shuf = rolling_window_sums(g, t, x, 50_000)
    np.testing.assert_array_equal(c_sorted, c_shuf[order])
    np.testing.assert_allclose(s_sorted, s_shuf[order], rtol=1e-12)


# --------------------------------------------------------------------------
# window_stats
# --------------------------------------------------------------------------


@SETTINGS
@given(trades(values=ANY_FLOAT))
def test_window_stats_layout(data):
    g, t, x, w = data
    n_groups = int(g.max()) + 2 if len(g) else 3  # one trailing empty group
    ws = window_stats(g, t, x, w, n_groups=n_groups)
    assert isinstance(ws, WindowStats)
    np.testing.assert_array_equal(ws.order, naive.stable_group_time_order(g, t))
    off = ws.group_offsets
    assert off.dtype == np.int64 and off.shape == (n_groups + 1,)
    np.testing.assert_array_equal(np.diff(off), np.bincount(g, minlength=n_groups))
    sums, counts = rolling_window_sums(g, t, x, w)
    np.testing.assert_array_equal(ws.sums, sums[ws.order])
    np.testing.assert_array_equal(ws.counts, counts[ws.order])
    k = np.arange(len(g))
    assert (ws.first <= k).all() and (ws.last >= k).all()
    np.testing.assert_array_equal(ws.last - ws.first + 1, ws.counts)
    # bounds are the window's members in sorted order
    gs, ts_ = g[ws.order], t[ws.order]
    for kk in range(len(g)):
        members = naive.window_members(gs, ts_, w, kk)
        assert members == list(range(ws.first[kk], ws.last[kk] + 1))


def test_window_stats_empty():
    ws = window_stats([], [], [], 10)
    assert ws.order.shape == (0,) and ws.group_offsets.tolist() == [0]
    ws = window_stats(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), 10, n_groups=2)
    assert ws.group_offsets.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def test_boundary_conversions():
    g = [0, 1, 0]
    t = np.array(["2024-01-01T00:00", "2024-01-01T00:10", "2024-01-01T00:20"], "datetime64[m]")
    x = [1, 2, 3]  # ints become float64
    for w in (20 * dtypes.NS_PER_MINUTE, np.timedelta64(20, "m"), datetime.timedelta(minutes=20)):
        sums, counts = rolling_window_sums(g, t, x, w)
        np.testing.assert_array_equal(sums, [1.0, 2.0, 4.0])
        np.testing.assert_array_equal(counts, [1, 1, 2])
    sums, _ = rolling_window_sums(np.array(g, np.uint8), t.astype(np.int64), x, 1)
    np.testing.assert_array_equal(sums, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        (([0, -1], [0, 1], [1.0, 1.0], 5), ValueError, ">= 0"),
        (([0, 1], [0, 1, 2], [1.0, 1.0], 5), ValueError, "equal lengths"),
        (([0, 1], [0, 1], [1.0, 1.0], -1), ValueError, "window_ns must be >= 0"),
        (([0, 1], [0, 1], [1.0, 1.0], 1.5), TypeError, "integer number of nanoseconds"),
        (([0, 1], [0, 1], [1.0, 1.0], True), TypeError, "bool"),
        (([0.0, 1.0], [0, 1], [1.0, 1.0], 5), TypeError, "dense codes"),
        (([0, 1], [0.0, 1.0], [1.0, 1.0], 5), TypeError, "integer nanoseconds"),
        (([0, 1], [0, 1], ["a", "b"], 5), TypeError, "real number"),
        (([[0, 1]], [[0, 1]], [[1.0, 1.0]], 5), ValueError, "1-D"),
        ((0, 1, 1.0, 5), ValueError, "1-D"),
        (([0, 2**40], [0, 1], [1.0, 1.0], 5), ValueError, "int32"),
        (
            ([0, 1], np.array(["NaT", "2024-01-01"], "datetime64[ns]"), [1.0, 1.0], 5),
            ValueError,
            "NaT",
        ),
    ],
)
def test_bad_input_raises_clearly(args, exc, match):
    with pytest.raises(exc, match=match):
        rolling_window_sums(*args)


def test_n_groups_too_small():
    with pytest.raises(ValueError, match="n_groups"):
        window_stats([0, 3], [0, 1], [1.0, 1.0], 5, n_groups=3)
    with pytest.raises(ValueError, match="n_groups"):
        window_stats([], [], [], 5, n_groups=-2)


def test_strided_and_big_endian_inputs():
    rng = np.random.default_rng(9)
    g = rng.integers(0, 3, 40).astype(np.int32)
    t = rng.integers(0, 100, 40).astype(np.int64)
    x = rng.lognormal(3, 1, 40)
    expected = rolling_window_sums(g[::2], t[::2], x[::2], 10)
    got = rolling_window_sums(
        np.asarray(g[::2], ">i4"), np.asarray(t[::2], ">i8"), np.asarray(x[::2], ">f8"), 10
    )
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    check_against_reference(g[::2], t[::2], x[::2], 10)


# --------------------------------------------------------------------------
# group_median_mad vs numpy
# --------------------------------------------------------------------------


@st.composite
def grouped_values(draw, values=FINITE):
    sizes = draw(st.lists(st.integers(0, 40), min_size=0, max_size=6))
    off = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=off[1:])
    small = st.sampled_from([0.0, 1.0, 1.0, 2.0, 5.0, -3.0])  # many duplicates
    v = draw(st.lists(st.one_of(values, small), min_size=int(off[-1]), max_size=int(off[-1])))
    return np.array(v, np.float64), off


@SETTINGS
@given(grouped_values())
def test_median_mad_match_numpy(data):
    v, off = data
    med, mad = group_median_mad(v, off)
    ref_med, ref_mad = naive.group_median_mad(v, off)
    np.testing.assert_array_equal(med, ref_med)
    np.testing.assert_array_equal(mad, ref_mad)


@settings(max_examples=60, deadline=None)
@given(grouped_values(values=ANY_FLOAT))
def test_median_mad_nan_ignored_inf_ordered(data):
    v, off = data
    before = v.copy()
    med, mad = group_median_mad(v, off)
    np.testing.assert_array_equal(v, before)
    ref_med, ref_mad = naive.group_median_mad(v, off)
    np.testing.assert_array_equal(med, ref_med)
    np.testing.assert_array_equal(mad, ref_mad)


def test_median_mad_large_and_adversarial():
    rng = np.random.default_rng(3)
    parts = [
        rng.lognormal(12, 3, 5001),
        np.repeat([1.0, 2.0], 3000),  # heavy duplicates
        np.arange(4096, dtype=np.float64),  # sorted
        np.arange(4096, dtype=np.float64)[::-1].copy(),  # reversed
        np.full(1000, np.nan),
    ]
    v = np.concatenate(parts)
    off = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=off[1:])
    med, mad = group_median_mad(v, off)
    ref_med, ref_mad = naive.group_median_mad(v, off)
    np.testing.assert_array_equal(med, ref_med)
    np.testing.assert_array_equal(mad, ref_mad)


def test_median_mad_validation_and_constant():
    assert abs(MAD_TO_SIGMA * 0.6744897501960817 - 1.0) < 1e-15
    with pytest.raises(ValueError, match="start at 0"):
        group_median_mad([1.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="non-decreasing"):
        group_median_mad([1.0, 2.0], [0, 2, 1, 2])
    med, mad = group_median_mad([], [0, 0])
    assert np.isnan(med).all() and np.isnan(mad).all()


# --------------------------------------------------------------------------
# the time sort of unsorted groups (radix paths) and threading
# --------------------------------------------------------------------------


def _check_order(g, t, x, w=0):
    ws = window_stats(g, t, x, w)
    expected = naive.stable_group_time_order(g, t)
    np.testing.assert_array_equal(ws.order, expected)
    return ws


@pytest.mark.parametrize(
    "times",
    [
        "uniform",  # MSD buckets of ~1 key, insertion sort
        "clustered",  # one MSD bucket holds almost everything: LSD radix path
        "few_distinct",  # ties: stability
        "full_int64_span",  # span + position bits > 64: mergesort fallback
        "negative",
    ],
)
def test_time_sort_paths(times):
    rng = np.random.default_rng(11)
    n = 5000
    g = rng.integers(0, 3, n).astype(np.int32)
    if times == "uniform":
        t = rng.integers(0, 10**13, n)
    elif times == "clustered":
        t = rng.integers(0, 10**6, n)
        t[::997] = 10**15  # outliers make the top bits nearly constant
    elif times == "few_distinct":
        t = rng.integers(0, 4, n) * 10**9
    elif times == "full_int64_span":
        t = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64)
    else:
        t = -rng.integers(0, 10**12, n)
    t = t.astype(np.int64)
    x = rng.lognormal(10, 2, n)
    ws = _check_order(g, t, x, 10**9)
    # and the sums still follow the definition (spot check rows)
    ts_sorted, x_sorted, g_sorted = t[ws.order], x[ws.order], g[ws.order]
    for k in rng.integers(0, n, 50):
        members = naive.window_members(g_sorted, ts_sorted, 10**9, k)
        assert ws.sums[k] == pytest.approx(math.fsum(x_sorted[members]), rel=1e-12)
        assert ws.counts[k] == len(members)


@pytest.fixture
def many_threads(monkeypatch):
    """Split even tiny inputs into 3 row chunks / group blocks."""
    from surv_kernel import windows

    monkeypatch.setattr(windows, "PARALLEL_MIN_ROWS", 1)
    before = windows.get_num_threads()
    windows.set_num_threads(3)
    yield windows
    windows.set_num_threads(before)


@settings(max_examples=60, deadline=None)
@given(trades(values=ANY_FLOAT, max_n=60))
def test_threaded_results_identical(data):
    # not a fixture argument: hypothesis re-runs the body, monkeypatch would
    # not be reset between examples
    from surv_kernel import windows

    g, t, x, w = data
    saved = (windows.PARALLEL_MIN_ROWS, windows.get_num_threads())
    try:
        windows.set_num_threads(1)
        one = window_stats(g, t, x, w)
        one_sums = rolling_window_sums(g, t, x, w)
        one_med = group_median_mad(one.sums, one.group_offsets)
        windows.PARALLEL_MIN_ROWS = 1
        windows.set_num_threads(3)
        many = window_stats(g, t, x, w)
        many_sums = rolling_window_sums(g, t, x, w)
        many_med = group_median_mad(many.sums, many.group_offsets)
    finally:
        windows.PARALLEL_MIN_ROWS = saved[0]
        windows.set_num_threads(saved[1])
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one_sums + one_med, many_sums + many_med, strict=True):
        np.testing.assert_array_equal(a, b)


def test_group_sorted_per_chunk_but_not_across_chunks(many_threads):
    # sawtooth times: with a period equal to the row-chunk length each chunk is
    # ascending on its own and only the cross-chunk check can see that the
    # group needs the time sort; try every period so one matches the chunking
    for period in range(2, 13):
        t = (np.arange(48) % period).astype(np.int64)
        g = np.zeros(48, np.int32)
        x = np.arange(48, dtype=np.float64)
        _check_order(g, t, x)
        check_against_reference(g, t, x, 2)


def test_precompile_returns_seconds():
    from surv_kernel import windows

    assert 0.0 < windows.precompile() < 600.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kernels_work_in_a_forked_child(many_threads):
    g = np.zeros(8, np.int32)
    t = np.arange(8, dtype=np.int64)
    x = np.ones(8)
    expected = rolling_window_sums(g, t, x, 2)[0]  # parent pool now has threads
    pid = os.fork()
    if pid == 0:  # child: the inherited pool has no threads
        signal.alarm(30)  # a hang (the bug this guards against) kills the child
        ok = np.array_equal(rolling_window_sums(g, t, x, 2)[0], expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_concurrent_callers_share_the_pool(many_threads):
    # desks.py runs detections from several threads at once
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    inputs = []
    for _ in range(8):
        n = 400
        inputs.append(
            (
                rng.integers(0, 5, n).astype(np.int32),
                rng.integers(0, 1000, n).astype(np.int64),
                rng.lognormal(5, 2, n),
            )
        )
    expected = [rolling_window_sums(g, t, x, 50) for g, t, x in inputs]
    with ThreadPoolExecutor(max_workers=4) as callers:
        got = list(callers.map(lambda a: rolling_window_sums(*a, 50), inputs))
    for (s1, c1), (s2, c2) in zip(expected, got, strict=True):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(c1, c2)


def test_num_threads_validation():
    from surv_kernel import windows

    with pytest.raises(ValueError, match=">= 1"):
        windows.set_num_threads(0)


def test_realistic_sums_bitwise_independent_of_permutation():
    # the compensated sum is not order-free in theory, but with positive
    # amounts its result is the correctly rounded sum except within ~u^2 of a
    # rounding boundary: shuffling realistic input changes no bit. (A plain
    # running sum fails this test on a few percent of rows.)
    rng = np.random.default_rng(2024)
    n = 200_000
    g = rng.integers(0, 300, n).astype(np.int32)
    t = (rng.integers(0, 8 * 3600, n) * 10**9).astype(np.int64)  # second ticks: ties
    x = np.round(rng.lognormal(13, 1.5, n), 2)
    w = 30 * dtypes.NS_PER_MINUTE
    sums, counts = rolling_window_sums(g, t, x, w)
    for seed in range(2):
        perm = np.random.default_rng(seed).permutation(n)
        s2, c2 = rolling_window_sums(g[perm], t[perm], x[perm], w)
        np.testing.assert_array_equal(c2, counts[perm])
        np.testing.assert_array_equal(s2, sums[perm])


def test_read_only_inputs():
    # e.g. np.frombuffer columns: read-only arrays are a separate numba type
    g = np.array([0, 0, 1], np.int32)
    t = np.array([3, 1, 2], np.int64)
    x = np.array([1.0, 2.0, 4.0])
    for a in (g, t, x):
        a.flags.writeable = False
    sums, counts = rolling_window_sums(g, t, x, 5)
    np.testing.assert_array_equal(sums, [3.0, 2.0, 4.0])
    ws = window_stats(g, t, x, 5)
    ws.sums.flags.writeable = False
    med, mad = group_median_mad(ws.sums, ws.group_offsets)
    np.testing.assert_array_equal(med, [2.5, 4.0])
    np.testing.assert_array_equal(mad, [0.5, 0.0])
