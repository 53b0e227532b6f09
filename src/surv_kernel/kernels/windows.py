"""Window kernels: counting sort by group, time sort inside groups, window sums.

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
Error bound for a window of ``m`` rows, ``u = 2**-53``: the TwoSum errors
are captured exactly, only their plain sum in the low parts rounds, so
``|got - exact| <= 2u|exact| + m^2 u^2 sum|x|`` (crude first-order bound;
``m^2 u^2 <= 1.5e-20`` for a million-row window). The result therefore
matches ``math.fsum`` to about 1 ulp except when the window cancels almost
to zero (``|exact|`` below ``m^2 u sum|x|``), where only that tiny absolute
term remains. Notionals are non-negative in practice, so that case needs
negative amounts (corrections) that cancel.

Non-finite values follow IEEE addition over the window's rows, exactly as
``sum`` of the window would: a window holding a NaN sums to NaN, one holding
``+inf`` (and no NaN, no ``-inf``) sums to ``+inf``, one holding both ``+inf``
and ``-inf`` sums to NaN. Because no partial ever contains a row outside the
window, nothing non-finite "sticks" after it leaves. Once a partial's high part
is non-finite its low part is NaN (``inf - inf`` inside TwoSum), so the final
combination returns the high part alone in that case. Finite values whose sum
exceeds the float64 range give ``+-inf`` (``math.fsum`` would raise).

Determinism: a window's result depends only on its rows in (time, input)
order, never on how rows are split over threads, so results are bitwise
identical for any thread count. Reordering rows that share a timestamp
changes the summation order; the double-double partials make that invisible
in practice (no bit changed shuffling 200k realistic rows, where a plain
running sum changes ~4% of them), and within the bound above in theory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INT64_MIN = np.iinfo(np.int64).min


# --------------------------------------------------------------------------
# counting sort by group, time sort inside groups
#
# The wrapper splits the input into row chunks (one per thread) and the groups
# into blocks of about equal row counts; every kernel below works on one chunk
# or one block, so threads never write the same element and every output is
# computed by the same operations whatever the number of threads.
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def chunk_group_stats(codes, timestamps, lo, hi, counts, unsorted, first_t, max_t):
    """For input rows ``[lo, hi)``: per group the row count (``counts``, zeroed
    by the caller), whether its timestamps decrease somewhere (``unsorted``,
    zeroed), its first timestamp and its running maximum. Codes must be in
    range (the wrapper checks)."""
    for i in range(lo, hi):
        g = codes[i]
        t = timestamps[i]
        c = counts[g]
        if c == 0:
            first_t[g] = t
            max_t[g] = t
        elif t < max_t[g]:
            unsorted[g] = 1
        else:
            max_t[g] = t
        counts[g] = c + 1


@njit(cache=True, nogil=True)
def combine_chunk_stats(counts, unsorted, first_t, max_t, offsets, cursors, group_unsorted):
    """Merge per-chunk stats (2-D, chunk x group): ``offsets`` (int64[G+1]) of
    the counting sort, each chunk's starting ``cursors`` (chunk c's rows of
    group g follow those of chunks < c: a stable sort), and
    ``group_unsorted[g] = 1`` unless group g is time-ordered across chunks."""
    n_chunks = counts.shape[0]
    n_groups = counts.shape[1]
    total = 0
    for g in range(n_groups):
        offsets[g] = total
        running_max = INT64_MIN
        seen = False
        u = 0
        for c in range(n_chunks):
            cursors[c, g] = total
            cnt = counts[c, g]
            if cnt > 0:
                if unsorted[c, g] != 0 or (seen and first_t[c, g] < running_max):
                    u = 1
                if not seen or max_t[c, g] > running_max:
                    running_max = max_t[c, g]
                seen = True
                total += cnt
        group_unsorted[g] = u
    offsets[n_groups] = total


@njit(cache=True, nogil=True)
def scatter_chunk(codes, timestamps, values, lo, hi, cursor, ts_out, values_out, order, rank):
    """Stable counting-sort scatter of input rows ``[lo, hi)``: row ``i`` of
    group ``g`` goes to ``cursor[g]`` (then incremented). One fused pass writes
    both gathered columns and, if they are non-empty, ``order`` (position ->
    input row) and ``rank`` (input row -> position, written sequentially).
    Positions are those before the time sort of unsorted groups. numpy fancy-index gathers would re-read the permutation
    once per column (~0.2 s per column at 10M rows)."""
    with_order = order.shape[0] > 0
    with_rank = rank.shape[0] > 0
    for i in range(lo, hi):
        g = codes[i]
        p = cursor[g]
        cursor[g] = p + 1
        ts_out[p] = timestamps[i]
        values_out[p] = values[i]
        if with_order:
            order[p] = i
        if with_rank:
            rank[i] = p


@njit(cache=True, nogil=True)
def _bit_length(v):
    """Number of bits needed for the non-negative integer ``v`` (uint64)."""
    n = 0
    while v != 0:
        v >>= np.uint64(1)
        n += 1
    return n


@njit(cache=True, nogil=True)
def _insertion_sort(keys, lo, hi):
    for i in range(lo + 1, hi):
        v = keys[i]
        j = i - 1
        while j >= lo and keys[j] > v:
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = v


@njit(cache=True, nogil=True)
def _radix_pass(src, dst, src_pos, dst_pos, lo, hi, shift, width, hist):
    """One stable counting-sort pass of ``src[lo:hi]`` into ``dst`` on key
    bits ``[shift, shift + width)``, moving ``src_pos`` into ``dst_pos`` too
    when they are non-empty. Returns False, moving nothing, when every key has
    the same digit (the pass would be the identity)."""
    ush = np.uint64(shift)
    mask = np.uint64((1 << width) - 1)
    n_bins = 1 << width
    for d in range(n_bins):
        hist[d] = 0
    for j in range(lo, hi):
        hist[(src[j] >> ush) & mask] += 1
    for d in range(n_bins):
        if hist[d] != 0:
            if hist[d] == hi - lo:
                return False
            break
    total = lo
    for d in range(n_bins):
        c = hist[d]
        hist[d] = total
        total += c
    with_pos = src_pos.shape[0] > 0
    for j in range(lo, hi):
        k = src[j]
        d = (k >> ush) & mask
        q = hist[d]
        dst[q] = k
        if with_pos:
            dst_pos[q] = src_pos[j]
        hist[d] = q + 1
    return True


@njit(cache=True, nogil=True)
def _lsd_radix_sort(keys, tmp, pos, tmp_pos, lo, hi, bit_lo, bit_hi, hist):
    """Stable LSD radix sort of ``keys[lo:hi]`` (uint64) on bits ``[bit_lo,
    bit_hi)``, 8 bits per pass, passes on a constant digit skipped; ``pos``
    (if non-empty) moves alongside. ``tmp``/``tmp_pos`` are scratch."""
    in_tmp = False
    shift = bit_lo
    while shift < bit_hi:
        width = min(8, bit_hi - shift)
        if in_tmp:
            moved = _radix_pass(tmp, keys, tmp_pos, pos, lo, hi, shift, width, hist)
        else:
            moved = _radix_pass(keys, tmp, pos, tmp_pos, lo, hi, shift, width, hist)
        if moved:
            in_tmp = not in_tmp
        shift += width
    if in_tmp:
        with_pos = pos.shape[0] > 0
        for j in range(lo, hi):
            keys[j] = tmp[j]
            if with_pos:
                pos[j] = tmp_pos[j]


@njit(cache=True, nogil=True)
def _sort_segment(
    a,
    b,
    timestamps,
    values,
    order,
    prepos,
    keys,
    keys2,
    tmp_f,
    tmp_i,
    tmp_pos,
    tmp_pos2,
    hist,
    hist2,
):
    """Stable time sort, in place, of rows ``[a, b)`` and (if non-empty) of
    their ``order`` entries; if non-empty, ``prepos[k]`` receives the position
    row k had before the sort (so results can be written back there and
    reach input order through the scatter's sequential ``rank``, instead of
    updating ``rank`` with a random write per row).

    Keys pack ``(t - t_min) << pos_bits | local position``. All keys are
    distinct, so sorting keys is a stable sort of rows. One MSD counting-sort
    pass on the top ~log2(m) time bits leaves buckets of about one key for any
    smooth intraday distribution; buckets of <= 32 keys are insertion sorted,
    larger ones (clustered times) LSD radix sorted on the remaining time bits:
    O(m) expected, O(m * 64 / 8) worst case, no data-dependent recursion.
    Segments whose time span leaves no room for the position bits (spans of
    centuries in ns) use an LSD radix sort of the 64-bit time offsets carrying
    the positions alongside (stable, 8 passes at most).
    (No numpy sort is used here or in the selection: numba compiles those
    generically and they added seconds to the cold-cache first call.)"""
    m = b - a
    if m < 2:
        return
    t_min = timestamps[a]
    t_max = timestamps[a]
    for j in range(a + 1, b):
        t = timestamps[j]
        if t < t_min:
            t_min = t
        elif t > t_max:
            t_max = t
    # unsigned wrap-around difference: exact even for spans beyond int64
    span = np.uint64(t_max) - np.uint64(t_min)
    pos_bits = _bit_length(np.uint64(m - 1))
    time_bits = _bit_length(span)
    with_order = order.shape[0] > 0
    with_prepos = prepos.shape[0] > 0
    for j in range(m):
        tmp_f[j] = values[a + j]
    if with_order:
        for j in range(m):
            tmp_i[j] = order[a + j]
    if pos_bits + time_bits <= 64:
        no_pos = tmp_pos[:0]
        umin = np.uint64(t_min)
        sh = np.uint64(pos_bits)
        for j in range(m):
            keys[j] = ((np.uint64(timestamps[a + j]) - umin) << sh) | np.uint64(j)
        if m <= 32:
            _insertion_sort(keys, 0, m)
            out = keys
        else:
            top = min(time_bits, _bit_length(np.uint64(m)), 16)
            tshift = pos_bits + time_bits - top
            ut = np.uint64(tshift)
            n_bins = 1 << top
            for d in range(n_bins):
                hist[d] = 0
            for j in range(m):
                hist[keys[j] >> ut] += 1
            total = 0
            for d in range(n_bins):
                c = hist[d]
                hist[d] = total
                total += c
            for j in range(m):
                k = keys[j]
                d = k >> ut
                keys2[hist[d]] = k
                hist[d] += 1
            # hist[d] is now the end of bucket d
            start = 0
            for d in range(n_bins):
                end = hist[d]
                size = end - start
                if size > 32:
                    _lsd_radix_sort(
                        keys2, keys, no_pos, no_pos, start, end, pos_bits, tshift, hist2
                    )
                elif size > 1:
                    _insertion_sort(keys2, start, end)
                start = end
            out = keys2
        mask = (np.uint64(1) << sh) - np.uint64(1)
        for j in range(m):
            k = out[j]
            q = k & mask
            timestamps[a + j] = np.int64((k >> sh) + umin)
            values[a + j] = tmp_f[q]
            if with_order:
                order[a + j] = tmp_i[q]
            if with_prepos:
                prepos[a + j] = a + q
    else:
        umin = np.uint64(t_min)
        for j in range(m):
            keys[j] = np.uint64(timestamps[a + j]) - umin
            tmp_pos[j] = j
        _lsd_radix_sort(keys, keys2, tmp_pos, tmp_pos2, 0, m, 0, time_bits, hist2)
        for j in range(m):
            q = tmp_pos[j]
            timestamps[a + j] = np.int64(keys[j] + umin)
            values[a + j] = tmp_f[q]
            if with_order:
                order[a + j] = tmp_i[q]
            if with_prepos:
                prepos[a + j] = a + q


@njit(cache=True, nogil=True)
def sort_unsorted_segments(offsets, unsorted, g0, g1, timestamps, values, order, prepos):
    """Stable time sort, in place, of each segment ``g`` in ``[g0, g1)``
    flagged in ``unsorted``. Ties keep their current (input) order, so
    ``order`` (if non-empty) stays stable; ``prepos`` (if non-empty) gets the
    pre-sort position of every row of a sorted segment."""
    longest = 0
    for g in range(g0, g1):
        if unsorted[g]:
            longest = max(longest, offsets[g + 1] - offsets[g])
    keys = np.empty(longest, dtype=np.uint64)
    keys2 = np.empty(longest, dtype=np.uint64)
    tmp_f = np.empty(longest, dtype=values.dtype)
    tmp_i = np.empty(longest, dtype=order.dtype)
    # only touched for segments spanning > 2**(64 - log2(m)) ns
    tmp_pos = np.empty(longest, dtype=np.int64)
    tmp_pos2 = np.empty(longest, dtype=np.int64)
    hist = np.empty(1 << 16, dtype=np.int64)
    hist2 = np.empty(256, dtype=np.int64)
    for g in range(g0, g1):
        if unsorted[g]:
            _sort_segment(
                offsets[g],
                offsets[g + 1],
                timestamps,
                values,
                order,
                prepos,
                keys,
                keys2,
                tmp_f,
                tmp_i,
                tmp_pos,
                tmp_pos2,
                hist,
                hist2,
            )


# --------------------------------------------------------------------------
# window sums
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _segment_windows(
    ts, x, a, b, window_ns, sums, counts, first_out, last_out, out_pos, use_pos, fhi, flo
):
    """Windows of the time-sorted segment ``[a, b)``; see the module docstring.
    Writes ``first_out``/``last_out`` only when they are non-empty; writes the
    sum and count of row k at ``out_pos[k]`` when ``use_pos``, else at k.
    ``fhi``/``flo`` (front-table scratch) must hold ``b - a`` entries."""
    with_bounds = first_out.shape[0] > 0
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
        # row k enters the back (last == k - 1 here) ...
        last = k
        v = x[k]
        s = bhi + v
        bb = s - bhi
        blo += (bhi - (s - bb)) + (v - bb)  # TwoSum error of bhi + v
        bhi = s
        # ... and every row with an equal timestamp belongs to the window,
        # whatever its position: extend the back to the end of the tie run
        while last + 1 < b and ts[last + 1] == t:
            last += 1
            v = x[last]
            s = bhi + v
            bb = s - bhi
            blo += (bhi - (s - bb)) + (v - bb)
            bhi = s
        lo = t - window_ns if t >= low_limit else INT64_MIN
        while ts[first] < lo:
            first += 1
        if first >= p:
            # front exhausted: move the pivot past the window and rebuild the
            # suffix table over [first, last]; the back restarts empty
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
        s = fh + bhi
        if np.isfinite(s):
            bb = s - fh
            err = (fh - (s - bb)) + (bhi - bb)
            total = s + (err + (flo[first - base] + blo))
        else:
            # a non-finite high part carries a NaN low part (inf - inf in
            # TwoSum); IEEE addition of the high parts is the answer
            total = s
        cnt = last - first + 1
        if use_pos:
            for kk in range(k, last + 1):
                r = out_pos[kk]
                sums[r] = total
                counts[r] = cnt
        elif last == k:  # no tie: the common case, no loop (~13% faster)
            sums[k] = total
            counts[k] = cnt
        else:
            for kk in range(k, last + 1):
                sums[kk] = total
                counts[kk] = cnt
        if with_bounds:
            for kk in range(k, last + 1):
                first_out[kk] = first
                last_out[kk] = last
        k = last + 1


@njit(cache=True, nogil=True)
def window_sums_sorted(
    offsets, g0, g1, ts, x, window_ns, sums, counts, first, last, unsorted, prepos
):
    """Window sum, count and (if ``first``/``last`` are non-empty) the
    [first, last] bounds of every row of groups ``[g0, g1)``, in sorted order:
    rows grouped by ``offsets``, time-sorted inside each group. If ``prepos``
    is non-empty, sums and counts of the groups flagged in ``unsorted`` go to
    their pre-sort positions ``prepos[k]`` instead."""
    with_prepos = prepos.shape[0] > 0
    longest = 0
    for g in range(g0, g1):
        longest = max(longest, offsets[g + 1] - offsets[g])
    # virtual memory only: pages are touched up to the longest window
    fhi = np.empty(longest, dtype=np.float64)
    flo = np.empty(longest, dtype=np.float64)
    for g in range(g0, g1):
        _segment_windows(
            ts,
            x,
            offsets[g],
            offsets[g + 1],
            window_ns,
            sums,
            counts,
            first,
            last,
            prepos,
            with_prepos and unsorted[g] != 0,
            fhi,
            flo,
        )


@njit(cache=True, nogil=True)
def gather_by_rank(rank, lo, hi, sums_sorted, counts_sorted, sums_out, counts_out):
    """Back to input order for rows ``[lo, hi)``: ``sums_out[i] =
    sums_sorted[rank[i]]``, ``counts_out[i] = counts_sorted[rank[i]]``.
    Sequential writes; the reads follow the input's interleaving of groups,
    which for time-ordered feeds is a few hundred sequential streams (writing
    through ``order`` from the window kernel instead would touch a new cache
    line per row: ~2.5x slower measured)."""
    for i in range(lo, hi):
        r = rank[i]
        sums_out[i] = sums_sorted[r]
        counts_out[i] = counts_sorted[r]
