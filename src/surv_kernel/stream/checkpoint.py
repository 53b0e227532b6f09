"""The stream's checkpoint: the sealed format (kind ``"surv_kernel.stream"``,
format 3), writing it from the stream's collaborators and reading it back
into them. See "Checkpoint" and "Duplicate trade ids across a restore" in
:mod:`surv_kernel.stream`.

Format 3 is fixed: the field names, their order and their encodings below
are what checkpoints written by earlier versions hold
(``tests/test_stream_checkpoint_compat.py`` restores one written before the
``stream/`` package split).
"""

from __future__ import annotations

import logging

import msgspec
import numpy as np

from .. import feedscan as fs
from ..batch import Dictionaries
from ..ingest import TradeIdSet
from ..model.alerts import Alert
from ..model.baselines import Baselines
from ..model.config import DetectionConfig
from ..sealed import SealError, is_sealed, seal, unseal
from . import state
from .episodes import OpenEpisodes
from .state import CHAIN, GroupState, Rows
from .warmup import WarmUp

#: Payload format of a checkpoint (1: unsealed, no duplicate set; refused;
#: 2: trade ids as a list of strings).
CHECKPOINT_VERSION = 3
CHECKPOINT_KIND = "surv_kernel.stream"
#: Default bound on the duplicate-set hashes a checkpoint carries (8 bytes
#: each); see "Duplicate trade ids across a restore" in :mod:`surv_kernel.stream`.
CHECKPOINT_MAX_TRADE_IDS = 1 << 22

log = logging.getLogger("surv_kernel.stream")


class OpenEpisode(msgspec.Struct, frozen=True):
    episode_id: str
    group: int  # index into Checkpoint.groups
    alert: Alert


class Checkpoint(msgspec.Struct, frozen=True):
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
    alert_chain: bytes  # CHAIN records per group
    floor_chain: bytes
    alert_first_trade: list[str | None]  # per group (alert chain)
    alert_trades: list[list[str] | None]  # per group: the peak window's trades
    rows_group: bytes  # <i4, held rows
    rows_ts: bytes  # <i8
    rows_usd: bytes  # <f8
    rows_desk: bytes  # <i4 into desks
    rows_trade_id_utf8: bytes  # the held rows' trade ids, UTF-8, concatenated
    rows_trade_id_len: bytes  # <i4: their byte lengths
    open_episodes: list[OpenEpisode]
    warm_last_kept: bytes  # <i8 per group
    warm_samples: list[list[float]]  # per group
    warm_desk_counts: bytes  # <i8, groups x desks
    warm_dirty: bool
    trade_id_hashes: bytes  # <u8: ingest's duplicate set (or the held rows' ids past the bound)
    trade_ids_complete: bool  # False: only the held rows' ids (the bound was passed)


# -- writing ------------------------------------------------------------------------------


