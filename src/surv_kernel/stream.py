"""Intraday streaming detection: carried window state, watermark, episode lifecycle.

:class:`SurveillanceStream` folds micro-batches of trades (columnar
:class:`~surv_kernel.batch.TradeBatch` or raw desk feed chunks through
:mod:`surv_kernel.ingest`) into per-group window state and returns, for each
batch, the alert events it causes. It runs the alert model of
:mod:`surv_kernel.model` (same windows, floors, baselines, breach test,
episodes, peaks, explanations and scores) on the part of the day that can
still change, instead of on the whole day.

Watermark and lateness
----------------------
``watermark = (largest trade timestamp accepted so far) - lateness_ns``.
A trade with a timestamp at or after the watermark is *on time*; the
lateness allowance is how far behind the newest trade a trade may arrive
(desk feeds interleave, a venue lags). Every window whose trade is older
than the watermark is *final*: no on-time trade can enter it. Each group
(trader, asset class) has a *frontier*: the watermark at the last push that
recomputed it (a push recomputes the groups its trades touch, groups with
an episode due to close, groups idle for a window, and every group holding
rows when those hold most of the rows); its windows before the frontier
have been folded into the group's episode state.

A trade older than the watermark is *late*. It is never dropped silently:

- processed exactly when nothing its group folded is affected: its
  timestamp is at or after its group's frontier, so every window it
  changes is still held and not yet final (typical for a quiet group, or
  a group untouched since the watermark moved on);
- otherwise quarantined (``QuarantineRecord`` with reason ``late_trade``,
  in :attr:`StreamUpdate.quarantine`) and counted in
  ``surv_records_quarantined_total{reason="late_trade"}`` and
  ``surv_stream_late_trades_total{outcome=...}``.

So the stream's closed alerts are always those of ``model.detect`` on the
trades it accepted, in arrival order.

Equivalence with batch detection
--------------------------------
With ``baselines`` given (from :func:`~surv_kernel.model.calibrate`), a
window's verdict depends only on the baselines and the group's trades in
``[t - W, t]`` (see the model's "Locality" paragraph). If every trade
arrives at most ``lateness_ns`` after the newest trade before it, then for
*any* split of the day into batches, the closed alerts (final content:
ids, trades, peaks, explanations, scores) and the suppressed episodes are
exactly those of ``model.detect(whole_day, config, baselines)`` on the
trades in arrival order (which decides only ties between trades at one
timestamp, as in batch). The window sums are recomputed over the held rows
by :func:`~surv_kernel.windows.window_stats` from fewer preceding rows
than the batch sees. Each sum is a compensated high part plus a low part
accurate to about ``m u^2 sum|x|`` (m rows in the window, u = 2**-53),
rounded once: the stream and the batch round values that close to the
exact sum and agree to the bit unless the exact sum lies about that close
to a rounding midpoint: a chance of order ``m u`` (1e-13 for 1,000 positive notionals)
per window. The tests compare bitwise.

Without ``baselines`` the stream *warms up*: it starts with no own
baselines (every group cold: the peer fallback, and with no peers yet the
static floor alone decides, as the model does for a trader without
history). As windows become final it collects each group's thinned window
sums exactly as :func:`~surv_kernel.model.calibrate` does (disjoint
windows), and every ``warmup_refresh_ns`` of watermark progress rebuilds
:attr:`SurveillanceStream.baselines` from them: own baselines for groups
with ``min_windows`` samples, desk and asset-class peers from those, so
other cold groups fall back to peers. Differences from calibrate: the own
median is the median of the thinned samples (calibrate's trimmed,
activity-weighted median needs every window of the history), and a window
is judged with the baselines of the moment it is scored. Warm-up mode is
not equivalent to any batch call and no equivalence is promised for it;
give baselines for exact batch equivalence.

Episode lifecycle (the contract for downstream consumers)
---------------------------------------------------------
Each push returns a :class:`StreamUpdate` whose ``events`` are
:class:`AlertEvent` s, each ``(status, episode_id, alert)``:

``open``
    Emitted once, in the push whose trades make the episode's first window
    breach (not only once it is final: the alert leaves with the batch).
    ``alert`` is the episode so far.
``update``
    Same ``episode_id`` and ``alert.alert_id``, emitted when the episode's
    content changed: it grew (``end_ns``, ``n_windows``), its peak moved or
    grew.
``closed``
    Final; emitted once, when the watermark passes the episode's last
    breach + W (no later window can extend it), or at :meth:`flush`.
    ``alert`` equals the batch model's alert for that episode, field for
    field, including ``alert.alert_id``.
``withdrawn``
    Only after out-of-order trades (within the allowance or accepted
    late) of the same group: the episode with this id no longer exists as
    such, because its start moved earlier or it merged into a neighbour
    (``superseded_by`` names the episodes now covering its windows).

Every ``episode_id`` gets exactly one ``open`` first and exactly one
terminal event (``closed`` or ``withdrawn``), with ``update`` s between;
``open`` and ``closed`` may come in one update (an episode both opened
and final within one batch). With trades of a group arriving in time
order nothing is ever withdrawn.

``alert.alert_id`` is the model's alert id, ``sha256(trader | asset class
| start_ns | first trade of the first breaching window in (timestamp,
trade id) order)``: it is fixed when the episode opens and every event of
the episode, ``open`` through ``update`` s to ``closed``, carries the same
id (the peak moving or growing does not change it). The one exception is
out-of-order trades that move the episode's start earlier: the episode
then has a new id, and the old one is ``withdrawn`` with ``superseded_by``
naming the new one. ``episode_id`` is kept for compatibility and always
equals ``alert.alert_id``.

Suppressed episodes (floor-passing, no breach: the model's suppression
report) are emitted once, final, in :attr:`StreamUpdate.suppressed` when
they close; they equal ``detect(...).suppressed`` under the same
conditions as the alerts.

State and memory
----------------
Per group: the rows with timestamp at or after ``frontier - W`` (the
trailing window plus the lateness allowance: ``W + lateness`` behind the
newest trade for groups recomputed in the last push, at most
``2W + lateness`` for a group idle since, which is then swept), and O(1)
per open episode (start, last flagged time, window count, the peak's
numbers and its trade ids). Closed episodes and evicted rows are
forgotten. A held row costs 24 bytes of columns (timestamp, USD notional,
desk code, id row) plus its trade id as UTF-8 bytes and an offset in an
id arena that is compacted once a fifth of it is evicted: about 50 bytes
in all for 8-character ids. Gauges ``surv_stream_rows_held``,
``surv_stream_groups`` (groups holding rows or an open episode) and
``surv_stream_open_episodes`` report it after each push. With
``baselines=None`` the warm-up keeps one float per group and window length
of activity (capped at ``max_warmup_samples`` per group). Ingest's run-wide
duplicate-id set (``Dictionaries.trade_ids``, used by :meth:`push_feed`)
is not stream state and grows with the day.

Work per push: the held rows are stored in chunks of consecutive groups
(``_CHUNK_GROUPS``). A push recomputes the chunks holding a group the
batch touches, a group with an episode due to close, or a group idle for
a window, in blocks of about ``_BLOCK_ROWS`` rows (bounded temporaries):
per block, the held rows and the new rows go through one ``window_stats``
call, the floor scan and breach test run in the model's kernels, and the
episodes of every group of the block are built with array operations at
once. Python loops run over chunks, over alert episodes (to build their
records) and over closing suppressed episodes, never over rows or groups.

A stream is not thread-safe: push from one thread (or hold a lock).

Checkpoint
----------
:meth:`SurveillanceStream.checkpoint` returns msgpack bytes (msgspec) of
the whole state with names, never dictionary codes: the config, the
baselines, the watermark, the group keys as ``(trader, asset class)``
strings, desk names, the held rows (numeric columns as little-endian bytes,
trade ids as strings), the open episodes' states and the last emitted
alert of every open episode, and the duplicate trade-id set (below).
:meth:`SurveillanceStream.restore` rebuilds a stream that continues exactly
where the checkpointed one stood: feeding both the rest of the day gives the
same events (no duplicate ``open``, no lost ``closed``).

The bytes are sealed (:mod:`surv_kernel.sealed`): an envelope with the kind
``"surv_kernel.stream"``, the format version and a SHA-256 of the payload,
verified before anything is decoded. A flipped bit anywhere, a torn write or
a file of another kind is a :class:`~surv_kernel.sealed.SealError` (a
``DataError``), never a silently different state. Unsealed checkpoints of
format 1 (before sealing) are refused with a message saying how to proceed:
they carry neither a checksum nor the duplicate set, so restoring one could
re-accept trades; rebuild the state by replaying the day's trades into a new
stream.

Duplicate trade ids across a restore: ingest's duplicate set
(``Dictionaries.trade_ids``, 64-bit hashes, see :class:`~surv_kernel.ingest.TradeIdSet`)
goes into the checkpoint, so a batch delivered again after a restore (a
source that re-sends from its last committed offset) is quarantined as
``duplicate_trade_id`` by :meth:`push_feed`, as it would have been without
the restart. The set grows with the day (8 bytes per id in the checkpoint),
so it is bounded by ``max_trade_ids`` (:data:`CHECKPOINT_MAX_TRADE_IDS`, 4M
ids = 32 MB, by default). Past the bound the checkpoint keeps only the hashes
of the held rows' ids (``trade_ids_complete`` is False) and logs a warning.
That is still enough for the stream never to accept a trade twice: a trade
is accepted only at or after its group's frontier, and every row at or after
``frontier - W`` is held, so the original of any re-delivered trade that
could be accepted is held and its hash kept; a re-delivered trade older than
that is quarantined as ``late_trade`` instead of ``duplicate_trade_id``.
Only the quarantine reason of old re-deliveries differs past the bound, and
a restored stream whose set is incomplete says so in :meth:`stats`
(``trade_ids_complete``). :meth:`push` of batches decoded elsewhere does not
check duplicates (ingest does); decode with :attr:`dictionaries` or use
:meth:`push_feed`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import numpy as np

from . import dtypes
from . import feedscan as fs
from .batch import Dictionaries, TradeBatch
from .ingest import Quarantine, QuarantineRecord, TradeIdSet, decode_feed
from .kernels import scoring as model_kernels
from .model.alerts import (
    Alert,
    Explanation,
    SuppressedEpisode,
    episode_alert,
    episode_explanation,
    episode_suppressed,
)
from .model.baselines import (
    FLOOR_ONLY,
    Baselines,
    CodeBaselines,
    build_baselines,
    main_desk_of_counts,
    resolve_baselines,
)
from .model.config import DetectionConfig, check_baselines, resolve_config
from .model.episodes import episode_starts, segment_argmax
from .model.profiles import N_BUCKETS
from .model.scoring import score_windows
from .observability import metrics as _global_metrics
from .reference import UnknownAssetClassError, asset_class_floor
from .sealed import SealError, is_sealed, seal, unseal
from .windows import group_median_mad, window_stats

__all__ = [
    "CHECKPOINT_MAX_TRADE_IDS",
    "DEFAULT_LATENESS_NS",
    "EVENT_STATUSES",
    "AlertEvent",
    "SealError",
    "StreamUpdate",
    "SurveillanceStream",
]

#: Default lateness allowance: 10 seconds behind the newest trade.
DEFAULT_LATENESS_NS = 10 * dtypes.NS_PER_SECOND

EVENT_STATUSES = ("open", "update", "withdrawn", "closed")
_STATUS_RANK = {s: i for i, s in enumerate(EVENT_STATUSES)}

LATE_TRADE = "late_trade"
BAD_NOTIONAL = "bad_notional"
UNKNOWN_ASSET_CLASS = "unknown_asset_class"

_I64_MIN = int(np.iinfo(np.int64).min)
_I64_MAX = int(np.iinfo(np.int64).max)
_NEVER = _I64_MAX  # "no episode due to close"
# timestamps within +-2**62 and spans (W, lateness) up to 2**60 keep every
# "t - W", "wm - W", "last + W" inside int64
_MAX_TS = 2**62
_MAX_SPAN = 2**60
#: Held rows are stored per chunk of this many consecutive groups; a push
#: recomputes the chunks of the groups it needs.
_CHUNK_GROUPS = 64
#: Chunks are recomputed in blocks of about this many rows (a block closes
#: once it reaches it): the temporaries of a push (~150 bytes per row) stay
#: bounded whatever the rows held, and the window kernel still runs its
#: threads (windows.PARALLEL_MIN_ROWS).
_BLOCK_ROWS = 200_000
#: The id arena is compacted when it holds more than 1.25x the held rows'
#: ids plus this many (each compaction copies the live ids: amortised O(1)).
_ID_MARGIN = 16_384
#: Payload format of a checkpoint (1: unsealed, no duplicate set; refused).
_CHECKPOINT_VERSION = 3  # 3: the chains' peak records carry the time-of-day factor
_CHECKPOINT_KIND = "surv_kernel.stream"
#: Default bound on the duplicate-set hashes a checkpoint carries (8 bytes
#: each); see "Duplicate trade ids across a restore" in the module docstring.
CHECKPOINT_MAX_TRADE_IDS = 1 << 22

log = logging.getLogger(__name__)

# One open episode's state, per group and chain (alert chain: breaching
# windows, or every floor-passing one under policy="static"; floor chain:
# floor-passing windows, for the suppression report). The peak fields are
# those of the peak window's scoring (model_kernels.score_windows) and count
# = the trades in the peak window.
_CHAIN = np.dtype(
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
        ("tod", "<f8"),  # time-of-day factor of the expected value (checkpoint v3)
    ]
)
_PEAK_FIELDS = (
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
    "tod",
)


# -- public records ---------------------------------------------------------------------


class AlertEvent(msgspec.Struct, frozen=True):
    """One step of an alert episode's lifecycle (see the module docstring)."""

    status: str  # "open", "update", "closed" or "withdrawn"
    episode_id: str  # == alert.alert_id, fixed from open to close
    alert: Alert  # the episode as it stands (final when status == "closed")
    superseded_by: list[str] = []  # "withdrawn": the episodes now holding its windows


