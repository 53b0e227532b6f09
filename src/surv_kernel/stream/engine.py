"""The stream itself: :class:`SurveillanceStream` takes pushes, accepts or
quarantines their rows, and recomputes the groups they need, block by
block, with the model's window statistics, floor scan and breach test.

It holds the configuration, the clock (newest timestamp, watermark) and the
reference tables, and delegates the rest: the per-group arrays and held
rows to :class:`~.state.GroupState`, the episodes of a push to
:mod:`.chains`, what was emitted to :class:`~.episodes.OpenEpisodes`, the
warm-up to :class:`~.warmup.WarmUp` and the checkpoint format to
:mod:`.checkpoint`. The contract (watermark, lateness, lifecycle,
equivalence with batch detection) is in :mod:`surv_kernel.stream`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..batch import Dictionaries, TradeBatch
from ..errors import ConfigError
from ..ingest import Quarantine, QuarantineRecord, decode_feed
from ..kernels import scoring as model_kernels
from ..model.alerts import (
    Alert,
    Explanation,
    SuppressedEpisode,
    episode_alert,
    episode_explanation,
    episode_suppressed,
)
from ..model.baselines import FLOOR_ONLY, Baselines, CodeBaselines, resolve_baselines
from ..model.config import DetectionConfig, check_baselines, resolve_config
from ..model.profiles import N_BUCKETS
from ..model.scoring import score_windows
from ..observability import metrics as _global_metrics
from ..reference import UnknownAssetClassError, asset_class_floor
from ..windows import window_stats
from . import checkpoint as ckpt
from . import state
from .chains import (
    ChainView,
    Episodes,
    LocalView,
    StepRows,
    chain_records,
    elements,
    last_per_group,
)
from .checkpoint import CHECKPOINT_MAX_TRADE_IDS
from .episodes import OpenEpisodes
from .records import (
    BAD_NOTIONAL,
    DEFAULT_LATENESS_NS,
    LATE_TRADE,
    UNKNOWN_ASSET_CLASS,
    StreamUpdate,
    event_key,
)
from .state import (
    I64_MAX,
    MAX_SPAN,
    MAX_TS,
    NEVER,
    GroupState,
    New,
    concat_ranges,
    empty_chain,
    empty_new,
)
from .warmup import WarmUp


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
        if cfg.time_of_day:
            # the stream's peak records (and so its checkpoints) carry no
            # time-of-day factor yet: refuse rather than drift from batch
            raise ConfigError(
                "DetectionConfig.time_of_day is batch-only for now: the stream scores with "
                "factor 1; run the stream with time_of_day=false"
            )
        if isinstance(lateness_ns, bool) or not isinstance(lateness_ns, (int, np.integer)):
            raise TypeError(
                f"lateness_ns must be an integer number of nanoseconds, got {lateness_ns!r}"
            )
        if not 0 <= lateness_ns <= MAX_SPAN:
            raise ValueError(f"lateness_ns must be in [0, 2**60], got {lateness_ns}")
        if cfg.window_ns > MAX_SPAN:
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
        refresh_ns = self._W if warmup_refresh_ns is None else int(warmup_refresh_ns)
        if refresh_ns < 0:
            raise ValueError(f"warmup_refresh_ns must be >= 0, got {warmup_refresh_ns}")
        self._closed = False
        # False after restoring a checkpoint that kept only the held rows' ids
        self._ids_complete = True
        self._luts: dict[int, _Luts] = {}
        # time
        self._max_ts: int | None = None
        self._n_trades = 0
        self._n_floor_closed = 0
        # the collaborators: per-group arrays and held rows, the warm-up's
        # samples, the open alert episodes
        self._groups = GroupState()
        self._warm = WarmUp(self._W, refresh_ns, int(max_warmup_samples))
        self._episodes = OpenEpisodes()
        # reference tables by code
        self._ac_floor = np.empty(0)
        self._peer_key: tuple[Any, ...] | None = None
        self._peers: tuple[np.ndarray, ...] = ()
        self._n_ac = 1

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
        return self._episodes.alerts()

    def oldest_held_ns(self) -> int | None:
        """Timestamp of the oldest row held (None when none is); O(rows held).
        Every held row is context of a window that is not final yet."""
        return self._groups.oldest_held_ns()

    def stats(self) -> dict[str, int | None]:
        """State size: held rows, groups holding rows or an open episode,
        open episodes (alert and floor chains, and open alert events)."""
        G = self._groups.G
        return {
            "rows_held": self._groups.n_held,
            "groups": int(np.count_nonzero(self._groups.busy())),
            "groups_known": G,
            "open_episodes": len(self._episodes),
            "open_chain_states": int(
                np.count_nonzero(self._groups.achain["active"][:G])
                + np.count_nonzero(self._groups.fchain["active"][:G])
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
        if not -MAX_TS <= now_ns <= MAX_TS:
            raise ValueError(f"now_ns out of range: {now_ns}")
        self._max_ts = now_ns if self._max_ts is None else max(self._max_ts, now_ns)
        update = StreamUpdate()
        self._step(empty_new(), self._max_ts - self._L, update)
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
            self._step(empty_new(), I64_MAX, update, flushing=True)
            self._groups.base_frontier = self._max_ts + 1
            self._groups.frontier[: self._groups.G] = self._groups.base_frontier
            if self._given is None and self._warm.dirty:
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

    # -- acceptance ---------------------------------------------------------------------------

    def _codes(self, batch: TradeBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if batch.dictionaries is self._d:
            return batch.trader, batch.asset_class, batch.desk
        luts = self._luts.get(id(batch.dictionaries))
        if luts is None or luts.source is not batch.dictionaries:
            luts = self._luts[id(batch.dictionaries)] = _Luts(batch.dictionaries)
        luts.update(self._d)
        return luts.trader[batch.trader], luts.asset_class[batch.asset_class], luts.desk[batch.desk]

    def _accept(self, batch: TradeBatch) -> tuple[New, Quarantine, int]:
        q = Quarantine()
        n = len(batch)
        if n == 0:
            return empty_new(), q, 0
        trader, ac, desk = self._codes(batch)
        self._refresh_tables()
        ts = batch.timestamp_ns
        usd = batch.notional_usd
        bad_value = ~np.isfinite(usd)
        bad_ts = (ts < -MAX_TS) | (ts > MAX_TS)  # keeps ts +- W and watermarks in int64
        unknown = np.isnan(self._ac_floor[ac])
        ok = ~(bad_value | bad_ts | unknown)
        rows = np.flatnonzero(ok)
        gid = self._gids(trader[rows], ac[rows])
        late = ts[rows] < self._groups.frontier[gid]
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
            self._warm.count_desks(gid, desk[rows], len(self._d.desk))
        new = New(
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
        fr = self._groups.frontier[gid]
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
                    np.ones((n_desk, N_BUCKETS)),  # no time-of-day scaling (refused above)
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
        groups = self._groups
        G0 = groups.G
        gid = groups.lookup(trader, ac, len(self._d.trader), len(self._d.asset_class))
        if groups.G > G0:
            self._warm.add_groups(G0, groups.G, len(groups.ac))
            self._resolve_own(np.arange(G0, groups.G))
        return gid

    def _resolve_own(self, gids: np.ndarray, force: bool = False) -> None:
        """Own baselines of these groups from ``self._baselines`` (by name)."""
        if len(gids) == 0:
            return
        if self._given is None and not force:
            # warm-up: a new group has no samples; _refresh_warm sets every group
            self._groups.own_med[gids] = np.nan
            self._groups.own_mad[gids] = np.nan
            self._groups.own_n[gids] = 0
            self._groups.own_tm[gids] = np.nan
            return
        tcodes, local = np.unique(self._groups.trader[gids], return_inverse=True)
        cb = self._resolve(self._d.trader.decode(tcodes))
        pos = local * max(len(self._d.asset_class), 1) + self._groups.ac[gids]
        self._groups.own_med[gids] = cb.median[pos]
        self._groups.own_mad[gids] = cb.mad[pos]
        self._groups.own_n[gids] = cb.n[pos]
        self._groups.own_tm[gids] = cb.time_median[pos]

    # -- one step: recompute the active groups --------------------------------------------

    def _step(self, new: New, wm: int, update: StreamUpdate, flushing: bool = False) -> None:
        """Fold ``new`` into the state with the watermark at ``wm``.

        Groups to recompute: those the rows touch, those with an episode the
        watermark closes (``due``), and those idle for more than a window
        (their rows and episodes are swept). The chunks holding them are
        recomputed block by block (a block: consecutive chunks up to
        ``state.BLOCK_ROWS`` rows, so the temporaries stay bounded whatever the
        number of rows held), see :meth:`_step_block`.
        """
        W = self._W
        G = self._groups.G
        self._refresh_tables()
        horizon = wm - W  # rows before this are no window's context any more
        touched = np.unique(new.gid).astype(np.int64)
        due = np.flatnonzero(self._groups.due[:G] < wm)
        idle = np.flatnonzero((self._groups.held_n[:G] > 0) & (self._groups.frontier[:G] < horizon))
        need = np.union1d(np.union1d(touched, due), idle)
        if len(need):
            CG = state.CHUNK_GROUPS
            chunks = np.unique(need // CG)
            n_chunks = (G + CG - 1) // CG
            rows = np.bincount(
                np.arange(G) // CG, weights=self._groups.held_n[:G], minlength=n_chunks
            ) + np.bincount(new.gid // CG, minlength=n_chunks)
            # new rows by chunk; stable, so a group's rows keep arrival order
            nc = new.gid.astype(np.int64) // CG
            norder = np.argsort(nc, kind="stable")
            nc = nc[norder]
            blocks: list[list[int]] = [[]]
            size = 0.0
            for c in chunks.tolist():
                if size >= state.BLOCK_ROWS:
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
                    chunk_ids, New(*(col[sel] for col in new)), wm, horizon, update
                )
                self._groups.store_block(chunk_ids, horizon, *rows_c, len(self._d.desk))
            self._groups.compact_ids()
        update.events.sort(key=event_key)
        update.suppressed.sort(key=lambda e: (e.start_ns, e.trader_id, e.asset_class))
        self._maybe_refresh(wm, flushing)

    def _recompute_block(
        self, chunk_ids: np.ndarray, new: New, wm: int, horizon: int, update: StreamUpdate
    ) -> tuple[np.ndarray, ...]:
        """Recompute the groups of these chunks that hold rows, get new rows
        or have an open episode: their held rows plus the new rows go through
        one ``window_stats`` call; every floor-passing window at or after its
        group's frontier is (re)scored; both chains are rebuilt from their
        folded state plus those windows; windows before ``wm`` are folded.
        Returns the rows and their (group, time) order for
        :meth:`_store_block`."""
        W = self._W
        G = self._groups.G
        cfg = self._cfg
        CG = state.CHUNK_GROUPS
        gids = concat_ranges(chunk_ids * CG, np.minimum(chunk_ids * CG + CG, G))
        hn = self._groups.held_n[gids]
        parts = [self._groups.chunks[c] for c in chunk_ids.tolist()]
        parts = [p for p in parts if p is not None]
        has_new = np.zeros(len(gids), np.bool_)
        has_new[np.searchsorted(gids, new.gid)] = True
        involved = (
            (hn > 0)
            | has_new
            | self._groups.achain["active"][gids]
            | self._groups.fchain["active"][gids]
            | (self._groups.due[gids] < NEVER)  # open episodes (emitted or not) have a due time
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
        rid_c = np.concatenate([*(p.rid for p in parts), self._groups.ids.append(new.tid)])
        del parts
        ws = window_stats(local[gid_c], ts_c, usd_c, W, n_act)
        o = ws.order
        n = len(o)
        F_act = self._groups.frontier[active]
        ac_act = self._groups.ac[active].astype(np.int64)
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
            self._warm.thin(ws, ts_c, active, F_act, wm)

        ctx = StepRows(P, gP, ws, ts_c, rid_c, self._groups.ids)
        sP = ws.sums[P]
        startP = ts_c[o[ws.first[P]]]
        static = cfg.policy == "static"
        due_local = np.full(n_act, NEVER, np.int64)

        # alert chain: breaching windows (every floor-passing one if static)
        ach = ChainView(self._groups.achain, active)
        old_first = LocalView(self._groups.a_first, active)  # read before the writes below
        old_trades = LocalView(self._groups.a_trades, active)
        R = np.arange(len(P)) if static else np.flatnonzero(breach)
        aE = elements(ach, R, gP, tsP, sP, startP, breach)
        a_all = aE.episodes(None, W, ctx.row_trade)
        a_fin = aE.episodes(aE.t < wm, W, ctx.row_trade)
        a_closed = a_fin.last < horizon
        a_open = ~(a_all.last < horizon)
        np.minimum.at(due_local, a_all.grp[a_open], a_all.last[a_open] + W)

        def alert_of(eps: Episodes, j: int) -> tuple[str, int, Alert]:
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
            unchanged = self._episodes.unchanged(key, sig)
            if unchanged is not None:
                view.append((unchanged, key[0], None))
                continue
            entry = alert_of(a_all, j)
            self._episodes.built(key, sig, entry[0])
            view.append(entry)
        keep = last_per_group(a_fin.grp) & ~a_closed
        sel = np.flatnonzero(keep)
        recs = chain_records(ach, aE, a_fin, sel, rowpk)
        firsts, trades_of = [], []
        for j in sel.tolist():
            a = int(a_fin.grp[j])
            fr, pr = int(aE.ref[a_fin.first[j]]), int(aE.ref[a_fin.peak[j]])
            firsts.append(old_first[a] if fr < 0 else ctx.first_trade(fr))
            trades_of.append(old_trades[a] if pr < 0 else ctx.trades(pr))
        ach.clear(self._groups.a_first, self._groups.a_trades)
        kept_g = active[a_fin.grp[sel]]
        self._groups.achain[kept_g] = recs
        for g, first_tid, trades in zip(kept_g.tolist(), firsts, trades_of, strict=True):
            self._groups.a_first[g] = first_tid
            self._groups.a_trades[g] = trades

        # floor chain: floor-passing windows, for the suppression report
        n_floor_closed = int(np.count_nonzero(a_closed)) if static else 0
        if not static:
            fch = ChainView(self._groups.fchain, active)
            fE = elements(fch, np.arange(len(P)), gP, tsP, sP, startP, breach)
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
            sel = np.flatnonzero(last_per_group(f_fin.grp) & ~f_closed)
            recs = chain_records(fch, fE, f_fin, sel, rowpk)
            fch.clear()
            self._groups.fchain[active[f_fin.grp[sel]]] = recs
        self._n_floor_closed += n_floor_closed

        self._episodes.emit(active, closed, view, update, self._groups.has_open)
        self._groups.due[active] = due_local
        self._groups.frontier[active] = wm

        return active, o, ws.group_offsets, gid_c, ts_c, usd_c, desk_c, rid_c

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
        g_med[pos] = self._groups.own_med[active]
        g_mad[pos] = self._groups.own_mad[active]
        g_n[pos] = self._groups.own_n[active]
        g_tm[pos] = self._groups.own_tm[active]
        sums = ws.sums[P]
        own = CodeBaselines(g_med, g_mad, g_n, g_tm, *self._peers)
        scored = score_windows(sums, layout, ws.order[P], desk_c, tsP, own, n_ac, cfg)
        rec = empty_chain(len(P))
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
        ):
            rec[name] = col
        return rec, scored.breach

    # -- records ---------------------------------------------------------------------------

    def _explanation(self, gid: int, pk: np.void, n: int) -> Explanation:
        dk = int(pk["desk"])
        return episode_explanation(
            self._cfg,
            float(pk["s"]),
            float(self._ac_floor[self._groups.ac[gid]]),
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
        )

    def _alert(
        self, gid: int, start: int, first_tid: str, end: int, n: int, pk: np.void, trades: list
    ) -> tuple[str, int, Alert]:
        """(episode_id, gid, the model's Alert) for one episode."""
        alert = episode_alert(
            self._cfg,
            self._d.trader[self._groups.trader[gid]],
            self._d.asset_class[self._groups.ac[gid]],
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
            self._d.trader[self._groups.trader[gid]],
            self._d.asset_class[self._groups.ac[gid]],
            start,
            end,
            int(pk["pk_ns"]),
            int(pk["count"]),
            self._explanation(gid, pk, n),
        )

    def _maybe_refresh(self, wm: int, flushing: bool) -> None:
        if self._given is None and self._warm.due(wm, flushing):
            self._refresh_warm()

    def _refresh_warm(self) -> None:
        """Baselines from the warm-up samples (:meth:`WarmUp.build`), and the
        groups' own baselines with them."""
        groups = self._groups
        G = groups.G
        self._baselines, m_t, mad, n = self._warm.build(self._cfg, self._d, groups)
        groups.own_med[:G] = m_t
        groups.own_mad[:G] = mad
        groups.own_n[:G] = n
        groups.own_tm[:G] = m_t
        self._peer_key = None
        self._refresh_tables()

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
        stats = self.stats()
        m.gauge("surv_stream_rows_held", **label).set(stats["rows_held"])
        m.gauge("surv_stream_groups", **label).set(stats["groups"])
        m.gauge("surv_stream_open_episodes", **label).set(stats["open_episodes"])
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
        if isinstance(max_trade_ids, bool) or not isinstance(max_trade_ids, (int, np.integer)):
            raise TypeError(f"max_trade_ids must be an int, got {max_trade_ids!r}")
        if max_trade_ids < 0:
            raise ValueError(f"max_trade_ids must be >= 0, got {max_trade_ids}")
        return ckpt.write(
            cfg=self._cfg,
            given=self._given,
            baselines=self._baselines,
            lateness_ns=self._L,
            name=self.name,
            max_ts=self._max_ts,
            n_trades=self._n_trades,
            n_floor_closed=self._n_floor_closed,
            d=self._d,
            groups=self._groups,
            warm=self._warm,
            episodes=self._episodes,
            ids_complete=self._ids_complete,
            max_trade_ids=int(max_trade_ids),
        )

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
        ck = ckpt.read(data)
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
        s._restore(ck)
        return s

    def _restore(self, ck: ckpt.Checkpoint) -> None:
        d = self._d
        desk_lut = np.array([d.desk.code(x) for x in ck.desks], np.int32)
        G = len(ck.groups)
        if ck.baselines is None and ck.warm_baselines is not None:
            self._baselines = ck.warm_baselines
        self._groups.base_frontier = ck.base_frontier
        if G:
            trader = np.array([d.trader.code(t) for t, _ in ck.groups], np.int32)
            ac = np.array([d.asset_class.code(a) for _, a in ck.groups], np.int32)
            self._refresh_tables()
            gids = self._gids(trader, ac)
            if not np.array_equal(gids, np.arange(G)):
                raise ValueError("checkpoint lists a (trader, asset class) group twice")
            if ck.baselines is None and self._baselines is not None:
                self._resolve_own(gids, force=True)
        ckpt.restore_groups(self._groups, ck, desk_lut)
        for ep in ck.open_episodes:
            self._episodes.add(ep.episode_id, ep.group, ep.alert, self._groups.has_open)
        ckpt.restore_warmup(self._warm, ck, desk_lut)
        self._max_ts = ck.max_ts
        self._n_trades = ck.n_trades
        self._n_floor_closed = ck.n_floor_closed
        ckpt.restore_trade_ids(d, ck)
        self._ids_complete = ck.trade_ids_complete
