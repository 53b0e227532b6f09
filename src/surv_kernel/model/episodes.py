"""Episodes: the merge rule over flagged windows and the peak of each episode."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["episode_starts", "segment_argmax"]


def episode_starts(group: np.ndarray, timestamps_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """Episode boundaries over flagged rows given in (group, time) order.

    A row starts a new episode when it is the first row, belongs to another
    group than the previous row, or comes more than ``window_ns`` after the
    previous row (its window ``[t - W, t]`` no longer overlaps the previous
    flagged window). Returns the indices of the episode starts. This is the
    whole merge rule; a stream applies it to one group's rows as they come.
    """
    n = len(group)
    if n == 0:
        return np.empty(0, np.int64)
    new = np.empty(n, np.bool_)
    new[0] = True
    np.not_equal(group[1:], group[:-1], out=new[1:])
    new[1:] |= np.diff(timestamps_ns) > window_ns
    return np.flatnonzero(new)


def segment_argmax(
    values: np.ndarray,
    starts: np.ndarray,
    times: np.ndarray | None = None,
    tie_key: Any = None,
) -> np.ndarray:
    """Per segment (``starts`` ascending, last one runs to the end), the index
    of its maximum: rows are time-ordered, so the earliest on ties. With
    ``times`` and ``tie_key`` (index -> sortable key), maxima at that same
    earliest timestamp go to the smallest key: rows of one group at equal
    timestamps share their window (and sum) but not their own trade (its desk
    picks a cold group's peers), and their row order is the input order."""
    seg_max = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    is_max = values == np.repeat(seg_max, lengths)
    pos = np.flatnonzero(is_max)
    seg = np.searchsorted(starts, pos, side="right") - 1
    first = np.ones(len(pos), np.bool_)
    first[1:] = seg[1:] != seg[:-1]
    out = pos[first]
    if tie_key is not None and times is not None and len(pos) > len(out):
        tied = times[pos] == times[out[seg]]
        n_tied = np.bincount(seg[tied], minlength=len(out))
        for j in np.flatnonzero(n_tied > 1).tolist():
            cands = pos[tied & (seg == j)].tolist()
            out[j] = min(cands, key=tie_key)
    return out