@dataclass
class StreamUpdate:
    """What one push (or flush) produced.

    ``events`` are in (alert start, trader, asset class, status) order;
    ``suppressed`` are final suppressed episodes; ``quarantine`` holds the
    rows set aside (late trades, bad values, and for :meth:`push_feed` the
    ingest quarantine).
    """

    events: list[AlertEvent] = field(default_factory=list)
    suppressed: list[SuppressedEpisode] = field(default_factory=list)
    quarantine: Quarantine = field(default_factory=Quarantine)
    watermark_ns: int | None = None
    n_accepted: int = 0
    seconds: float = 0.0

    def _of(self, status: str) -> list[AlertEvent]:
        return [e for e in self.events if e.status == status]

    @property
    def opened(self) -> list[AlertEvent]:
        return self._of("open")

    @property
    def updated(self) -> list[AlertEvent]:
        return self._of("update")

    @property
    def closed(self) -> list[AlertEvent]:
        return self._of("closed")

    @property
    def withdrawn(self) -> list[AlertEvent]:
        return self._of("withdrawn")


# -- checkpoint schema --------------------------------------------------------------------


class _OpenEpisode(msgspec.Struct, frozen=True):
    episode_id: str
    group: int  # index into _Checkpoint.groups
    alert: Alert


class _Checkpoint(msgspec.Struct, frozen=True):
    version: int
    config: DetectionConfig
    baselines: Baselines | None  # given baselines
    warm_baselines: Baselines | None  # warm-up's latest (baselines is None)
    lateness_ns: int
    warmup_refresh_ns: int
    max_warmup_samples: int
    name: str
    max_ts: int | None
    base_frontier: int
    last_refresh_wm: int | None
    n_trades: int
    n_floor_closed: int
    desks: list[str]  # desk names; desk columns below index this list
    groups: list[tuple[str, str]]  # (trader, asset class) per group index
    frontier: bytes  # <i8 per group
    due: bytes  # <i8 per group
    alert_chain: bytes  # _CHAIN records per group
    floor_chain: bytes
    alert_first_trade: list[str | None]  # per group (alert chain)
    alert_trades: list[list[str] | None]  # per group: the peak window's trades
    rows_group: bytes  # <i4, held rows
    rows_ts: bytes  # <i8
    rows_usd: bytes  # <f8
    rows_desk: bytes  # <i4 into desks
    rows_trade_id: list[str]
    open_episodes: list[_OpenEpisode]
    warm_last_kept: bytes  # <i8 per group
    warm_samples: list[list[float]]  # per group
    warm_desk_counts: bytes  # <i8, groups x desks
    warm_dirty: bool
    trade_id_hashes: bytes  # <u8: ingest's duplicate set (or the held rows' ids past the bound)
    trade_ids_complete: bool  # False: only the held rows' ids (the bound was passed)


# -- helpers -------------------------------------------------------------------------------


