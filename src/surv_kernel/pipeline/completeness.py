"""Is every desk whole, and does every record add up?

Each desk of a run ends ``ok``, ``partial`` or ``failed``:

- ``failed``: nothing of it was analysed (unreachable, not JSON, an error
  answer instead of trades, not a list of records, past its deadline); it is
  in ``RunResult.failures``;
- ``partial``: it was analysed, but it is known to be incomplete: the feed
  ends inside a record or its JSON array is never closed (a ``truncated``
  quarantine record), or its volume is implausibly short against its normal
  day (:mod:`surv_kernel.pipeline.plausibility`, with baselines from history);
  its alerts are real and published, the run still exits 4;
- ``ok``: otherwise.

The reconciliation counts, per desk and per asset class, what came in and
where it went: bytes, records seen (delimited by ingest), parsed (valid
JSON), quarantined by reason, analysed, alerts and suppressed episodes. It
checks conservation - seen = analysed + quarantined for every desk, and the
desks' analysed trades are exactly the rows the detectors were given - and a
break is a :class:`ConservationError` (exit 5), never a log line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError, SurveillanceError
from ..ingest import BAD_JSON, RECORD_TOO_LARGE, TRUNCATED
from .engines import one_line
from .plausibility import VolumeCheck, check_volumes
from .totals import DayTotals

__all__ = [
    "FAILED",
    "OK",
    "PARTIAL",
    "ConservationError",
    "DeskReconciliation",
    "IncompleteFeedError",
    "reconcile",
]

OK, PARTIAL, FAILED = "ok", "partial", "failed"

# quarantine reasons of records that were not even JSON: seen but not parsed
_UNPARSED = (RECORD_TOO_LARGE, BAD_JSON, TRUNCATED)


class IncompleteFeedError(SurveillanceError):
    """A desk was analysed but its feed is known to be incomplete (``partial``)."""


class ConservationError(DataError):
    """Records were lost or invented between ingest and detection: a bug or a
    corrupted run, never a result to publish quietly."""


@dataclass(frozen=True)
class DeskReconciliation:
    """One desk of a run: its outcome and where each of its records went."""

    desk: str
    status: str  # ok, partial, failed
    reasons: tuple[str, ...]  # why partial or failed (empty when ok)
    bytes: int | None
    seen: int
    parsed: int
    quarantined: dict[str, int]
    analysed: int
    alerts: int  # alerts whose home desk this is (each alert counted once)
    suppressed: int  # suppressed episodes of the groups this desk mostly booked
    #: asset class -> {"analysed", "alerts", "suppressed"}
    by_asset_class: dict[str, dict[str, int]] = field(default_factory=dict)
    volume: VolumeCheck | None = None

    @property
    def detector_silent(self) -> bool:
        return self.volume is not None and self.volume.detector_silent

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "desk": self.desk,
            "status": self.status,
            "reasons": list(self.reasons),
            "bytes": self.bytes,
            "seen": self.seen,
            "parsed": self.parsed,
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(self.quarantined),
            "analysed": self.analysed,
            "alerts": self.alerts,
            "suppressed": self.suppressed,
            "by_asset_class": self.by_asset_class,
        }
        if self.volume is not None:
            v = self.volume
            d["volume"] = {
                "records": v.records,
                "expected_records": v.expected_records,
                "notional_usd": v.notional_usd,
                "expected_notional_usd": v.expected_notional_usd,
                "until_utc": v.until_utc,
                "ratio": v.ratio,
                "threshold": v.threshold,
                "judged": v.judged,
                "short": v.short,
                "detector_silent": v.detector_silent,
            }
        return d


def reconcile(
    result: Any,
    *,
    min_ratio: float,
    home_desks: Sequence[str],
) -> list[DeskReconciliation]:
    """Every source of ``result`` (a :class:`~surv_kernel.pipeline.RunResult`)
    reconciled, in the order of the sources; ``home_desks``: each alert's home
    desk. Raises :class:`ConservationError` if the counts do not add up."""
    # the day's aggregates, not its rows: the bounded engine never holds them
    day: DayTotals = result.totals
    det = result.detection
    reads = {r.source.desk: r for r in result.reads}
    failed = {f.desk: f for f in result.failures}
    analysed = sum(r.trades for r in result.reads)
    if analysed != day.n or det.n_trades != day.n:
        raise ConservationError(
            f"the desks' {analysed:,} analysed trades, the run's batch of {day.n:,} rows and "
            f"the detectors' {det.n_trades:,} trades differ: records were lost or invented"
        )
    group_desk = day.group_home_desks()
    names = day.dictionaries
    alerts_by: Counter[tuple[str, str]] = Counter()
    for alert, home in zip(det.alerts, home_desks, strict=True):
        alerts_by[(home, alert.asset_class)] += 1
    supp_by: Counter[tuple[str, str]] = Counter()
    for ep in det.suppressed:
        supp_by[(group_desk.get((ep.trader_id, ep.asset_class), ""), ep.asset_class)] += 1
    analysed_by: dict[str, dict[str, int]] = {}
    for (d, ac), n in day.desk_ac.items():
        analysed_by.setdefault(names.desk[d], {})[names.asset_class[ac]] = n

    volumes: dict[str, VolumeCheck] = {}
    profiles = getattr(result.baselines, "desks", None)  # None without baselines
    if profiles and min_ratio > 0:
        episodes = Counter(home_desks)
        for (desk, _), n in supp_by.items():
            episodes[desk] += n
        for v in check_volumes(
            day, profiles, list(reads), min_ratio=min_ratio, floor_episodes=episodes
        ):
            volumes[v.desk] = v

    out = []
    for source in result.sources:
        desk = source.desk
        if desk in failed:
            f = failed[desk]
            out.append(
                DeskReconciliation(
                    desk,
                    FAILED,
                    (f"{f.kind}: {one_line(f.error)}",),
                    source.size,
                    0,
                    0,
                    {},
                    0,
                    0,
                    0,
                )
            )
            continue
        read = reads[desk]
        q = read.quarantine
        if q.seen != read.trades + q.total:
            raise ConservationError(
                f"desk {desk!r}: ingest saw {q.seen:,} records but kept {read.trades:,} and "
                f"quarantined {q.total:,}: records were lost or invented"
            )
        reasons = []
        if q.counts.get(TRUNCATED):
            reasons.append(
                "truncated: the feed ends inside a record or its JSON array is never closed: "
                "trades after the cut are missing"
            )
        volume = volumes.get(desk)
        if volume is not None and volume.short:
            reasons.append(f"implausibly short: {volume.line()}")
        acs = sorted(
            set(analysed_by.get(desk, {}))
            | {ac for (d, ac) in alerts_by if d == desk}
            | {ac for (d, ac) in supp_by if d == desk}
        )
        by_ac = {
            ac: {
                "analysed": analysed_by.get(desk, {}).get(ac, 0),
                "alerts": alerts_by[(desk, ac)],
                "suppressed": supp_by[(desk, ac)],
            }
            for ac in acs
        }
        out.append(
            DeskReconciliation(
                desk=desk,
                status=PARTIAL if reasons else OK,
                reasons=tuple(reasons),
                bytes=source.size,
                seen=q.seen,
                parsed=q.seen - sum(q.counts.get(r, 0) for r in _UNPARSED),
                quarantined=dict(q.counts.most_common()),
                analysed=read.trades,
                alerts=sum(v["alerts"] for v in by_ac.values()),
                suppressed=sum(v["suppressed"] for v in by_ac.values()),
                by_asset_class=by_ac,
                volume=volume,
            )
        )
    return out
