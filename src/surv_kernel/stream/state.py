"""The stream's held state per group: group codes, frontiers, due times,
folded chain states, own baselines, and the held rows in chunks of groups
with their trade ids in one arena.

Everything here is arrays indexed by group id (``gid``, dense, in first-seen
order) plus the chunked rows; :class:`GroupState` grows them together, so a
new per-group array is one line in :meth:`GroupState.add_groups`. The numbers
that size the work of a push (:data:`CHUNK_GROUPS`, :data:`BLOCK_ROWS`,
:data:`ID_MARGIN`) are read at call time as ``state.NAME``, so a test can
shrink them (``surv_kernel.stream._CHUNK_GROUPS`` and friends forward here).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

I64_MIN = int(np.iinfo(np.int64).min)
I64_MAX = int(np.iinfo(np.int64).max)
NEVER = I64_MAX  # "no episode due to close"
# timestamps within +-2**62 and spans (W, lateness) up to 2**60 keep every
# "t - W", "wm - W", "last + W" inside int64
MAX_TS = 2**62
MAX_SPAN = 2**60
#: Held rows are stored per chunk of this many consecutive groups; a push
#: recomputes the chunks of the groups it needs.
CHUNK_GROUPS = 64
#: Chunks are recomputed in blocks of about this many rows (a block closes
#: once it reaches it): the temporaries of a push (~150 bytes per row) stay
#: bounded whatever the rows held, and the window kernel still runs its
#: threads (windows.PARALLEL_MIN_ROWS).
BLOCK_ROWS = 200_000
#: The id arena is compacted when it holds more than 1.25x the held rows'
#: ids plus this many (each compaction copies the live ids: amortised O(1)).
ID_MARGIN = 16_384

# One open episode's state, per group and chain (alert chain: breaching
# windows, or every floor-passing one under policy="static"; floor chain:
# floor-passing windows, for the suppression report). The peak fields are
# those of the peak window's scoring (model_kernels.score_windows) and count
# = the trades in the peak window.
CHAIN = np.dtype(
    [
        ("active", "?"),
        ("start", "<i8"),  # first trade of the episode's first window
        ("last", "<i8"),  # timestamp of its last flagged window
        ("n", "<i8"),  # flagged windows
        ("breach", "?"),  # floor chain: some window breached
        ("s", "<f8"),  # peak window sum
        ("pk_ns", "<i8"),
        ("count", "<i8"),
        ("src", "i1"),
        ("desk", "<i4"),  # peer desk code, -1 unless the source is a desk peer
        ("med", "<f8"),
        ("mad", "<f8"),
        ("bn", "<i8"),
        ("scale", "<f8"),
        ("ssrc", "i1"),
        ("z", "<f8"),
        ("ratio", "<f8"),
    ]
)
PEAK_FIELDS = (
    "s",
    "pk_ns",
    "count",
    "src",
    "desk",
    "med",
    "mad",
    "bn",
    "scale",
    "ssrc",
    "z",
    "ratio",
)


def grow(a: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """``a`` with room for ``n`` entries along axis 0 (doubling), new ones = fill."""
    if len(a) >= n:
        return a
    cap = max(n, 2 * len(a), 16)
    out = np.empty((cap, *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    out[len(a) :] = fill
    return out


def empty_chain(n: int) -> np.ndarray:
    c = np.zeros(n, CHAIN)
    c["desk"] = -1
    return c


def concat_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` (int64), without a Python loop."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, np.int64)
    starts = np.cumsum(lens) - lens
    return np.repeat(lo - starts, lens) + np.arange(total)


class Rows(NamedTuple):
    """Held rows of one chunk (groups ``c * CHUNK_GROUPS`` up to the next
    chunk), in (group, timestamp, arrival) order; the group of each row
    follows from the groups' row counts (``held_n``). Trade ids live in
    the stream's :class:`IdArena` (``rid``): moving a million Python
    strings per push costs a refcount write on each (~60 ms, more than the
    rest of a push), and ~65 bytes each."""

    ts: np.ndarray  # int64
    usd: np.ndarray  # float64
    desk: np.ndarray  # desk codes (int16 while there are fewer than 32768 desks)
    rid: np.ndarray  # int32 rows of the id arena (compacted: fewer than 2**31)


class IdArena:
    """Trade ids as UTF-8 bytes in one buffer with int32 offsets (Arrow's
    string layout): ~10 bytes of text + 4 of offset per id instead of a
    ~65-byte Python string, and compacting it moves bytes, not objects."""

    __slots__ = ("buf", "n", "off")

    def __init__(self) -> None:
        self.buf = np.empty(1 << 16, np.uint8)
        self.off = np.zeros(1 << 12, np.int32)  # id k is buf[off[k]:off[k + 1]]
        self.n = 0

    def append(self, ids: np.ndarray) -> np.ndarray:
        """Store ``ids`` (str); their row ids."""
        k = len(ids)
        values = ids.tolist()
        text = "".join(values)
        if text.isascii():  # one C-level encode, lengths in characters are bytes
            data = text.encode("ascii")
            lens = np.fromiter(map(len, values), np.int64, k)
        else:  # surrogatepass: a lone surrogate from a JSON escape round-trips
            parts = [v.encode("utf-8", "surrogatepass") for v in values]
            data = b"".join(parts)
            lens = np.fromiter(map(len, parts), np.int64, k)
        return self.append_utf8(np.frombuffer(data, np.uint8), lens)

    def append_utf8(self, data: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Store ids given as their concatenated UTF-8 bytes and byte lengths."""
        k = len(lens)
        n, end = self.n, int(self.off[self.n])
        if end + len(data) > np.iinfo(np.int32).max:
            raise OverflowError("more than 2 GiB of trade ids held at once")
        if end + len(data) > len(self.buf):
            grown = np.empty(max(end + len(data), len(self.buf) + len(self.buf) // 2), np.uint8)
            grown[:end] = self.buf[:end]
            self.buf = grown
        if n + k + 1 > len(self.off):
            grown = np.zeros(max(n + k + 1, len(self.off) + len(self.off) // 2), np.int32)
            grown[: n + 1] = self.off[: n + 1]
            self.off = grown
        self.buf[end : end + len(data)] = data
        np.cumsum(lens, out=self.off[n + 1 : n + k + 1], dtype=np.int32)
        self.off[n + 1 : n + k + 1] += end
        self.n = n + k
        return np.arange(n, n + k, dtype=np.int32)

    def utf8(self, rids: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The ids ``rids`` as concatenated UTF-8 bytes and their lengths
        (a checkpoint: no Python string per id, ~10x faster than get); the
        gather runs in slices, its index array is 8 bytes per byte."""
        lo = self.off[rids].astype(np.int64)
        hi = self.off[rids + 1].astype(np.int64)
        step = 1 << 16
        parts = [
            self.buf[concat_ranges(lo[a : a + step], hi[a : a + step])].tobytes()
            for a in range(0, len(rids), step)
        ]
        return b"".join(parts), hi - lo

    def get(self, rids: np.ndarray) -> list[str]:
        buf, off = self.buf, self.off
        return [
            bytes(buf[off[r] : off[r + 1]]).decode("utf-8", "surrogatepass") for r in rids.tolist()
        ]

    def compact(self, live: np.ndarray) -> None:
        """Keep the ids ``live`` (they become rows 0..len-1, in that order).
        The byte gather runs in slices: its index array is 8 bytes per byte."""
        lo, hi = self.off[live], self.off[live + 1]
        # room up to the next compaction (1.25x the live ids + the margin +
        # a batch), so the arrays do not regrow 1.5x just before it
        room = len(live) // 4 + ID_MARGIN + 8192
        off = np.zeros(len(live) + room + 1, np.int32)
        np.cumsum(hi - lo, out=off[1 : len(live) + 1], dtype=np.int32)
        size = int(off[len(live)])
        buf = np.empty(size + room * (size // max(len(live), 1) + 1) + (1 << 16), np.uint8)
        step = 1 << 16
        for a in range(0, len(live), step):
            b = min(a + step, len(live))
            buf[off[a] : off[b]] = self.buf[concat_ranges(lo[a:b], hi[a:b])]
        self.buf, self.off, self.n = buf, off, len(live)


class New(NamedTuple):
    """Accepted rows of one push, in arrival order, stream codes."""

    gid: np.ndarray
    ts: np.ndarray
    usd: np.ndarray
    desk: np.ndarray
    tid: np.ndarray


def empty_new() -> New:
    return New(
        np.empty(0, np.int32),
        np.empty(0, np.int64),
        np.empty(0, np.float64),
        np.empty(0, np.int32),
        np.empty(0, object),
    )


class GroupState:
    """The per-group arrays (entries ``[:G]`` are live; capacity doubles) and
    the held rows by chunk of groups, their trade ids in :attr:`ids`.

    A group is a (trader code, asset class code) pair of the stream's
    dictionaries; :attr:`table` maps the pair to its gid. Per group:
    ``frontier`` (the watermark at its last recompute; its windows before it
    are folded), ``due`` (when its earliest open episode can close,
    :data:`NEVER` if none), ``held_n`` (rows held), ``has_open`` (an emitted
    open alert), the folded states of the alert and floor chains
    (``achain``, ``fchain``: :data:`CHAIN` records) with the alert chain's
    first trade and peak trades, and the own baselines (``own_*``) in use.
    """

    def __init__(self) -> None:
        self.G = 0
        self.base_frontier = I64_MIN  # frontier of a new group
        self.table = np.full((0, 0), -1, np.int32)
        self.trader = np.empty(0, np.int32)
        self.ac = np.empty(0, np.int32)
        self.frontier = np.empty(0, np.int64)
        self.due = np.empty(0, np.int64)
        self.held_n = np.empty(0, np.int64)
        self.has_open = np.empty(0, np.bool_)
        self.achain = empty_chain(0)
        self.fchain = empty_chain(0)
        self.a_first = np.empty(0, object)
        self.a_trades = np.empty(0, object)
        self.own_med = np.empty(0)
        self.own_mad = np.empty(0)
        self.own_n = np.empty(0, np.int64)
        self.own_tm = np.empty(0)
        self.chunks: list[Rows | None] = []
        self.n_held = 0
        self.ids = IdArena()

    # -- groups ---------------------------------------------------------------------------

    def lookup(self, trader: np.ndarray, ac: np.ndarray, n_trader: int, n_ac: int) -> np.ndarray:
        """The gids of these (trader, asset class) codes, adding the new groups
        in first-seen order (``n_trader``, ``n_ac``: the dictionaries' sizes)."""
        rows, cols = self.table.shape
        if rows < n_trader or cols < n_ac:
            grown = np.full((max(n_trader, 2 * rows, 16), max(n_ac, cols + 4)), -1, np.int32)
            grown[:rows, :cols] = self.table
            self.table = grown
        gid = self.table[trader, ac]
        miss = gid < 0
        if miss.any():
            ncol = self.table.shape[1]
            key = trader[miss].astype(np.int64) * ncol + ac[miss]
            uk, first = np.unique(key, return_index=True)
            uk = uk[np.argsort(first, kind="stable")]  # first-seen order
            self.add_groups((uk // ncol).astype(np.int32), (uk % ncol).astype(np.int32))
            gid = self.table[trader, ac]
        return gid.astype(np.int64)

    def add_groups(self, trader: np.ndarray, ac: np.ndarray) -> None:
        G0, k = self.G, len(trader)
        G = G0 + k
        self.table[trader, ac] = np.arange(G0, G, dtype=np.int32)
        self.trader = grow(self.trader, G, 0)
        self.ac = grow(self.ac, G, 0)
        self.frontier = grow(self.frontier, G, self.base_frontier)
        self.due = grow(self.due, G, NEVER)
        self.held_n = grow(self.held_n, G, 0)
        self.has_open = grow(self.has_open, G, False)
        if len(self.achain) < G:
            for name in ("achain", "fchain"):
                old = getattr(self, name)
                new = empty_chain(max(G, 2 * len(old), 16))
                new[: len(old)] = old
                setattr(self, name, new)
        self.a_first = grow(self.a_first, G, None)
        self.a_trades = grow(self.a_trades, G, None)
        self.own_med = grow(self.own_med, G, np.nan)
        self.own_mad = grow(self.own_mad, G, np.nan)
        self.own_n = grow(self.own_n, G, 0)
        self.own_tm = grow(self.own_tm, G, np.nan)
        n_chunks = (G + CHUNK_GROUPS - 1) // CHUNK_GROUPS
        self.chunks += [None] * (n_chunks - len(self.chunks))
        sl = slice(G0, G)
        self.trader[sl] = trader
        self.ac[sl] = ac
        self.frontier[sl] = self.base_frontier
        self.due[sl] = NEVER
        self.held_n[sl] = 0
        self.has_open[sl] = False
        self.achain[sl] = empty_chain(k)
        self.fchain[sl] = empty_chain(k)
        self.a_first[sl] = None
        self.a_trades[sl] = None
        self.G = G

    # -- held rows ------------------------------------------------------------------------

    def held(self) -> list[Rows]:
        """The chunks holding rows, in group order."""
        return [ch for ch in self.chunks if ch is not None]

    def oldest_held_ns(self) -> int | None:
        mins = [int(ch.ts.min()) for ch in self.chunks if ch is not None]
        return min(mins) if mins else None

    def busy(self) -> np.ndarray:
        """Groups holding rows or an open chain state."""
        G = self.G
        return (self.held_n[:G] > 0) | self.achain["active"][:G] | self.fchain["active"][:G]

    def store_block(
        self, chunk_ids, horizon, active, o, off, gid_c, ts_c, usd_c, desk_c, rid_c, n_desk
    ) -> None:
        """Evict the rows that are no window's context any more (before
        ``horizon``) and store the others back chunk by chunk, in (group,
        time, arrival) order: next push, window_stats then time-sorts only
        the groups that receive out-of-order rows."""
        kpos = np.flatnonzero((ts_c >= horizon)[o])
        self.held_n[active] = np.searchsorted(kpos, off[1:]) - np.searchsorted(kpos, off[:-1])
        kidx = o[kpos]
        del o, kpos
        k_chunk = gid_c[kidx] // CHUNK_GROUPS
        bounds = (
            np.searchsorted(k_chunk, chunk_ids, "left"),
            np.searchsorted(k_chunk, chunk_ids, "right"),
        )
        desk_dtype = np.int16 if n_desk <= np.iinfo(np.int16).max else np.int32
        for c, a, b in zip(chunk_ids.tolist(), *(x.tolist() for x in bounds), strict=True):
            old = self.chunks[c]
            self.n_held += (b - a) - (0 if old is None else len(old.ts))
            r = kidx[a:b]
            self.chunks[c] = (
                Rows(ts_c[r], usd_c[r], desk_c[r].astype(desk_dtype), rid_c[r]) if b > a else None
            )

    def compact_ids(self) -> None:
        """Drop evicted rows' ids once they are a fifth of the arena."""
        if self.ids.n <= self.n_held + self.n_held // 4 + ID_MARGIN:
            return
        kept = [(c, ch) for c, ch in enumerate(self.chunks) if ch is not None]
        live = np.concatenate([ch.rid for _, ch in kept]) if kept else np.empty(0, np.int32)
        self.ids.compact(live)
        start = 0
        for c, ch in kept:
            self.chunks[c] = ch._replace(rid=np.arange(start, start + len(ch.ts), dtype=np.int32))
            start += len(ch.ts)
