"""Warm-up: baselines learned in-stream when none are given.

As windows become final, :class:`WarmUp` collects each group's thinned
window sums exactly as :func:`~surv_kernel.model.calibrate` thins a history
(disjoint windows), counts every accepted trade per (group, desk) for the
main desk, and, every ``refresh_ns`` of watermark progress, builds
baselines from them with the model's ``build_baselines`` (see "Without
``baselines``" in :mod:`surv_kernel.stream`).
"""

from __future__ import annotations

import numpy as np

from ..batch import Dictionaries
from ..kernels import scoring as model_kernels
from ..model.baselines import Baselines, build_baselines, main_desk_of_counts
from ..model.config import DetectionConfig
from ..windows import group_median_mad
from .state import I64_MIN, GroupState, grow


class WarmUp:
    """The warm-up's samples and counts, per group id (the stream's)."""

    def __init__(self, window_ns: int, refresh_ns: int, max_samples: int) -> None:
        self.W = window_ns
        self.refresh_ns = refresh_ns
        self.max_samples = max_samples
        self.last = np.empty(0, np.int64)  # per group: time of the last kept window
        self.desk = np.zeros((0, 0), np.int64)  # trades per (group, desk code)
        self.samples: dict[int, list[float]] = {}  # per group: thinned window sums
        self.dirty = False  # something changed since the last build
        self.last_refresh_wm: int | None = None

    def add_groups(self, G0: int, G: int, capacity: int) -> None:
        """Room for groups ``G0:G`` (``capacity``: the group arrays' length)."""
        self.last = grow(self.last, G, I64_MIN)
        if self.desk.shape[0] < G:
            rows, cols = self.desk.shape
            grown = np.zeros((capacity, max(cols, 4)), np.int64)
            grown[:rows, :cols] = self.desk
            self.desk = grown
        self.last[G0:G] = I64_MIN

    def widen_desks(self, n_desk: int) -> None:
        if self.desk.shape[1] < n_desk:
            grown = np.zeros((self.desk.shape[0], n_desk), np.int64)
            grown[:, : self.desk.shape[1]] = self.desk
            self.desk = grown

    def count_desks(self, gid: np.ndarray, desk: np.ndarray, n_desk: int) -> None:
        """Main desk per group counts every accepted trade, as calibrate does."""
        if self.desk.shape[1] < n_desk:
            self.widen_desks(max(n_desk, 4))
        np.add.at(self.desk, (gid, desk), 1)
        # a trade whose window is thinned away adds no sample but can still
        # change its group's main desk (hence its peers): rebuild for it too
        self.dirty = True

    def thin(self, ws, ts_c, active, F_act, wm) -> None:
        """Warm-up samples: the windows of rows becoming final (fresh, before
        ``wm``) thinned exactly as ``calibrate`` thins a history: a window is
        kept when the group's last kept window is not inside it. The scan is
        ``model_kernels.thin_windows`` over, per group, a pseudo row for the
        last kept window of earlier pushes followed by these rows; each row's
        "first row of its window" is re-expressed in that layout, and the
        values are positions so the kernel returns which rows it kept."""
        W = self.W
        g_s = np.repeat(np.arange(len(active)), np.diff(ws.group_offsets))
        ts_s = ts_c[ws.order]
        Q = np.flatnonzero((ts_s >= F_act[g_s]) & (ts_s < wm))
        if len(Q) == 0:
            return
        ug, q_start, q_cnt = np.unique(g_s[Q], return_index=True, return_counts=True)
        lk = self.last[active[ug]]
        has_p = (lk > I64_MIN).astype(np.int64)
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
        np.maximum.at(self.last, kg, ts_s[kq])
        cap = self.max_samples
        for g, v in zip(kg.tolist(), ws.sums[kq].tolist(), strict=True):
            samples = self.samples.setdefault(g, [])
            samples.append(v)
            if len(samples) > cap:
                del samples[0]
        self.dirty = True

    def due(self, wm: int, flushing: bool) -> bool:
        """Whether to rebuild the baselines at watermark ``wm`` (and note it)."""
        if not self.dirty or flushing:
            return False
        if self.last_refresh_wm is None or wm - self.last_refresh_wm >= self.refresh_ns:
            self.last_refresh_wm = wm
            return True
        return False

    def build(
        self, cfg: DetectionConfig, d: Dictionaries, groups: GroupState
    ) -> tuple[Baselines, np.ndarray, np.ndarray, np.ndarray]:
        """Baselines from the samples, built like ``calibrate``'s (time median
        and MAD of the thinned samples, main desk, peers by
        ``model.baselines.build_baselines``), the own median being the time
        median; and the per-group time median, MAD and sample count."""
        G = groups.G
        gids = np.array(sorted(g for g, v in self.samples.items() if v), np.int64)
        counts = np.array([len(self.samples[g]) for g in gids.tolist()], np.int64)
        vals = np.fromiter(
            (x for g in gids.tolist() for x in self.samples[g]), np.float64, int(counts.sum())
        )
        offsets = np.zeros(len(gids) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        med_s, mad_s = group_median_mad(vals, offsets)
        m_t = np.full(G, np.nan)
        mad = np.full(G, np.nan)
        n = np.zeros(G, np.int64)
        m_t[gids], mad[gids], n[gids] = med_s, mad_s, counts
        desk_names = d.desk.values
        group_desk = main_desk_of_counts(self.desk[:G, : len(desk_names)], desk_names)
        baselines = build_baselines(
            cfg,
            d.trader.values,
            d.asset_class.values,
            desk_names,
            groups.trader[:G],
            groups.ac[:G],
            gids,
            m_t,
            mad,
            n,
            m_t,
            None,
            group_desk,
        )
        self.dirty = False
        return baselines, m_t, mad, n