def _grow(a: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """``a`` with room for ``n`` entries along axis 0 (doubling), new ones = fill."""
    if len(a) >= n:
        return a
    cap = max(n, 2 * len(a), 16)
    out = np.empty((cap, *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    out[len(a) :] = fill
    return out


def _empty_chain(n: int) -> np.ndarray:
    c = np.zeros(n, _CHAIN)
    c["desk"] = -1
    c["tod"] = 1.0
    return c


def _concat_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` (int64), without a Python loop."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, np.int64)
    starts = np.cumsum(lens) - lens
    return np.repeat(lo - starts, lens) + np.arange(total)


class _Rows(NamedTuple):
    """Held rows of one chunk (groups ``c * _CHUNK_GROUPS`` up to the next
    chunk), in (group, timestamp, arrival) order; the group of each row
    follows from the groups' row counts (``_held_n``). Trade ids live in
    the stream's :class:`_IdArena` (``rid``): moving a million Python
    strings per push costs a refcount write on each (~60 ms, more than the
    rest of a push), and ~65 bytes each."""

    ts: np.ndarray  # int64
    usd: np.ndarray  # float64
    desk: np.ndarray  # desk codes (int16 while there are fewer than 32768 desks)
    rid: np.ndarray  # int32 rows of the id arena (compacted: fewer than 2**31)


class _IdArena:
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
        self.buf[end : end + len(data)] = np.frombuffer(data, np.uint8)
        np.cumsum(lens, out=self.off[n + 1 : n + k + 1], dtype=np.int32)
        self.off[n + 1 : n + k + 1] += end
        self.n = n + k
        return np.arange(n, n + k, dtype=np.int32)

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
        room = len(live) // 4 + _ID_MARGIN + 8192
        off = np.zeros(len(live) + room + 1, np.int32)
        np.cumsum(hi - lo, out=off[1 : len(live) + 1], dtype=np.int32)
        size = int(off[len(live)])
        buf = np.empty(size + room * (size // max(len(live), 1) + 1) + (1 << 16), np.uint8)
        step = 1 << 16
        for a in range(0, len(live), step):
            b = min(a + step, len(live))
            buf[off[a] : off[b]] = self.buf[_concat_ranges(lo[a:b], hi[a:b])]
        self.buf, self.off, self.n = buf, off, len(live)


class _New(NamedTuple):
    """Accepted rows of one push, in arrival order, stream codes."""

    gid: np.ndarray
    ts: np.ndarray
    usd: np.ndarray
    desk: np.ndarray
    tid: np.ndarray


class _Luts:
    """Code translation from a foreign Dictionaries to the stream's, by name
    (extended as the foreign dictionaries grow)."""

    __slots__ = ("asset_class", "desk", "source", "trader")

    def __init__(self, source: Dictionaries) -> None:
        self.source = source
        self.trader = np.empty(0, np.int32)
        self.asset_class = np.empty(0, np.int32)
        self.desk = np.empty(0, np.int32)

    def update(self, target: Dictionaries) -> None:
        for name in ("trader", "asset_class", "desk"):
            src, dst, lut = getattr(self.source, name), getattr(target, name), getattr(self, name)
            if len(lut) < len(src):
                extra = [dst.code(v) for v in src.values[len(lut) :]]
                setattr(self, name, np.concatenate([lut, np.array(extra, np.int32)]))


class _Episodes(NamedTuple):
    """Episodes over a chain's elements (indices into the element arrays)."""

    grp: np.ndarray  # local group
    first: np.ndarray  # first element
    peak: np.ndarray  # peak element (first maximum)
    start: np.ndarray  # start_ns
    last: np.ndarray  # last flagged timestamp
    n: np.ndarray  # flagged windows
    breach: np.ndarray  # any breach (floor chain)


class _Elements(NamedTuple):
    """A chain's elements in (group, time) order: one pseudo element per group
    with an open state (its folded part), then the group's flagged rows."""

    g: np.ndarray
    t: np.ndarray
    s: np.ndarray
    n: np.ndarray
    start: np.ndarray
    breach: np.ndarray
    ref: np.ndarray  # >= 0: index into the scored rows; < 0: pseudo of local group -1-ref

    def episodes(self, sel: np.ndarray | None, window_ns: int, row_tid: Any = None) -> _Episodes:
        """``row_tid`` (scored row -> its own trade id) breaks peak ties at
        one timestamp as the model does; a folded state wins its ties (it
        is first in its group, as the model's earlier rows are)."""
        g, t = (self.g, self.t) if sel is None else (self.g[sel], self.t[sel])
        idx = np.arange(len(self.g)) if sel is None else np.flatnonzero(sel)
        if len(idx) == 0:
            e = np.empty(0, np.int64)
            return _Episodes(e, e, e, e, e, e, np.empty(0, np.bool_))
        starts = episode_starts(g, t, window_ns)
        ends = np.append(starts[1:], len(idx)) - 1

        def tie(p: int) -> tuple[int, str]:
            ref = int(self.ref[idx[p]])
            return (0, "") if ref < 0 or row_tid is None else (1, row_tid(ref))

        first = idx[starts]
        return _Episodes(
            grp=self.g[first],
            first=first,
            peak=idx[segment_argmax(self.s[idx], starts, self.t[idx], tie)],
            start=self.start[first],
            last=self.t[idx[ends]],
            n=np.add.reduceat(self.n[idx], starts),
            breach=np.logical_or.reduceat(self.breach[idx], starts),
        )


# -- the stream ----------------------------------------------------------------------------


class SurveillanceStream:
    """Streaming :func:`surv_kernel.detect`; see the module docstring.

    Parameters
    ----------
    config : DetectionConfig, optional
    baselines : Baselines, optional
        From :func:`~surv_kernel.calibrate` (exact batch equivalence); None
        warms up in-stream (see the module docstring).
    lateness_ns : int
        How far behind the newest trade a trade may arrive and still be on
        time (default :data:`DEFAULT_LATENESS_NS`, 10 s).
    dictionaries : Dictionaries, optional
        The run's dictionaries (a new one by default). Batches encoded with
        other dictionaries are translated by name.
    metrics : MetricsRegistry or None
        Where to report state size, late trades and alerts (the package's
        registry by default; None: no metrics).
    name : str
        The ``stream`` label of this stream's metrics (and the ``desk``
        label of the shared alert/quarantine families).
    warmup_refresh_ns : int, optional
        Warm-up only: rebuild the baselines after this much watermark
        progress (default: one window).
    max_warmup_samples : int
        Warm-up only: thinned samples kept per group (the most recent).
    """

    def __init__(
        self,
        config: DetectionConfig | None = None,
        baselines: Baselines | None = None,
        *,
        lateness_ns: int = DEFAULT_LATENESS_NS,
        dictionaries: Dictionaries | None = None,
        metrics: Any = _global_metrics,
        name: str = "stream",
        warmup_refresh_ns: int | None = None,
        max_warmup_samples: int = 512,
    ) -> None:
        cfg = resolve_config(config)
        check_baselines(baselines, cfg)
        if isinstance(lateness_ns, bool) or not isinstance(lateness_ns, (int, np.integer)):
            raise TypeError(
                f"lateness_ns must be an integer number of nanoseconds, got {lateness_ns!r}"
            )
        if not 0 <= lateness_ns <= _MAX_SPAN:
            raise ValueError(f"lateness_ns must be in [0, 2**60], got {lateness_ns}")
        if cfg.window_ns > _MAX_SPAN:
            raise ValueError(f"window_minutes={cfg.window_minutes} is over 2**60 ns")
        if dictionaries is not None and not isinstance(dictionaries, Dictionaries):
            raise TypeError(
                f"dictionaries must be a Dictionaries, got {type(dictionaries).__name__}"
            )
        if max_warmup_samples < 1:
            raise ValueError(f"max_warmup_samples must be >= 1, got {max_warmup_samples}")
        self._cfg = cfg
        self._W = cfg.window_ns
        self._given = baselines
        self._baselines = baselines
        self._L = int(lateness_ns)
        self._d = dictionaries if dictionaries is not None else Dictionaries()
        self._metrics = metrics
        self.name = str(name)
        self._refresh_ns = self._W if warmup_refresh_ns is None else int(warmup_refresh_ns)
        if self._refresh_ns < 0:
            raise ValueError(f"warmup_refresh_ns must be >= 0, got {warmup_refresh_ns}")
        self._max_samples = int(max_warmup_samples)
        self._closed = False
        # False after restoring a checkpoint that kept only the held rows' ids
        self._ids_complete = True
        self._luts: dict[int, _Luts] = {}
        # time
        self._max_ts: int | None = None
        self._base_frontier = _I64_MIN
        self._last_refresh_wm: int | None = None
        self._n_trades = 0
        self._n_floor_closed = 0
        # groups: (trader code, asset class code) -> gid, and per-gid state
        self._G = 0
        self._table = np.full((0, 0), -1, np.int32)
        self._g_trader = np.empty(0, np.int32)
        self._g_ac = np.empty(0, np.int32)
        self._frontier = np.empty(0, np.int64)
        self._due = np.empty(0, np.int64)
        self._held_n = np.empty(0, np.int64)
        self._has_open = np.empty(0, np.bool_)
        self._achain = _empty_chain(0)
        self._fchain = _empty_chain(0)
        self._a_first = np.empty(0, object)
        self._a_trades = np.empty(0, object)
        self._own_med = np.empty(0)
        self._own_mad = np.empty(0)
        self._own_n = np.empty(0, np.int64)
        self._own_tm = np.empty(0)
        # warm-up
        self._warm_last = np.empty(0, np.int64)
        self._warm_desk = np.zeros((0, 0), np.int64)
        self._warm_samples: dict[int, list[float]] = {}
        self._warm_dirty = False
        # reference tables by code
        self._ac_floor = np.empty(0)
        self._peer_key: tuple[Any, ...] | None = None
        self._peers: tuple[np.ndarray, ...] = ()
        self._n_ac = 1
        # held rows per chunk of groups, trade ids in an arena; open episodes
        self._chunks: list[_Rows | None] = []
        self._n_held = 0
        self._ids = _IdArena()
        self._open: dict[str, tuple[int, Alert, bytes]] = {}
        self._open_by_group: dict[int, set[str]] = {}
        # (gid, start_ns) -> (signature, episode id) of open episodes as last built
        self._view_sig: dict[tuple[int, int], tuple[tuple[Any, ...], str]] = {}
        self._view_key: dict[str, tuple[int, int]] = {}

    # -- properties -----------------------------------------------------------------------

    @property
    def config(self) -> DetectionConfig:
        return self._cfg

    @property
    def baselines(self) -> Baselines | None:
        """The baselines in use: the given ones, or the warm-up's latest."""
        return self._baselines

    @property
    def dictionaries(self) -> Dictionaries:
        return self._d

    @property
    def lateness_ns(self) -> int:
        return self._L

    @property
    def watermark_ns(self) -> int | None:
        """Largest accepted timestamp - lateness (None before the first trade)."""
        return None if self._max_ts is None else self._max_ts - self._L

    def open_alerts(self) -> dict[str, Alert]:
        """episode_id -> the last emitted state of every open alert episode."""
        return {eid: entry[1] for eid, entry in self._open.items()}

    def oldest_held_ns(self) -> int | None:
        """Timestamp of the oldest row held (None when none is); O(rows held).
        Every held row is context of a window that is not final yet."""
        mins = [int(ch.ts.min()) for ch in self._chunks if ch is not None]
        return min(mins) if mins else None

    def stats(self) -> dict[str, int | None]:
        """State size: held rows, groups holding rows or an open episode,
        open episodes (alert and floor chains, and open alert events)."""
        G = self._G
        busy = (self._held_n[:G] > 0) | self._achain["active"][:G] | self._fchain["active"][:G]
        return {
            "rows_held": self._n_held,
            "groups": int(np.count_nonzero(busy)),
            "groups_known": G,
            "open_episodes": len(self._open),
            "open_chain_states": int(
                np.count_nonzero(self._achain["active"][:G])
                + np.count_nonzero(self._fchain["active"][:G])
            ),
            "trades": self._n_trades,
            "watermark_ns": self.watermark_ns,
            "trade_ids_complete": self._ids_complete,
        }

    # -- input ----------------------------------------------------------------------------

    def push(self, batch: TradeBatch) -> StreamUpdate:
        """Fold one micro-batch (in arrival order) into the state; return the
        events it causes, the suppressed episodes it closes and the rows set
        aside. Rows are validated before any state changes: a non-finite
        notional or an asset class without a floor is quarantined (the batch
        model would raise for the whole day), a late trade as documented."""
        t0 = time.perf_counter()
        self._check_open()
        if not isinstance(batch, TradeBatch):
            raise TypeError(
                "batch must be a TradeBatch (see surv_kernel.decode_feed / columns_from_dicts), "
                f"got {type(batch).__name__}"
            )
        new, q, n_late_ok = self._accept(batch)
        if len(new.ts):
            top = int(new.ts.max())
            self._max_ts = top if self._max_ts is None else max(self._max_ts, top)
            self._n_trades += len(new.ts)
        update = StreamUpdate(quarantine=q, n_accepted=len(new.ts))
        wm = self.watermark_ns
        if wm is not None:
            self._step(new, wm, update)
        self._after(update, t0, n_late_ok)
        return update

    def push_feed(
        self, data: bytes | bytearray | memoryview | str, desk: str | None = None, **ingest: Any
    ) -> StreamUpdate:
        """Decode a raw feed chunk (a whole JSON array or NDJSON lines, see
        :func:`surv_kernel.decode_feed`) with the stream's dictionaries and
        push it; the ingest quarantine is merged into the update's."""
        self._check_open()
        batch, q = decode_feed(data, desk, dictionaries=self._d, **ingest)
        update = self.push(batch)
        q.extend(update.quarantine)
        update.quarantine = q
        return update

    def advance_to(self, now_ns: int) -> StreamUpdate:
        """Tell the stream that event time has reached ``now_ns`` without a
        trade (a heartbeat in a quiet market): the watermark moves to
        ``now_ns - lateness`` if that is later, closing what it passes."""
        t0 = time.perf_counter()
        self._check_open()
        now_ns = int(now_ns)
        if not -_MAX_TS <= now_ns <= _MAX_TS:
            raise ValueError(f"now_ns out of range: {now_ns}")
        self._max_ts = now_ns if self._max_ts is None else max(self._max_ts, now_ns)
        update = StreamUpdate()
        self._step(self._empty_new(), self._max_ts - self._L, update)
        self._after(update, t0, 0)
        return update

    def flush(self) -> StreamUpdate:
        """End of day: close every open episode (emit ``closed`` and the
        suppressed episodes) and drop the held rows. Later trades must be
        newer than everything seen (older ones are quarantined as late); their
        windows start afresh. Warm-up baselines are rebuilt and kept."""
        t0 = time.perf_counter()
        self._check_open()
        update = StreamUpdate()
        if self._max_ts is not None:
            self._step(self._empty_new(), _I64_MAX, update, flushing=True)
            self._base_frontier = self._max_ts + 1
            self._frontier[: self._G] = self._base_frontier
            if self._given is None and self._warm_dirty:
                self._refresh_warm()
        self._after(update, t0, 0)
        return update

    def close(self) -> StreamUpdate:
        """:meth:`flush`, then refuse further input."""
        update = self.flush()
        self._closed = True
        return update

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the stream is closed; restore a checkpoint or start a new one")

    def _empty_new(self) -> _New:
        return _New(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
            np.empty(0, object),
        )

    # -- acceptance ---------------------------------------------------------------------------

    def _codes(self, batch: TradeBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if batch.dictionaries is self._d:
            return batch.trader, batch.asset_class, batch.desk
        luts = self._luts.get(id(batch.dictionaries))
        if luts is None or luts.source is not batch.dictionaries:
            luts = self._luts[id(batch.dictionaries)] = _Luts(batch.dictionaries)
        luts.update(self._d)
        return luts.trader[batch.trader], luts.asset_class[batch.asset_class], luts.desk[batch.desk]

    def _accept(self, batch: TradeBatch) -> tuple[_New, Quarantine, int]:
        q = Quarantine()
        n = len(batch)
        if n == 0:
            return self._empty_new(), q, 0
        trader, ac, desk = self._codes(batch)
        self._refresh_tables()
        ts = batch.timestamp_ns
        usd = batch.notional_usd
        bad_value = ~np.isfinite(usd)
        bad_ts = (ts < -_MAX_TS) | (ts > _MAX_TS)  # keeps ts +- W and watermarks in int64
        unknown = np.isnan(self._ac_floor[ac])
        ok = ~(bad_value | bad_ts | unknown)
        rows = np.flatnonzero(ok)
        gid = self._gids(trader[rows], ac[rows])
        late = ts[rows] < self._frontier[gid]
        wm = self.watermark_ns
        n_late_ok = 0 if wm is None else int(np.count_nonzero(ts[rows][~late] < wm))
        if late.any():
            self._quarantine_late(q, batch, rows[late], gid[late], desk)
            rows, gid = rows[~late], gid[~late]
        for mask, reason, what in (
            (bad_value, BAD_NOTIONAL, "non-finite USD notional"),
            (bad_ts, "bad_timestamp", "timestamp outside +-2**62 ns"),
            (unknown & ~bad_value & ~bad_ts, UNKNOWN_ASSET_CLASS, "asset class without a floor"),
        ):
            if mask.any():
                self._quarantine_rows(
                    q, batch, np.flatnonzero(mask), desk, reason, lambda i, w=what: w
                )
        if self._given is None and len(rows):
            # main desk per group counts every accepted trade, as calibrate does
            n_desk = len(self._d.desk)
            if self._warm_desk.shape[1] < n_desk:
                grown = np.zeros((self._warm_desk.shape[0], max(n_desk, 4)), np.int64)
                grown[:, : self._warm_desk.shape[1]] = self._warm_desk
                self._warm_desk = grown
            np.add.at(self._warm_desk, (gid, desk[rows]), 1)
            # a trade whose window is thinned away adds no sample but can still
            # change its group's main desk (hence its peers): rebuild for it too
            self._warm_dirty = True
        new = _New(
            gid.astype(np.int32, copy=False),
            ts[rows],
            usd[rows],
            desk[rows].astype(np.int32, copy=False),
            batch.trade_id[rows],
        )
        return new, q, n_late_ok

    def _quarantine_rows(self, q, batch, rows, desk, reason, detail) -> None:
        """Records for the first rows (up to the quarantine's bound); the rest counted."""
        room = max(q.max_records - len(q), 0)
        desk_names = self._d.desk
        for i in rows[:room].tolist():
            q.add(
                QuarantineRecord(
                    desk=desk_names[desk[i]] or None,
                    position=i,
                    reason=reason,
                    detail=detail(i),
                    raw=repr(
                        {
                            "trade_id": batch.trade_id[i],
                            "timestamp_ns": int(batch.timestamp_ns[i]),
                            "notional_usd": float(batch.notional_usd[i]),
                        }
                    )[:200],
                    trade_id=str(batch.trade_id[i]),
                )
            )
        rest = len(rows) - min(room, len(rows))
        if rest > 0:
            q.counts[reason] += rest
            q.dropped += rest

    def _quarantine_late(self, q, batch, rows, gid, desk) -> None:
        wm = self.watermark_ns
        fr = self._frontier[gid]
        ts = batch.timestamp_ns
        pos = {int(r): k for k, r in enumerate(rows.tolist())}

        def detail(i: int) -> str:
            k = pos[i]
            behind = "" if wm is None else f"{(wm - int(ts[i])) / 1e9:.3f} s before the watermark, "
            return (
                f"late trade: timestamp {int(ts[i])} is {behind}outside the "
                f"{self._L / 1e9:g} s lateness allowance, and its group's windows up to "
                f"{int(fr[k])} are final (folded into episodes already emitted or evicted)"
            )

        self._quarantine_rows(q, batch, rows, desk, LATE_TRADE, detail)

    # -- groups and reference tables ------------------------------------------------------

    def _refresh_tables(self) -> None:
        """Floors per asset-class code and peer tables, when the dictionaries grew."""
        acs = self._d.asset_class.values
        if len(self._ac_floor) < len(acs):
            extra = []
            for name in acs[len(self._ac_floor) :]:
                try:
                    extra.append(asset_class_floor(name))
                except UnknownAssetClassError:
                    extra.append(math.nan)
            self._ac_floor = np.concatenate([self._ac_floor, np.array(extra, np.float64)])
        key = (len(acs), len(self._d.desk), id(self._baselines))
        if key != self._peer_key:
            self._peer_key = key
            self._n_ac = max(len(acs), 1)
            n_desk = max(len(self._d.desk), 1)
            if self._baselines is None:
                self._peers = (
                    np.full((self._n_ac, n_desk), np.nan),
                    np.full((self._n_ac, n_desk), np.nan),
                    np.zeros((self._n_ac, n_desk), np.int64),
                    np.full((self._n_ac, n_desk), FLOOR_ONLY, np.int8),
                    np.full(self._n_ac, np.nan),
                    np.ones((n_desk, N_BUCKETS)),
                )
            else:
                cb = self._resolve(())
                self._peers = (
                    cb.peer_median,
                    cb.peer_mad,
                    cb.peer_n,
                    cb.peer_source,
                    cb.class_rel_scale,
                    cb.tod,
                )

    def _resolve(self, traders: Sequence[str]) -> CodeBaselines:
        """The model's resolution of ``self._baselines`` to codes for these
        traders (x every asset class) and the stream's desks."""
        d = self._d
        return resolve_baselines(
            self._baselines,  # type: ignore[arg-type]
            traders,
            d.asset_class.values,
            d.desk.values,
            self._cfg,
        )

    def _gids(self, trader: np.ndarray, ac: np.ndarray) -> np.ndarray:
        nt, na = len(self._d.trader), len(self._d.asset_class)
        rows, cols = self._table.shape
        if rows < nt or cols < na:
            grown = np.full((max(nt, 2 * rows, 16), max(na, cols + 4)), -1, np.int32)
            grown[:rows, :cols] = self._table
            self._table = grown
        gid = self._table[trader, ac]
        miss = gid < 0
        if miss.any():
            ncol = self._table.shape[1]
            key = trader[miss].astype(np.int64) * ncol + ac[miss]
            uk, first = np.unique(key, return_index=True)
            uk = uk[np.argsort(first, kind="stable")]  # first-seen order
            self._add_groups((uk // ncol).astype(np.int32), (uk % ncol).astype(np.int32))
            gid = self._table[trader, ac]
        return gid.astype(np.int64)

    def _add_groups(self, trader: np.ndarray, ac: np.ndarray) -> None:
        G0, k = self._G, len(trader)
        G = G0 + k
        self._table[trader, ac] = np.arange(G0, G, dtype=np.int32)
        self._g_trader = _grow(self._g_trader, G, 0)
        self._g_ac = _grow(self._g_ac, G, 0)
        self._frontier = _grow(self._frontier, G, self._base_frontier)
        self._due = _grow(self._due, G, _NEVER)
        self._held_n = _grow(self._held_n, G, 0)
        self._has_open = _grow(self._has_open, G, False)
        if len(self._achain) < G:
            for name in ("_achain", "_fchain"):
                old = getattr(self, name)
                new = _empty_chain(max(G, 2 * len(old), 16))
                new[: len(old)] = old
                setattr(self, name, new)
        self._a_first = _grow(self._a_first, G, None)
        self._a_trades = _grow(self._a_trades, G, None)
        self._own_med = _grow(self._own_med, G, np.nan)
        self._own_mad = _grow(self._own_mad, G, np.nan)
        self._own_n = _grow(self._own_n, G, 0)
        self._own_tm = _grow(self._own_tm, G, np.nan)
        self._warm_last = _grow(self._warm_last, G, _I64_MIN)
        n_chunks = (G + _CHUNK_GROUPS - 1) // _CHUNK_GROUPS
        self._chunks += [None] * (n_chunks - len(self._chunks))
        if self._warm_desk.shape[0] < G:
            rows, cols = self._warm_desk.shape
            grown = np.zeros((len(self._g_ac), max(cols, 4)), np.int64)
            grown[:rows, :cols] = self._warm_desk
            self._warm_desk = grown
        sl = slice(G0, G)
        self._g_trader[sl] = trader
        self._g_ac[sl] = ac
        self._frontier[sl] = self._base_frontier
        self._due[sl] = _NEVER
        self._held_n[sl] = 0
        self._has_open[sl] = False
        self._achain[sl] = _empty_chain(k)
        self._fchain[sl] = _empty_chain(k)
        self._a_first[sl] = None
        self._a_trades[sl] = None
        self._warm_last[sl] = _I64_MIN
        self._G = G
        self._resolve_own(np.arange(G0, G))

    def _resolve_own(self, gids: np.ndarray, force: bool = False) -> None:
        """Own baselines of these groups from ``self._baselines`` (by name)."""
        if len(gids) == 0:
            return
        if self._given is None and not force:
            # warm-up: a new group has no samples; _refresh_warm sets every group
            self._own_med[gids] = np.nan
            self._own_mad[gids] = np.nan
            self._own_n[gids] = 0
            self._own_tm[gids] = np.nan
            return
        tcodes, local = np.unique(self._g_trader[gids], return_inverse=True)
        cb = self._resolve(self._d.trader.decode(tcodes))
        pos = local * max(len(self._d.asset_class), 1) + self._g_ac[gids]
        self._own_med[gids] = cb.median[pos]
        self._own_mad[gids] = cb.mad[pos]
        self._own_n[gids] = cb.n[pos]
        self._own_tm[gids] = cb.time_median[pos]

    # -- one step: recompute the active groups --------------------------------------------

    def _step(self, new: _New, wm: int, update: StreamUpdate, flushing: bool = False) -> None:
        """Fold ``new`` into the state with the watermark at ``wm``.

        Groups to recompute: those the rows touch, those with an episode the
        watermark closes (``due``), and those idle for more than a window
        (their rows and episodes are swept). The chunks holding them are
        recomputed block by block (a block: consecutive chunks up to
        ``_BLOCK_ROWS`` rows, so the temporaries stay bounded whatever the
        number of rows held), see :meth:`_step_block`.
        """
        W = self._W
        G = self._G
        self._refresh_tables()
        horizon = wm - W  # rows before this are no window's context any more
        touched = np.unique(new.gid).astype(np.int64)
        due = np.flatnonzero(self._due[:G] < wm)
        idle = np.flatnonzero((self._held_n[:G] > 0) & (self._frontier[:G] < horizon))
        need = np.union1d(np.union1d(touched, due), idle)
        if len(need):
            CG = _CHUNK_GROUPS
            chunks = np.unique(need // CG)
            n_chunks = (G + CG - 1) // CG
            rows = np.bincount(
                np.arange(G) // CG, weights=self._held_n[:G], minlength=n_chunks
            ) + np.bincount(new.gid // CG, minlength=n_chunks)
            # new rows by chunk; stable, so a group's rows keep arrival order
            nc = new.gid.astype(np.int64) // CG
            norder = np.argsort(nc, kind="stable")
            nc = nc[norder]
            blocks: list[list[int]] = [[]]
            size = 0.0
            for c in chunks.tolist():
                if size >= _BLOCK_ROWS:
                    blocks.append([])
                    size = 0.0
                blocks[-1].append(c)
                size += rows[c]
            for block in blocks:
                lo = np.searchsorted(nc, block[0], "left")
                hi = np.searchsorted(nc, block[-1], "right")
                sel = norder[lo:hi]
                chunk_ids = np.array(block, np.int64)
                # two calls: the window statistics die with the first frame
                rows_c = self._recompute_block(
                    chunk_ids, _New(*(col[sel] for col in new)), wm, horizon, update
                )
                self._store_block(chunk_ids, horizon, *rows_c)
            self._compact_ids()
        update.events.sort(key=_event_key)
        update.suppressed.sort(key=lambda e: (e.start_ns, e.trader_id, e.asset_class))
        self._maybe_refresh(wm, flushing)

    def _recompute_block(
        self, chunk_ids: np.ndarray, new: _New, wm: int, horizon: int, update: StreamUpdate
    ) -> tuple[np.ndarray, ...]:
        """Recompute the groups of these chunks that hold rows, get new rows
        or have an open episode: their held rows plus the new rows go through
        one ``window_stats`` call; every floor-passing window at or after its
        group's frontier is (re)scored; both chains are rebuilt from their
        folded state plus those windows; windows before ``wm`` are folded.
        Returns the rows and their (group, time) order for
        :meth:`_store_block`."""
        W = self._W
        G = self._G
        cfg = self._cfg
        CG = _CHUNK_GROUPS
        gids = _concat_ranges(chunk_ids * CG, np.minimum(chunk_ids * CG + CG, G))
        hn = self._held_n[gids]
        parts = [self._chunks[c] for c in chunk_ids.tolist()]
        parts = [p for p in parts if p is not None]
        has_new = np.zeros(len(gids), np.bool_)
        has_new[np.searchsorted(gids, new.gid)] = True
        involved = (
            (hn > 0)
            | has_new
            | self._achain["active"][gids]
            | self._fchain["active"][gids]
            | (self._due[gids] < _NEVER)  # open episodes (emitted or not) have a due time
        )
        active = gids[involved]
        n_act = len(active)
        local = np.full(G, -1, np.int32)
        local[active] = np.arange(n_act, dtype=np.int32)

        # the held rows first (by group, then time), then the new rows in
        # arrival order: ties in time keep arrival order, as in the batch
        gid_c = np.concatenate([np.repeat(gids.astype(np.int32), hn), new.gid])
        ts_c = np.concatenate([*(p.ts for p in parts), new.ts])
        usd_c = np.concatenate([*(p.usd for p in parts), new.usd])
        desk_c = np.concatenate([*(p.desk for p in parts), new.desk])
        rid_c = np.concatenate([*(p.rid for p in parts), self._ids.append(new.tid)])
        del parts
        ws = window_stats(local[gid_c], ts_c, usd_c, W, n_act)
        o = ws.order
        n = len(o)
        F_act = self._frontier[active]
        ac_act = self._g_ac[active].astype(np.int64)
        # floor-passing windows (the model's floor scan), then the ones not
        # folded yet (at or after the group's frontier): the scans over
        # every row stay in the kernel, NumPy only sees the few that pass
        thr = self._ac_floor[ac_act] * cfg.threshold_multiplier
        rows, grp = np.empty(n, np.int64), np.empty(n, np.int64)
        m = model_kernels.rows_above(ws.sums, ws.group_offsets, thr, rows, grp)
        P, gP = rows[:m], grp[:m]
        tsP = ts_c[o[P]]
        fresh = tsP >= F_act[gP]
        P, gP, tsP = P[fresh], gP[fresh], tsP[fresh]
        del rows, grp
        rowpk, breach = self._score(P, gP, tsP, ws, desk_c, active, ac_act)
        if self._given is None:
            self._thin(ws, ts_c, active, F_act, wm)

        ctx = _Ctx(P, gP, ws, ts_c, rid_c, self._ids)
        sP = ws.sums[P]
        startP = ts_c[o[ws.first[P]]]
        static = cfg.policy == "static"
        due_local = np.full(n_act, _NEVER, np.int64)

        # alert chain: breaching windows (every floor-passing one if static)
        ach = _ChainView(self._achain, active)
        old_first = _LocalView(self._a_first, active)  # read before the writes below
        old_trades = _LocalView(self._a_trades, active)
        R = np.arange(len(P)) if static else np.flatnonzero(breach)
        aE = _elements(ach, R, gP, tsP, sP, startP, breach)
        a_all = aE.episodes(None, W, ctx.row_trade)
        a_fin = aE.episodes(aE.t < wm, W, ctx.row_trade)
        a_closed = a_fin.last < horizon
        a_open = ~(a_all.last < horizon)
        np.minimum.at(due_local, a_all.grp[a_open], a_all.last[a_open] + W)

        def alert_of(eps: _Episodes, j: int) -> tuple[str, int, Alert]:
            a = int(eps.grp[j])
            fr, pr = int(aE.ref[eps.first[j]]), int(aE.ref[eps.peak[j]])
            first_tid = old_first[a] if fr < 0 else ctx.first_trade(fr)
            if pr < 0:
                pk, trades = ach[a], old_trades[a]
            else:
                pk, trades = rowpk[pr], ctx.trades(pr)
            return self._alert(
                int(active[a]),
                int(eps.start[j]),
                first_tid,
                int(eps.last[j]),
                int(eps.n[j]),
                pk,
                trades,
            )

        closed = [alert_of(a_fin, j) for j in np.flatnonzero(a_closed).tolist()]
        view = []
        for j in np.flatnonzero(a_open).tolist():
            # an open episode whose extent, first window and peak record did
            # not change has the alert last emitted: skip building it again
            a = int(a_all.grp[j])
            fr, pr = int(aE.ref[a_all.first[j]]), int(aE.ref[a_all.peak[j]])
            pk = ach[a] if pr < 0 else rowpk[pr]
            first_count = -1 if fr < 0 else int(ws.counts[P[fr]])
            start = int(a_all.start[j])
            sig = (first_count, int(a_all.last[j]), int(a_all.n[j]), pk.tobytes())
            key = (int(active[a]), start)
            cached = self._view_sig.get(key)
            if cached is not None and cached[0] == sig and cached[1] in self._open:
                view.append((cached[1], key[0], None))
                continue
            entry = alert_of(a_all, j)
            self._view_sig[key] = (sig, entry[0])
            self._view_key[entry[0]] = key
            view.append(entry)
        keep = _last_per_group(a_fin.grp) & ~a_closed
        sel = np.flatnonzero(keep)
        recs = _chain_records(ach, aE, a_fin, sel, rowpk)
        firsts, trades_of = [], []
        for j in sel.tolist():
            a = int(a_fin.grp[j])
            fr, pr = int(aE.ref[a_fin.first[j]]), int(aE.ref[a_fin.peak[j]])
            firsts.append(old_first[a] if fr < 0 else ctx.first_trade(fr))
            trades_of.append(old_trades[a] if pr < 0 else ctx.trades(pr))
        ach.clear(self._a_first, self._a_trades)
        kept_g = active[a_fin.grp[sel]]
        self._achain[kept_g] = recs
        for g, first_tid, trades in zip(kept_g.tolist(), firsts, trades_of, strict=True):
            self._a_first[g] = first_tid
            self._a_trades[g] = trades

        # floor chain: floor-passing windows, for the suppression report
        n_floor_closed = int(np.count_nonzero(a_closed)) if static else 0
        if not static:
            fch = _ChainView(self._fchain, active)
            fE = _elements(fch, np.arange(len(P)), gP, tsP, sP, startP, breach)
            f_all = fE.episodes(None, W, ctx.row_trade)
            f_fin = fE.episodes(fE.t < wm, W, ctx.row_trade)
            f_closed = f_fin.last < horizon
            f_open = ~(f_all.last < horizon)
            np.minimum.at(due_local, f_all.grp[f_open], f_all.last[f_open] + W)
            n_floor_closed = int(np.count_nonzero(f_closed))
            for j in np.flatnonzero(f_closed & ~f_fin.breach).tolist():
                pr = int(fE.ref[f_fin.peak[j]])
                pk = fch[int(f_fin.grp[j])] if pr < 0 else rowpk[pr]
                update.suppressed.append(
                    self._suppressed(
                        int(active[f_fin.grp[j]]),
                        int(f_fin.start[j]),
                        int(f_fin.last[j]),
                        int(f_fin.n[j]),
                        pk,
                    )
                )
            sel = np.flatnonzero(_last_per_group(f_fin.grp) & ~f_closed)
            recs = _chain_records(fch, fE, f_fin, sel, rowpk)
            fch.clear()
            self._fchain[active[f_fin.grp[sel]]] = recs
        self._n_floor_closed += n_floor_closed

        self._emit(active, closed, view, update)
        self._due[active] = due_local
        self._frontier[active] = wm

        return active, o, ws.group_offsets, gid_c, ts_c, usd_c, desk_c, rid_c

    def _store_block(
        self, chunk_ids, horizon, active, o, off, gid_c, ts_c, usd_c, desk_c, rid_c
    ) -> None:
        """Evict the rows that are no window's context any more (before
        ``horizon``) and store the others back chunk by chunk, in (group,
        time, arrival) order: next push, window_stats then time-sorts only
        the groups that receive out-of-order rows."""
        kpos = np.flatnonzero((ts_c >= horizon)[o])
        self._held_n[active] = np.searchsorted(kpos, off[1:]) - np.searchsorted(kpos, off[:-1])
        kidx = o[kpos]
        del o, kpos
        k_chunk = gid_c[kidx] // _CHUNK_GROUPS
        bounds = (
            np.searchsorted(k_chunk, chunk_ids, "left"),
            np.searchsorted(k_chunk, chunk_ids, "right"),
        )
        desk_dtype = np.int16 if len(self._d.desk) <= np.iinfo(np.int16).max else np.int32
        for c, a, b in zip(chunk_ids.tolist(), *(x.tolist() for x in bounds), strict=True):
            old = self._chunks[c]
            self._n_held += (b - a) - (0 if old is None else len(old.ts))
            r = kidx[a:b]
            self._chunks[c] = (
                _Rows(ts_c[r], usd_c[r], desk_c[r].astype(desk_dtype), rid_c[r]) if b > a else None
            )

    def _score(self, P, gP, tsP, ws, desk_c, active, ac_act) -> tuple[np.ndarray, np.ndarray]:
        """The model's breach test (``model_kernels.score_windows``) of the
        floor-passing windows ``P``; returns their peak records and breach flags."""
        cfg = self._cfg
        n_ac = self._n_ac
        n_act = len(active)
        # groups laid out as local * n_ac + asset class: the kernel reads the
        # group's class as g % n_ac, like the model's trader * n_ac + class
        layout = gP * n_ac + ac_act[gP]
        pos = np.arange(n_act) * n_ac + ac_act
        size = n_act * n_ac
        g_med, g_mad, g_tm = (np.full(size, np.nan) for _ in range(3))
        g_n = np.zeros(size, np.int64)
        g_med[pos] = self._own_med[active]
        g_mad[pos] = self._own_mad[active]
        g_n[pos] = self._own_n[active]
        g_tm[pos] = self._own_tm[active]
        sums = ws.sums[P]
        own = CodeBaselines(g_med, g_mad, g_n, g_tm, *self._peers)
        scored = score_windows(sums, layout, ws.order[P], desk_c, tsP, own, n_ac, cfg)
        rec = _empty_chain(len(P))
        rec["s"] = sums
        rec["pk_ns"] = tsP
        rec["count"] = ws.counts[P]
        for name, col in (
            ("src", scored.source),
            ("desk", scored.desk),
            ("med", scored.median),
            ("mad", scored.mad),
            ("bn", scored.n),
            ("scale", scored.scale),
            ("ssrc", scored.scale_source),
            ("z", scored.z),
            ("ratio", scored.ratio),
            ("tod", scored.tod),
        ):
            rec[name] = col
        return rec, scored.breach

    # -- records ---------------------------------------------------------------------------

    def _explanation(self, gid: int, pk: np.void, n: int) -> Explanation:
        dk = int(pk["desk"])
        return episode_explanation(
            self._cfg,
            float(pk["s"]),
            float(self._ac_floor[self._g_ac[gid]]),
            int(pk["src"]),
            self._d.desk[dk] if dk >= 0 else "",
            float(pk["med"]),
            float(pk["mad"]),
            int(pk["bn"]),
            float(pk["scale"]),
            int(pk["ssrc"]),
            float(pk["z"]),
            float(pk["ratio"]),
            n,
            float(pk["tod"]),
        )

    def _alert(
        self, gid: int, start: int, first_tid: str, end: int, n: int, pk: np.void, trades: list
    ) -> tuple[str, int, Alert]:
        """(episode_id, gid, the model's Alert) for one episode."""
        alert = episode_alert(
            self._cfg,
            self._d.trader[self._g_trader[gid]],
            self._d.asset_class[self._g_ac[gid]],
            start,
            first_tid,
            end,
            int(pk["pk_ns"]),
            list(trades),
            self._explanation(gid, pk, n),
        )
        return alert.alert_id, gid, alert

    def _suppressed(self, gid: int, start: int, end: int, n: int, pk: np.void) -> SuppressedEpisode:
        return episode_suppressed(
            self._cfg,
            self._d.trader[self._g_trader[gid]],
            self._d.asset_class[self._g_ac[gid]],
            start,
            end,
            int(pk["pk_ns"]),
            int(pk["count"]),
            self._explanation(gid, pk, n),
        )

    # -- events ---------------------------------------------------------------------------

    def _emit(
        self,
        active: np.ndarray,
        closed: list[tuple[str, int, Alert]],
        view: list[tuple[str, int, Alert | None]],
        update: StreamUpdate,
    ) -> None:
        """Diff the active groups' episodes against what was emitted
        (``view`` entries with alert None are unchanged open episodes)."""
        events: list[AlertEvent] = []
        prev: set[str] = set()
        for g in active[self._has_open[active]].tolist():
            prev |= self._open_by_group.get(g, set())
        seen: set[str] = set()
        for eid, _gid, alert in closed:
            seen.add(eid)
            if eid not in self._open:
                events.append(AlertEvent("open", eid, alert))
            events.append(AlertEvent("closed", eid, alert))
            self._forget(eid)
        for eid, gid, alert in view:
            seen.add(eid)
            if alert is None:
                continue
            enc = msgspec.msgpack.encode(alert)  # NaN-safe comparison
            entry = self._open.get(eid)
            if entry is None:
                events.append(AlertEvent("open", eid, alert))
            elif entry[2] != enc:
                events.append(AlertEvent("update", eid, alert))
            else:
                continue
            self._open[eid] = (gid, alert, enc)
            self._open_by_group.setdefault(gid, set()).add(eid)
            self._has_open[gid] = True
        for eid in sorted(prev - seen):
            gid, old, _ = self._open[eid]
            over = []
            for e, g, a in (*closed, *view):
                a = a if a is not None else self._open[e][1]
                if g == gid and a.start_ns <= old.end_ns and old.start_ns <= a.end_ns:
                    over.append(e)
            events.append(AlertEvent("withdrawn", eid, old, sorted(over)))
            self._forget(eid)
        update.events.extend(events)

    def _forget(self, eid: str) -> None:
        key = self._view_key.pop(eid, None)
        if key is not None and self._view_sig.get(key, (None, None))[1] == eid:
            del self._view_sig[key]
        entry = self._open.pop(eid, None)
        if entry is None:
            return
        ids = self._open_by_group.get(entry[0])
        if ids is not None:
            ids.discard(eid)
            if not ids:
                del self._open_by_group[entry[0]]
                self._has_open[entry[0]] = False

    # -- the trade id arena ----------------------------------------------------------------

    def _compact_ids(self) -> None:
        """Drop evicted rows' ids once they are a fifth of the arena."""
        if self._ids.n <= self._n_held + self._n_held // 4 + _ID_MARGIN:
            return
        kept = [(c, ch) for c, ch in enumerate(self._chunks) if ch is not None]
        live = np.concatenate([ch.rid for _, ch in kept]) if kept else np.empty(0, np.int32)
        self._ids.compact(live)
        start = 0
        for c, ch in kept:
            self._chunks[c] = ch._replace(rid=np.arange(start, start + len(ch.ts), dtype=np.int32))
            start += len(ch.ts)

    # -- warm-up --------------------------------------------------------------------------

    def _thin(self, ws, ts_c, active, F_act, wm) -> None:
        """Warm-up samples: the windows of rows becoming final (fresh, before
        ``wm``) thinned exactly as ``calibrate`` thins a history: a window is
        kept when the group's last kept window is not inside it. The scan is
        ``model_kernels.thin_windows`` over, per group, a pseudo row for the
        last kept window of earlier pushes followed by these rows; each row's
        "first row of its window" is re-expressed in that layout, and the
        values are positions so the kernel returns which rows it kept."""
        W = self._W
        g_s = np.repeat(np.arange(len(active)), np.diff(ws.group_offsets))
        ts_s = ts_c[ws.order]
        Q = np.flatnonzero((ts_s >= F_act[g_s]) & (ts_s < wm))
        if len(Q) == 0:
            return
        ug, q_start, q_cnt = np.unique(g_s[Q], return_index=True, return_counts=True)
        lk = self._warm_last[active[ug]]
        has_p = (lk > _I64_MIN).astype(np.int64)
        seg_len = q_cnt + has_p
        seg_base = np.cumsum(seg_len) - seg_len
        total = int(seg_len.sum())
        gi = np.repeat(np.arange(len(ug)), q_cnt)
        row0 = seg_base[gi] + has_p[gi]  # element of the group's first row
        pos = row0 + (np.arange(len(Q)) - q_start[gi])
        lo = Q[q_start][gi]  # sorted position of the group's first row
        first_row = row0 + (np.maximum(ws.first[Q], lo) - lo)
        in_win = (has_p[gi] == 1) & (lk[gi] >= ts_s[Q] - W)
        first = np.empty(total, np.int64)
        vals = np.empty(total, np.float64)
        first[pos] = np.where(in_win, seg_base[gi], first_row)
        vals[pos] = pos
        pseudo = seg_base[has_p == 1]
        first[pseudo] = pseudo  # always kept: stands for the earlier kept window
        vals[pseudo] = -1.0
        offsets = np.zeros(len(ug) + 1, np.int64)
        np.cumsum(seg_len, out=offsets[1:])
        out_v = np.empty(total, np.float64)
        out_c = np.empty(len(ug), np.int64)
        k = model_kernels.thin_windows(offsets, first, vals, out_v, out_c)
        kept = out_v[:k]
        kept = kept[kept >= 0].astype(np.int64)
        if len(kept) == 0:
            return
        inv = np.empty(total, np.int64)
        inv[pos] = np.arange(len(Q))
        kq = Q[inv[kept]]
        kg = active[g_s[kq]]
        np.maximum.at(self._warm_last, kg, ts_s[kq])
        cap = self._max_samples
        for g, v in zip(kg.tolist(), ws.sums[kq].tolist(), strict=True):
            samples = self._warm_samples.setdefault(g, [])
            samples.append(v)
            if len(samples) > cap:
                del samples[0]
        self._warm_dirty = True

    def _maybe_refresh(self, wm: int, flushing: bool) -> None:
        if self._given is not None or not self._warm_dirty or flushing:
            return
        if self._last_refresh_wm is None or wm - self._last_refresh_wm >= self._refresh_ns:
            self._refresh_warm()
            self._last_refresh_wm = wm

    def _refresh_warm(self) -> None:
        """Baselines from the warm-up samples, built like ``calibrate``'s
        (time median and MAD of the thinned samples, main desk, peers by
        ``model.baselines.build_baselines``), the own median being the time median."""
        cfg = self._cfg
        d = self._d
        G = self._G
        gids = np.array(sorted(g for g, v in self._warm_samples.items() if v), np.int64)
        counts = np.array([len(self._warm_samples[g]) for g in gids.tolist()], np.int64)
        vals = np.fromiter(
            (x for g in gids.tolist() for x in self._warm_samples[g]), np.float64, int(counts.sum())
        )
        offsets = np.zeros(len(gids) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        med_s, mad_s = group_median_mad(vals, offsets)
        m_t = np.full(G, np.nan)
        mad = np.full(G, np.nan)
        n = np.zeros(G, np.int64)
        m_t[gids], mad[gids], n[gids] = med_s, mad_s, counts
        desk_names = d.desk.values
        group_desk = main_desk_of_counts(self._warm_desk[:G, : len(desk_names)], desk_names)
        self._baselines = build_baselines(
            cfg,
            d.trader.values,
            d.asset_class.values,
            desk_names,
            self._g_trader[:G],
            self._g_ac[:G],
            gids,
            m_t,
            mad,
            n,
            m_t,
            None,
            group_desk,
        )
        self._own_med[:G] = m_t
        self._own_mad[:G] = mad
        self._own_n[:G] = n
        self._own_tm[:G] = m_t
        self._peer_key = None
        self._refresh_tables()
        self._warm_dirty = False

    # -- metrics ----------------------------------------------------------------------------

    def _after(self, update: StreamUpdate, t0: float, n_late_ok: int) -> None:
        update.watermark_ns = self.watermark_ns
        update.seconds = time.perf_counter() - t0
        m = self._metrics
        if m is None:
            return
        label = {"stream": self.name}
        m.counter("surv_stream_trades_total", **label).inc(update.n_accepted)
        m.histogram("surv_stream_push_seconds", **label).observe(update.seconds)
        st = self.stats()
        m.gauge("surv_stream_rows_held", **label).set(st["rows_held"])
        m.gauge("surv_stream_groups", **label).set(st["groups"])
        m.gauge("surv_stream_open_episodes", **label).set(st["open_episodes"])
        if update.watermark_ns is not None:
            m.gauge("surv_stream_watermark_seconds", **label).set(update.watermark_ns / 1e9)
        if n_late_ok:
            m.counter("surv_stream_late_trades_total", outcome="processed", **label).inc(n_late_ok)
        late_q = update.quarantine.counts.get(LATE_TRADE, 0)
        if late_q:
            m.counter("surv_stream_late_trades_total", outcome="quarantined", **label).inc(late_q)
        for reason, count in update.quarantine.counts.items():
            m.counter("surv_records_quarantined_total", desk=self.name, reason=reason).inc(count)
        now = time.time()
        for e in update.events:
            m.counter("surv_stream_alert_events_total", status=e.status, **label).inc()
            if e.status == "open":
                m.counter("surv_alerts_emitted_total", desk=self.name).inc()
                lag = now - e.alert.end_ns / 1e9
                if 0.0 <= lag < 86_400.0:  # live trading; a replay's lag means nothing
                    m.histogram("surv_alert_lag_seconds", desk=self.name).observe(lag)
        if update.suppressed:
            m.counter("surv_alerts_suppressed_total", desk=self.name, reason="within_baseline").inc(
                len(update.suppressed)
            )

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self, *, max_trade_ids: int = CHECKPOINT_MAX_TRADE_IDS) -> bytes:
        """The whole state as sealed msgpack bytes (names, not dictionary
        codes), with ingest's duplicate set if it holds at most
        ``max_trade_ids`` ids, else the held rows' ids (module docstring)."""
        self._check_open()
        G = self._G
        d = self._d
        n_desk = len(d.desk)
        parts = [ch for ch in self._chunks if ch is not None]  # in group order

        def rows(name: str, dtype: str) -> bytes:
            cols = [getattr(ch, name) for ch in parts]
            return (np.concatenate(cols) if cols else np.empty(0)).astype(dtype).tobytes()

        if isinstance(max_trade_ids, bool) or not isinstance(max_trade_ids, (int, np.integer)):
            raise TypeError(f"max_trade_ids must be an int, got {max_trade_ids!r}")
        if max_trade_ids < 0:
            raise ValueError(f"max_trade_ids must be >= 0, got {max_trade_ids}")
        hashes, complete = self._id_hashes(parts, int(max_trade_ids))
        warm_desk = np.zeros((G, n_desk), np.int64)
        k = min(n_desk, self._warm_desk.shape[1])
        warm_desk[:, :k] = self._warm_desk[:G, :k]
        ck = _Checkpoint(
            version=_CHECKPOINT_VERSION,
            config=self._cfg,
            baselines=self._given,
            warm_baselines=self._baselines if self._given is None else None,
            lateness_ns=self._L,
            warmup_refresh_ns=self._refresh_ns,
            max_warmup_samples=self._max_samples,
            name=self.name,
            max_ts=self._max_ts,
            base_frontier=self._base_frontier,
            last_refresh_wm=self._last_refresh_wm,
            n_trades=self._n_trades,
            n_floor_closed=self._n_floor_closed,
            desks=list(d.desk.values),  # desk codes below are positions in this list
            groups=list(
                zip(
                    d.trader.decode(self._g_trader[:G]),
                    d.asset_class.decode(self._g_ac[:G]),
                    strict=True,
                )
            ),
            frontier=self._frontier[:G].astype("<i8").tobytes(),
            due=self._due[:G].astype("<i8").tobytes(),
            alert_chain=self._achain[:G].tobytes(),
            floor_chain=self._fchain[:G].tobytes(),
            alert_first_trade=self._a_first[:G].tolist(),
            alert_trades=self._a_trades[:G].tolist(),
            rows_group=np.repeat(np.arange(G), self._held_n[:G]).astype("<i4").tobytes(),
            rows_ts=rows("ts", "<i8"),
            rows_usd=rows("usd", "<f8"),
            rows_desk=rows("desk", "<i4"),
            rows_trade_id=self._ids.get(np.concatenate([ch.rid for ch in parts])) if parts else [],
            open_episodes=[
                _OpenEpisode(eid, gid, alert) for eid, (gid, alert, _) in self._open.items()
            ],
            warm_last_kept=self._warm_last[:G].astype("<i8").tobytes(),
            warm_samples=[self._warm_samples.get(g, []) for g in range(G)],
            warm_desk_counts=warm_desk.astype("<i8").tobytes(),
            warm_dirty=self._warm_dirty,
            trade_id_hashes=hashes.astype("<u8").tobytes(),
            trade_ids_complete=complete,
        )
        return seal(_CHECKPOINT_KIND, _CHECKPOINT_VERSION, msgspec.msgpack.encode(ck))

    def _id_hashes(self, parts: list[_Rows], max_trade_ids: int) -> tuple[np.ndarray, bool]:
        """The duplicate-set hashes a checkpoint carries, and whether they are
        the whole set."""
        ids: TradeIdSet | None = self._d.trade_ids
        if ids is None:  # nothing was ingested with these dictionaries
            return np.empty(0, np.uint64), self._ids_complete
        if len(ids) <= max_trade_ids:
            return ids.hashes(), self._ids_complete
        # Past the bound: the held rows' ids suffice for never accepting a
        # trade twice (module docstring); hashed exactly as ingest hashes an
        # id (its UTF-8 bytes), so they match the set's entries.
        log.warning(
            "stream %s: the duplicate set holds %d ids, over max_trade_ids=%d; the "
            "checkpoint keeps the %d held rows' ids (older re-deliveries will be "
            "quarantined as late_trade, not duplicate_trade_id)",
            self.name,
            len(ids),
            max_trade_ids,
            self._n_held,
        )
        if not parts:
            return np.empty(0, np.uint64), False
        rid = np.concatenate([ch.rid for ch in parts]).astype(np.int64)
        lo = self._ids.off[rid].astype(np.int64)
        out = np.empty(len(rid), np.uint64)
        fs.hash_spans(self._ids.buf, lo, self._ids.off[rid + 1].astype(np.int64) - lo, out)
        return out, False

    @classmethod
    def restore(
        cls,
        data: bytes,
        *,
        dictionaries: Dictionaries | None = None,
        metrics: Any = _global_metrics,
    ) -> SurveillanceStream:
        """A stream continuing from :meth:`checkpoint` bytes. ``dictionaries``
        may be new (codes are rebuilt from the names in the checkpoint); the
        checkpoint's duplicate-set hashes are added to its ``trade_ids``.

        Raises :class:`~surv_kernel.sealed.SealError` (a ``DataError``, so a
        ``ValueError``) for a damaged checkpoint, one of another kind or
        format, and an unsealed one of format 1.
        """
        data = bytes(data)
        if not is_sealed(data):
            _refuse_unsealed(data)
        payload = unseal(data, _CHECKPOINT_KIND, _CHECKPOINT_VERSION, "stream checkpoint")
        try:
            ck = msgspec.msgpack.decode(payload, type=_Checkpoint)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # the digest matched: written by a buggy or foreign writer, not damaged
            raise SealError(f"stream checkpoint payload does not decode: {exc}") from None
        if ck.version != _CHECKPOINT_VERSION:
            raise SealError(
                f"stream checkpoint version {ck.version}; this code reads {_CHECKPOINT_VERSION}"
            )
        s = cls(
            ck.config,
            ck.baselines,
            lateness_ns=ck.lateness_ns,
            dictionaries=dictionaries,
            metrics=metrics,
            name=ck.name,
            warmup_refresh_ns=ck.warmup_refresh_ns,
            max_warmup_samples=ck.max_warmup_samples,
        )
        d = s._d
        desk_lut = np.array([d.desk.code(x) for x in ck.desks], np.int32)
        G = len(ck.groups)
        if ck.baselines is None and ck.warm_baselines is not None:
            s._baselines = ck.warm_baselines
        s._base_frontier = ck.base_frontier
        if G:
            trader = np.array([d.trader.code(t) for t, _ in ck.groups], np.int32)
            ac = np.array([d.asset_class.code(a) for _, a in ck.groups], np.int32)
            s._refresh_tables()
            gids = s._gids(trader, ac)
            if not np.array_equal(gids, np.arange(G)):
                raise ValueError("checkpoint lists a (trader, asset class) group twice")
            if ck.baselines is None and s._baselines is not None:
                s._resolve_own(gids, force=True)

        def arr(b: bytes, dtype: str) -> np.ndarray:
            return np.frombuffer(b, dtype).astype(dtype[1:], copy=True)

        def chain(b: bytes) -> np.ndarray:
            c = np.frombuffer(b, _CHAIN).copy()
            c["desk"] = np.where(c["desk"] >= 0, desk_lut[np.maximum(c["desk"], 0)], -1)
            return c

        s._frontier[:G] = arr(ck.frontier, "<i8")
        s._due[:G] = arr(ck.due, "<i8")
        s._achain[:G] = chain(ck.alert_chain)
        s._fchain[:G] = chain(ck.floor_chain)
        s._a_first[:G] = np.array(ck.alert_first_trade + [None], object)[:-1]
        trades = np.empty(G, object)
        trades[:] = [None if t is None else list(t) for t in ck.alert_trades]
        s._a_trades[:G] = trades
        gid = arr(ck.rows_group, "<i4")
        ts, usd = arr(ck.rows_ts, "<i8"), arr(ck.rows_usd, "<f8")
        desk = arr(ck.rows_desk, "<i4")
        if not (len(gid) == len(ts) == len(usd) == len(desk) == len(ck.rows_trade_id)):
            raise ValueError("checkpoint rows have columns of different lengths")
        if len(gid) and (gid.min() < 0 or gid.max() >= G or np.any(np.diff(gid) < 0)):
            raise ValueError("checkpoint rows are not in group order")
        if len(desk):
            desk = desk_lut[desk]
        rid = s._ids.append(np.array([*ck.rows_trade_id, None], object)[:-1])
        s._held_n[:G] = np.bincount(gid, minlength=G)[:G]
        chunk = gid // _CHUNK_GROUPS
        for c in np.unique(chunk).tolist():
            a, b = np.searchsorted(chunk, c, "left"), np.searchsorted(chunk, c, "right")
            s._chunks[c] = _Rows(ts[a:b], usd[a:b], desk[a:b], rid[a:b])
        s._n_held = len(gid)
        for ep in ck.open_episodes:
            s._open[ep.episode_id] = (ep.group, ep.alert, msgspec.msgpack.encode(ep.alert))
            s._open_by_group.setdefault(ep.group, set()).add(ep.episode_id)
            s._has_open[ep.group] = True
        s._warm_last[:G] = arr(ck.warm_last_kept, "<i8")
        s._warm_samples = {g: list(v) for g, v in enumerate(ck.warm_samples) if v}
        n_desk_ck = len(ck.desks)
        if G and n_desk_ck:
            counts = arr(ck.warm_desk_counts, "<i8").reshape(G, n_desk_ck)
            need = int(desk_lut.max()) + 1
            if s._warm_desk.shape[1] < need:
                grown = np.zeros((s._warm_desk.shape[0], need), np.int64)
                grown[:, : s._warm_desk.shape[1]] = s._warm_desk
                s._warm_desk = grown
            s._warm_desk[:G][:, desk_lut] = counts
        s._warm_dirty = ck.warm_dirty
        s._max_ts = ck.max_ts
        s._last_refresh_wm = ck.last_refresh_wm
        s._n_trades = ck.n_trades
        s._n_floor_closed = ck.n_floor_closed
        hashes = np.frombuffer(ck.trade_id_hashes, "<u8").astype(np.uint64)
        if len(hashes):
            if d.trade_ids is None:
                d.trade_ids = TradeIdSet(2 * len(hashes))
            d.trade_ids.add_hashes(hashes)
        s._ids_complete = ck.trade_ids_complete
        return s


def _refuse_unsealed(data: bytes) -> None:
    """Raise the right SealError for bytes that are not an envelope."""
    try:
        legacy = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        legacy = None
    if isinstance(legacy, dict) and legacy.get("version") == 1 and "rows_ts" in legacy:
        raise SealError(
            "this is an unsealed stream checkpoint of format 1 (written before checkpoints "
            "carried a SHA-256 and the duplicate trade-id set): it cannot be verified and "
            "restoring it could re-accept trades delivered again, so it is refused. To "
            "proceed, rebuild the state by replaying the day's trades from the start into a "
            "new SurveillanceStream (for `surv-kernel serve`: stop it, move the state "
            "directory aside and start it again; it re-reads the desk files from byte 0)"
        )
    # not an envelope: unseal gives the precise message
    unseal(data, _CHECKPOINT_KIND, _CHECKPOINT_VERSION, "stream checkpoint")


# -- module helpers -----------------------------------------------------------------------


def _event_key(e: AlertEvent) -> tuple[Any, ...]:
    a = e.alert
    return (a.start_ns, a.trader_id, a.asset_class, e.episode_id, _STATUS_RANK[e.status])


class _Ctx:
    """The rows of one step, to read a scored window's trades."""

    __slots__ = ("P", "gP", "ids", "rid_c", "ts_c", "ws")

    def __init__(self, P, gP, ws, ts_c, rid_c, ids: _IdArena) -> None:
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


class _ChainView:
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


class _LocalView:
    """``view[a]`` = ``arr[active[a]]`` (read lazily)."""

    __slots__ = ("active", "arr")

    def __init__(self, arr: np.ndarray, active: np.ndarray) -> None:
        self.arr, self.active = arr, active

    def __getitem__(self, a: int) -> Any:
        return self.arr[self.active[a]]


def _elements(ch: _ChainView, R, gP, tsP, sP, startP, brP) -> _Elements:
    """A chain's elements: the folded state of each group that has one (as a
    pseudo element first in its group: it is older than every row), then the
    chain's rows ``R`` (indices into the scored windows, (group, time) order)."""
    pa, rec = ch.pa, ch.rec
    g = np.concatenate([pa, gP[R]])
    order = np.argsort(g, kind="stable")

    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[order]

    return _Elements(
        g=g[order],
        t=cat(rec["last"], tsP[R]),
        s=cat(rec["s"], sP[R]),
        n=cat(rec["n"], np.ones(len(R), np.int64)),
        start=cat(rec["start"], startP[R]),
        breach=cat(rec["breach"], brP[R]),
        ref=cat(-1 - pa, R.astype(np.int64)),
    )


def _last_per_group(grp: np.ndarray) -> np.ndarray:
    out = np.ones(len(grp), np.bool_)
    if len(grp) > 1:
        out[:-1] = grp[1:] != grp[:-1]
    return out


def _chain_records(ch, E: _Elements, eps: _Episodes, sel, rowpk) -> np.ndarray:
    """Folded states of episodes ``sel``: their extent, and the peak's
    record from the scored windows or from the earlier folded state."""
    pk = E.ref[eps.peak[sel]]
    rec = _empty_chain(len(sel))
    is_row = pk >= 0
    rec[is_row] = rowpk[pk[is_row]]
    rec[~is_row] = ch[-1 - pk[~is_row]]
    rec["active"] = True
    rec["start"] = eps.start[sel]
    rec["last"] = eps.last[sel]
    rec["n"] = eps.n[sel]
    rec["breach"] = eps.breach[sel]
    return rec