def write(
    *,
    cfg: DetectionConfig,
    given: Baselines | None,
    baselines: Baselines | None,
    lateness_ns: int,
    name: str,
    max_ts: int | None,
    n_trades: int,
    n_floor_closed: int,
    d: Dictionaries,
    groups: GroupState,
    warm: WarmUp,
    episodes: OpenEpisodes,
    ids_complete: bool,
    max_trade_ids: int,
) -> bytes:
    """The sealed checkpoint of a stream's state (names, not dictionary
    codes), with ingest's duplicate set if it holds at most
    ``max_trade_ids`` ids, else the held rows' ids."""
    G = groups.G
    n_desk = len(d.desk)
    parts = groups.held()  # in group order

    def rows(name: str, dtype: str) -> bytes:
        cols = [getattr(ch, name) for ch in parts]
        return (np.concatenate(cols) if cols else np.empty(0)).astype(dtype).tobytes()

    hashes, complete = id_hashes(d, groups, parts, ids_complete, name, max_trade_ids)
    ids_utf8, ids_len = (
        groups.ids.utf8(np.concatenate([ch.rid for ch in parts]))
        if parts
        else (b"", np.empty(0, np.int64))
    )
    warm_desk = np.zeros((G, n_desk), np.int64)
    k = min(n_desk, warm.desk.shape[1])
    warm_desk[:, :k] = warm.desk[:G, :k]
    ck = Checkpoint(
        version=CHECKPOINT_VERSION,
        config=cfg,
        baselines=given,
        warm_baselines=baselines if given is None else None,
        lateness_ns=lateness_ns,
        warmup_refresh_ns=warm.refresh_ns,
        max_warmup_samples=warm.max_samples,
        name=name,
        max_ts=max_ts,
        base_frontier=groups.base_frontier,
        last_refresh_wm=warm.last_refresh_wm,
        n_trades=n_trades,
        n_floor_closed=n_floor_closed,
        desks=list(d.desk.values),  # desk codes below are positions in this list
        groups=list(
            zip(
                d.trader.decode(groups.trader[:G]),
                d.asset_class.decode(groups.ac[:G]),
                strict=True,
            )
        ),
        frontier=groups.frontier[:G].astype("<i8").tobytes(),
        due=groups.due[:G].astype("<i8").tobytes(),
        alert_chain=groups.achain[:G].tobytes(),
        floor_chain=groups.fchain[:G].tobytes(),
        alert_first_trade=groups.a_first[:G].tolist(),
        alert_trades=groups.a_trades[:G].tolist(),
        rows_group=np.repeat(np.arange(G), groups.held_n[:G]).astype("<i4").tobytes(),
        rows_ts=rows("ts", "<i8"),
        rows_usd=rows("usd", "<f8"),
        rows_desk=rows("desk", "<i4"),
        rows_trade_id_utf8=ids_utf8,
        rows_trade_id_len=ids_len.astype("<i4").tobytes(),
        open_episodes=[
            OpenEpisode(eid, gid, alert) for eid, (gid, alert, _) in episodes.open.items()
        ],
        warm_last_kept=warm.last[:G].astype("<i8").tobytes(),
        warm_samples=[warm.samples.get(g, []) for g in range(G)],
        warm_desk_counts=warm_desk.astype("<i8").tobytes(),
        warm_dirty=warm.dirty,
        trade_id_hashes=hashes.astype("<u8").tobytes(),
        trade_ids_complete=complete,
    )
    return seal(CHECKPOINT_KIND, CHECKPOINT_VERSION, msgspec.msgpack.encode(ck))


def id_hashes(
    d: Dictionaries,
    groups: GroupState,
    parts: list[Rows],
    ids_complete: bool,
    name: str,
    max_trade_ids: int,
) -> tuple[np.ndarray, bool]:
    """The duplicate-set hashes a checkpoint carries, and whether they are
    the whole set."""
    ids: TradeIdSet | None = d.trade_ids
    if ids is None:  # nothing was ingested with these dictionaries
        return np.empty(0, np.uint64), ids_complete
    if len(ids) <= max_trade_ids:
        return ids.hashes(), ids_complete
    # Past the bound: the held rows' ids suffice for never accepting a
    # trade twice (module docstring); hashed exactly as ingest hashes an
    # id (its UTF-8 bytes), so they match the set's entries.
    log.warning(
        "stream %s: the duplicate set holds %d ids, over max_trade_ids=%d; the "
        "checkpoint keeps the %d held rows' ids (older re-deliveries will be "
        "quarantined as late_trade, not duplicate_trade_id)",
        name,
        len(ids),
        max_trade_ids,
        groups.n_held,
    )
    if not parts:
        return np.empty(0, np.uint64), False
    arena = groups.ids
    rid = np.concatenate([ch.rid for ch in parts]).astype(np.int64)
    lo = arena.off[rid].astype(np.int64)
    out = np.empty(len(rid), np.uint64)
    fs.hash_spans(arena.buf, lo, arena.off[rid + 1].astype(np.int64) - lo, out)
    return out, False


# -- reading ------------------------------------------------------------------------------


def read(data: bytes) -> Checkpoint:
    """The checkpoint in ``data``, verified; a :class:`SealError` otherwise."""
    data = bytes(data)
    if not is_sealed(data):
        refuse_unsealed(data)
    payload = unseal(data, CHECKPOINT_KIND, CHECKPOINT_VERSION, "stream checkpoint")
    try:
        ck = msgspec.msgpack.decode(payload, type=Checkpoint)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # the digest matched: written by a buggy or foreign writer, not damaged
        raise SealError(f"stream checkpoint payload does not decode: {exc}") from None
    if ck.version != CHECKPOINT_VERSION:
        raise SealError(
            f"stream checkpoint version {ck.version}; this code reads {CHECKPOINT_VERSION}"
        )
    return ck


