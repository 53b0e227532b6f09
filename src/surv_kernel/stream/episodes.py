"""Open alert episodes and their events: what the stream has emitted per
episode id, and the diff of a push's episodes against it (``open``,
``update``, ``closed``, ``withdrawn``; the lifecycle contract is in
:mod:`surv_kernel.stream`)."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from ..model.alerts import Alert
from .records import AlertEvent, StreamUpdate


class OpenEpisodes:
    """The last emitted state of every open alert episode, by id and group,
    and the signature of each as last built (to skip rebuilding unchanged
    ones). ``has_open`` is the stream's per-group flag (``GroupState.has_open``),
    kept in step with :attr:`by_group`."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[int, Alert, bytes]] = {}  # id -> (gid, alert, its msgpack)
        self.by_group: dict[int, set[str]] = {}
        # (gid, start_ns) -> (signature, episode id) of open episodes as last built
        self.view_sig: dict[tuple[int, int], tuple[tuple[Any, ...], str]] = {}
        self.view_key: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.open)

    def alerts(self) -> dict[str, Alert]:
        return {eid: entry[1] for eid, entry in self.open.items()}

    def unchanged(self, key: tuple[int, int], sig: tuple[Any, ...]) -> str | None:
        """The id of the open episode at ``key`` if it was built with ``sig``."""
        cached = self.view_sig.get(key)
        if cached is not None and cached[0] == sig and cached[1] in self.open:
            return cached[1]
        return None

    def built(self, key: tuple[int, int], sig: tuple[Any, ...], eid: str) -> None:
        self.view_sig[key] = (sig, eid)
        self.view_key[eid] = key

    def add(self, eid: str, gid: int, alert: Alert, has_open: np.ndarray) -> None:
        """Record an emitted (or restored) open episode."""
        self.open[eid] = (gid, alert, msgspec.msgpack.encode(alert))
        self.by_group.setdefault(gid, set()).add(eid)
        has_open[gid] = True

    def emit(
        self,
        active: np.ndarray,
        closed: list[tuple[str, int, Alert]],
        view: list[tuple[str, int, Alert | None]],
        update: StreamUpdate,
        has_open: np.ndarray,
    ) -> None:
        """Diff the active groups' episodes against what was emitted
        (``view`` entries with alert None are unchanged open episodes)."""
        events: list[AlertEvent] = []
        prev: set[str] = set()
        for g in active[has_open[active]].tolist():
            prev |= self.by_group.get(g, set())
        seen: set[str] = set()
        for eid, _gid, alert in closed:
            seen.add(eid)
            if eid not in self.open:
                events.append(AlertEvent("open", eid, alert))
            events.append(AlertEvent("closed", eid, alert))
            self.forget(eid, has_open)
        for eid, gid, alert in view:
            seen.add(eid)
            if alert is None:
                continue
            enc = msgspec.msgpack.encode(alert)  # NaN-safe comparison
            entry = self.open.get(eid)
            if entry is None:
                events.append(AlertEvent("open", eid, alert))
            elif entry[2] != enc:
                events.append(AlertEvent("update", eid, alert))
            else:
                continue
            self.open[eid] = (gid, alert, enc)
            self.by_group.setdefault(gid, set()).add(eid)
            has_open[gid] = True
        for eid in sorted(prev - seen):
            gid, old, _ = self.open[eid]
            over = []
            for e, g, a in (*closed, *view):
                a = a if a is not None else self.open[e][1]
                if g == gid and a.start_ns <= old.end_ns and old.start_ns <= a.end_ns:
                    over.append(e)
            events.append(AlertEvent("withdrawn", eid, old, sorted(over)))
            self.forget(eid, has_open)
        update.events.extend(events)

    def forget(self, eid: str, has_open: np.ndarray) -> None:
        key = self.view_key.pop(eid, None)
        if key is not None and self.view_sig.get(key, (None, None))[1] == eid:
            del self.view_sig[key]
        entry = self.open.pop(eid, None)
        if entry is None:
            return
        ids = self.by_group.get(entry[0])
        if ids is not None:
            ids.discard(eid)
            if not ids:
                del self.by_group[entry[0]]
                has_open[entry[0]] = False
