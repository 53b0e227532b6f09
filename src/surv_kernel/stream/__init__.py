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
(``state.CHUNK_GROUPS``). A push recomputes the chunks holding a group the
batch touches, a group with an episode due to close, or a group idle for
a window, in blocks of about ``state.BLOCK_ROWS`` rows (bounded temporaries):
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


Layout
------
``records`` (AlertEvent, StreamUpdate), ``state`` (per-group arrays, held
rows, the trade id arena), ``chains`` (a push's episode chains),
``episodes`` (open episodes and their events), ``warmup``, ``checkpoint``
(format 3) and ``engine`` (:class:`SurveillanceStream`, delegating to them).
"""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

from ..sealed import SealError
from ..windows import window_stats
from . import engine, state
from .checkpoint import CHECKPOINT_MAX_TRADE_IDS
from .engine import SurveillanceStream
from .records import (
    BAD_NOTIONAL,
    DEFAULT_LATENESS_NS,
    EVENT_STATUSES,
    LATE_TRADE,
    UNKNOWN_ASSET_CLASS,
    AlertEvent,
    StreamUpdate,
)
from .state import BLOCK_ROWS as _BLOCK_ROWS  # noqa: F401
from .state import CHUNK_GROUPS as _CHUNK_GROUPS  # noqa: F401
from .state import ID_MARGIN as _ID_MARGIN  # noqa: F401
from .state import IdArena as _IdArena  # noqa: F401

__all__ = [
    "BAD_NOTIONAL",
    "CHECKPOINT_MAX_TRADE_IDS",
    "DEFAULT_LATENESS_NS",
    "EVENT_STATUSES",
    "LATE_TRADE",
    "UNKNOWN_ASSET_CLASS",
    "AlertEvent",
    "SealError",
    "StreamUpdate",
    "SurveillanceStream",
    "window_stats",
]

log = logging.getLogger(__name__)  # the logger checkpoint.py warns on

#: Names of the single-module stream that tests set (``monkeypatch.setattr(
#: surv_kernel.stream, "_CHUNK_GROUPS", 3)``) to exercise small chunks and
#: blocks: setting one here sets it where the code reads it.
_FORWARDED = {
    "_CHUNK_GROUPS": (state, "CHUNK_GROUPS"),
    "_BLOCK_ROWS": (state, "BLOCK_ROWS"),
    "_ID_MARGIN": (state, "ID_MARGIN"),
    "window_stats": (engine, "window_stats"),
}


class _StreamPackage(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        target = _FORWARDED.get(name)
        if target is not None:
            setattr(*target, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _StreamPackage
