"""Episode chains of one push: a chain's elements (the folded state of each
group, then its flagged windows), the episodes over them, and the views that
read a scored window's trades and the folded states.

A group's episode *chain* is its flagged windows in time order; consecutive
flagged windows less than a window apart are one episode (the model's
``episode_starts``). Windows before the group's frontier are *folded*: kept
as one :data:`~surv_kernel.stream.state.CHAIN` record per group and chain
(start, last flagged time, window count, the peak's record), so a push
rebuilds the episodes from that record plus the windows it scores.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..model.episodes import episode_starts, segment_argmax
from .state import IdArena, empty_chain


class Episodes(NamedTuple):
    """Episodes over a chain's elements (indices into the element arrays)."""

    grp: np.ndarray  # local group
    first: np.ndarray  # first element
    peak: np.ndarray  # peak element (first maximum)
    start: np.ndarray  # start_ns
    last: np.ndarray  # last flagged timestamp
    n: np.ndarray  # flagged windows
    breach: np.ndarray  # any breach (floor chain)


class Elements(NamedTuple):
    """A chain's elements in (group, time) order: one pseudo element per group
    with an open state (its folded part), then the group's flagged rows."""

    g: np.ndarray
    t: np.ndarray
    s: np.ndarray
    n: np.ndarray
    start: np.ndarray
    breach: np.ndarray
    ref: np.ndarray  # >= 0: index into the scored rows; < 0: pseudo of local group -1-ref

    def episodes(self, sel: np.ndarray | None, window_ns: int, row_tid: Any = None) -> Episodes:
        """``row_tid`` (scored row -> its own trade id) breaks peak ties at
        one timestamp as the model does; a folded state wins its ties (it
        is first in its group, as the model's earlier rows are)."""
        g, t = (self.g, self.t) if sel is None else (self.g[sel], self.t[sel])
        idx = np.arange(len(self.g)) if sel is None else np.flatnonzero(sel)
        if len(idx) == 0:
            e = np.empty(0, np.int64)
            return Episodes(e, e, e, e, e, e, np.empty(0, np.bool_))
        starts = episode_starts(g, t, window_ns)
        ends = np.append(starts[1:], len(idx)) - 1

        def tie(p: int) -> tuple[int, str]:
            ref = int(self.ref[idx[p]])
            return (0, "") if ref < 0 or row_tid is None else (1, row_tid(ref))

        first = idx[starts]
        return Episodes(
            grp=self.g[first],
            first=first,
            peak=idx[segment_argmax(self.s[idx], starts, self.t[idx], tie)],
            start=self.start[first],
            last=self.t[idx[ends]],
            n=np.add.reduceat(self.n[idx], starts),
            breach=np.logical_or.reduceat(self.breach[idx], starts),
        )


class StepRows:
    """The rows of one step, to read a scored window's trades."""

    __slots__ = ("P", "gP", "ids", "rid_c", "ts_c", "ws")

    def __init__(self, P, gP, ws, ts_c, rid_c, ids: IdArena) -> None:
        self.P, self.gP, self.ws, self.ts_c = P, gP, ws, ts_c
        self.rid_c, self.ids = rid_c, ids

    def trades(self, r: int) -> list[str]:
        """Trade ids of scored window ``r``, in (timestamp, trade id) order."""
        k = int(self.P[r])
        rows = self.ws.order[self.ws.first[k] : self.ws.last[k] + 1]
        ids = self.ids.get(self.rid_c[rows])
        pairs = sorted(zip(self.ts_c[rows].tolist(), ids, strict=True))
        return [t for _, t in pairs]

    def row_trade(self, r: int) -> str:
        """The trade id of scored window ``r``'s own row."""
        return self.ids.get(self.rid_c[self.ws.order[self.P[r : r + 1]]])[0]

    def first_trade(self, r: int) -> str:
        """The first trade id of scored window ``r`` in (timestamp, trade id) order."""
        k = int(self.P[r])
        f = int(self.ws.first[k])
        rows = self.ws.order[f : self.ws.last[k] + 1]  # the window, sorted by time
        ts = self.ts_c[rows]
        j = int(np.searchsorted(ts, ts[0], side="right"))
        return min(self.ids.get(self.rid_c[rows[:j]]))


class ChainView:
    """The folded chain states of the active groups that have one, by local
    group index (``view[a]``, arrays of them too), gathered before the step
    writes the new ones: only groups with a state are copied, not every
    active group."""

    __slots__ = ("active", "chain", "pa", "rec", "where")

    def __init__(self, chain: np.ndarray, active: np.ndarray) -> None:
        self.chain, self.active = chain, active
        self.pa = np.flatnonzero(chain["active"][active])  # local groups with a state
        self.rec = chain[active[self.pa]]
        self.where = np.full(len(active), -1, np.int64)
        self.where[self.pa] = np.arange(len(self.pa))

    def __getitem__(self, a: Any) -> Any:
        return self.rec[self.where[a]]

    def clear(self, *objects: np.ndarray) -> None:
        """Mark the gathered states folded away (the step writes the new ones)."""
        g = self.active[self.pa]
        self.chain["active"][g] = False
        for arr in objects:
            arr[g] = None


class LocalView:
    """``view[a]`` = ``arr[active[a]]`` (read lazily)."""

    __slots__ = ("active", "arr")

    def __init__(self, arr: np.ndarray, active: np.ndarray) -> None:
        self.arr, self.active = arr, active

    def __getitem__(self, a: int) -> Any:
        return self.arr[self.active[a]]


def elements(ch: ChainView, R, gP, tsP, sP, startP, brP) -> Elements:
    """A chain's elements: the folded state of each group that has one (as a
    pseudo element first in its group: it is older than every row), then the
    chain's rows ``R`` (indices into the scored windows, (group, time) order)."""
    pa, rec = ch.pa, ch.rec
    g = np.concatenate([pa, gP[R]])
    order = np.argsort(g, kind="stable")

    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[order]

    return Elements(
        g=g[order],
        t=cat(rec["last"], tsP[R]),
        s=cat(rec["s"], sP[R]),
        n=cat(rec["n"], np.ones(len(R), np.int64)),
        start=cat(rec["start"], startP[R]),
        breach=cat(rec["breach"], brP[R]),
        ref=cat(-1 - pa, R.astype(np.int64)),
    )


def last_per_group(grp: np.ndarray) -> np.ndarray:
    out = np.ones(len(grp), np.bool_)
    if len(grp) > 1:
        out[:-1] = grp[1:] != grp[:-1]
    return out


def chain_records(ch, E: Elements, eps: Episodes, sel, rowpk) -> np.ndarray:
    """Folded states of episodes ``sel``: their extent, and the peak's
    record from the scored windows or from the earlier folded state."""
    pk = E.ref[eps.peak[sel]]
    rec = empty_chain(len(sel))
    is_row = pk >= 0
    rec[is_row] = rowpk[pk[is_row]]
    rec[~is_row] = ch[-1 - pk[~is_row]]
    rec["active"] = True
    rec["start"] = eps.start[sel]
    rec["last"] = eps.last[sel]
    rec["n"] = eps.n[sel]
    rec["breach"] = eps.breach[sel]
    return rec
