"""What a stream push returns: :class:`AlertEvent` (one step of an alert
episode's lifecycle) and :class:`StreamUpdate`, their order, and the
quarantine reasons the stream adds to ingest's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import dtypes
from ..ingest import Quarantine
from ..model.alerts import Alert, SuppressedEpisode

#: Default lateness allowance: 10 seconds behind the newest trade.
DEFAULT_LATENESS_NS = 10 * dtypes.NS_PER_SECOND

EVENT_STATUSES = ("open", "update", "withdrawn", "closed")
STATUS_RANK = {s: i for i, s in enumerate(EVENT_STATUSES)}

LATE_TRADE = "late_trade"
BAD_NOTIONAL = "bad_notional"
UNKNOWN_ASSET_CLASS = "unknown_asset_class"


class AlertEvent(msgspec.Struct, frozen=True):
    """One step of an alert episode's lifecycle (see :mod:`surv_kernel.stream`)."""

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


def event_key(e: AlertEvent) -> tuple[Any, ...]:
    """Events of a push in (alert start, trader, asset class, episode, status) order."""
    a = e.alert
    return (a.start_ns, a.trader_id, a.asset_class, e.episode_id, STATUS_RANK[e.status])