def _arr(b: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(b, dtype).astype(dtype[1:], copy=True)


def restore_groups(groups: GroupState, ck: Checkpoint, desk_lut: np.ndarray) -> None:
    """The per-group arrays and held rows of groups ``0:G`` (already added,
    in the checkpoint's order) from ``ck``; desk codes through ``desk_lut``."""
    G = len(ck.groups)

    def chain(b: bytes) -> np.ndarray:
        c = np.frombuffer(b, CHAIN).copy()
        c["desk"] = np.where(c["desk"] >= 0, desk_lut[np.maximum(c["desk"], 0)], -1)
        return c

    groups.frontier[:G] = _arr(ck.frontier, "<i8")
    groups.due[:G] = _arr(ck.due, "<i8")
    groups.achain[:G] = chain(ck.alert_chain)
    groups.fchain[:G] = chain(ck.floor_chain)
    groups.a_first[:G] = np.array(ck.alert_first_trade + [None], object)[:-1]
    trades = np.empty(G, object)
    trades[:] = [None if t is None else list(t) for t in ck.alert_trades]
    groups.a_trades[:G] = trades
    gid = _arr(ck.rows_group, "<i4")
    ts, usd = _arr(ck.rows_ts, "<i8"), _arr(ck.rows_usd, "<f8")
    desk = _arr(ck.rows_desk, "<i4")
    id_len = _arr(ck.rows_trade_id_len, "<i4").astype(np.int64)
    if not (len(gid) == len(ts) == len(usd) == len(desk) == len(id_len)) or (
        int(id_len.sum()) != len(ck.rows_trade_id_utf8) or (id_len < 0).any()
    ):
        raise SealError("checkpoint rows have columns of different lengths")
    if len(gid) and (gid.min() < 0 or gid.max() >= G or np.any(np.diff(gid) < 0)):
        raise ValueError("checkpoint rows are not in group order")
    if len(desk):
        desk = desk_lut[desk]
    rid = groups.ids.append_utf8(np.frombuffer(ck.rows_trade_id_utf8, np.uint8), id_len)
    groups.held_n[:G] = np.bincount(gid, minlength=G)[:G]
    chunk = gid // state.CHUNK_GROUPS
    for c in np.unique(chunk).tolist():
        a, b = np.searchsorted(chunk, c, "left"), np.searchsorted(chunk, c, "right")
        groups.chunks[c] = Rows(ts[a:b], usd[a:b], desk[a:b], rid[a:b])
    groups.n_held = len(gid)


def restore_warmup(warm: WarmUp, ck: Checkpoint, desk_lut: np.ndarray) -> None:
    G = len(ck.groups)
    warm.last[:G] = _arr(ck.warm_last_kept, "<i8")
    warm.samples = {g: list(v) for g, v in enumerate(ck.warm_samples) if v}
    n_desk_ck = len(ck.desks)
    if G and n_desk_ck:
        counts = _arr(ck.warm_desk_counts, "<i8").reshape(G, n_desk_ck)
        warm.widen_desks(int(desk_lut.max()) + 1)
        warm.desk[:G][:, desk_lut] = counts
    warm.dirty = ck.warm_dirty
    warm.last_refresh_wm = ck.last_refresh_wm


def restore_trade_ids(d: Dictionaries, ck: Checkpoint) -> None:
    """Add the checkpoint's duplicate-set hashes to ``d.trade_ids``."""
    hashes = np.frombuffer(ck.trade_id_hashes, "<u8").astype(np.uint64)
    if len(hashes):
        if d.trade_ids is None:
            d.trade_ids = TradeIdSet(2 * len(hashes))
        d.trade_ids.add_hashes(hashes)


def refuse_unsealed(data: bytes) -> None:
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
    unseal(data, CHECKPOINT_KIND, CHECKPOINT_VERSION, "stream checkpoint")
