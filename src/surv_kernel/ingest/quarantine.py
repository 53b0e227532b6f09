"""Quarantine reasons, ingest limits and the quarantine itself: what every
reader records about a record it sets aside (see :mod:`surv_kernel.ingest`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import msgspec

from .. import feedscan as fs

log = logging.getLogger("surv_kernel.ingest")  # one logger for the package

# ---------------------------------------------------------------------------
# Reasons
# ---------------------------------------------------------------------------
RECORD_TOO_LARGE = "record_too_large"
BAD_JSON = "bad_json"
TRUNCATED = "truncated"
WRONG_TYPE = "wrong_type"
MISSING_FIELD = "missing_field"
EMPTY_ID = "empty_id"
UNKNOWN_CURRENCY = "unknown_currency"
UNKNOWN_ASSET_CLASS = "unknown_asset_class"
BAD_NOTIONAL = "bad_notional"
NOTIONAL_TOO_LARGE = "notional_too_large"
BAD_TIMESTAMP = "bad_timestamp"
DUPLICATE_TRADE_ID = "duplicate_trade_id"

#: Every quarantine reason.
REASONS: tuple[str, ...] = (
    RECORD_TOO_LARGE,
    BAD_JSON,
    TRUNCATED,
    WRONG_TYPE,
    MISSING_FIELD,
    EMPTY_ID,
    UNKNOWN_CURRENCY,
    UNKNOWN_ASSET_CLASS,
    BAD_NOTIONAL,
    NOTIONAL_TOO_LARGE,
    BAD_TIMESTAMP,
    DUPLICATE_TRADE_ID,
)
#: Deepest nesting of a record (the record object itself is level 1); deeper
#: is ``bad_json``, the same whatever the chunk size or the caller's stack.
MAX_NESTING = 32
#: A quarantine record's ``detail`` is cut to this many characters.
MAX_DETAIL_CHARS = 300


class FeedError(ValueError):
    """A whole feed is unusable: not JSON at all, empty, or over a size limit."""


class IngestLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds applied at ingest (all documented defaults, all adjustable)."""

    #: ``decode_feed`` refuses larger inputs (use ``iter_feed``: it streams).
    max_feed_bytes: int = 1 << 30
    #: A record (array element or NDJSON line) longer than this is quarantined
    #: as ``record_too_large`` and skipped without being buffered whole.
    max_record_bytes: int = 64 << 10
    #: Notionals above this many USD are ``notional_too_large``.
    max_notional_usd: float = 1e12
    #: Accepted timestamps: ``min_timestamp <= t < max_timestamp`` epoch
    #: seconds (defaults 2000-01-01 and 2100-01-01 UTC).
    min_timestamp: float = 946_684_800.0
    max_timestamp: float = 4_102_444_800.0
    #: Bytes of raw text kept per quarantined record.
    raw_bytes: int = 512
    #: Quarantine records kept per Quarantine object; more are only counted.
    max_quarantine_records: int = 100_000

    def __post_init__(self) -> None:
        if self.max_record_bytes < fs.MIN_RECORD_BYTES:
            raise ValueError(
                f"max_record_bytes={self.max_record_bytes} is below the smallest possible "
                f"trade record ({fs.MIN_RECORD_BYTES} bytes)"
            )
        if not 0 <= self.raw_bytes <= self.max_record_bytes:
            raise ValueError(f"raw_bytes must be in [0, max_record_bytes], got {self.raw_bytes}")
        if not self.min_timestamp < self.max_timestamp:
            raise ValueError("min_timestamp must be below max_timestamp")
        if not self.max_notional_usd > 0:
            raise ValueError("max_notional_usd must be positive")
        if self.max_feed_bytes <= 0 or self.max_quarantine_records < 0:
            raise ValueError("max_feed_bytes must be positive, max_quarantine_records >= 0")


DEFAULT_LIMITS = IngestLimits()


# ---------------------------------------------------------------------------
# Quarantine
# ---------------------------------------------------------------------------
class QuarantineRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One record set aside at ingest, and why."""

    desk: str | None
    #: 0-based index of the record in its feed (array element, non-blank
    #: NDJSON line) or in the list given to ``columns_from_dicts``.
    position: int
    reason: str
    #: Human-readable specifics (the offending value, the decoder's message).
    detail: str
    #: The record's text, at most ``IngestLimits.raw_bytes`` bytes (invalid
    #: UTF-8 replaced); for dicts a bounded ``repr``.
    raw: str
    #: Byte offset of the record in the feed (None for dicts).
    offset: int | None = None
    trade_id: str | None = None


class Quarantine(Sequence[QuarantineRecord]):
    """The records set aside by one ingest call (or one chunk), in feed order.

    A sequence of :class:`QuarantineRecord`; ``counts`` has every quarantined
    record by reason (exact even when records were ``dropped`` beyond
    ``max_records``), ``defaulted`` the legacy-dict fields filled with a
    default (``currency`` -> USD, ``surveillance_required`` -> False).
    """

    __slots__ = ("_records", "counts", "defaulted", "dropped", "max_records", "seen")

    def __init__(
        self,
        records: Iterable[QuarantineRecord] = (),
        *,
        max_records: int = DEFAULT_LIMITS.max_quarantine_records,
    ) -> None:
        self._records: list[QuarantineRecord] = []
        self.counts: Counter[str] = Counter()
        self.defaulted: Counter[str] = Counter()
        self.dropped = 0
        self.max_records = max_records
        #: Records the ingest call delimited in its input, kept or quarantined
        #: (the reconciliation's "seen": seen = kept + quarantined, checked).
        self.seen = 0
        for record in records:
            self.add(record)

    def add(self, record: QuarantineRecord) -> None:
        self.counts[record.reason] += 1
        if len(self._records) < self.max_records:
            self._records.append(record)
        else:
            self.dropped += 1

    def extend(self, other: Quarantine) -> None:
        """Append another quarantine's records and counts (e.g. chunks of one feed)."""
        for record in other._records:
            if len(self._records) < self.max_records:
                self._records.append(record)
            else:
                self.dropped += 1
        self.counts.update(other.counts)
        self.defaulted.update(other.defaulted)
        self.dropped += other.dropped
        self.seen += other.seen

    @property
    def total(self) -> int:
        """All quarantined records, kept or dropped."""
        return sum(self.counts.values())

    @overload
    def __getitem__(self, index: int) -> QuarantineRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[QuarantineRecord]: ...
    def __getitem__(self, index: int | slice) -> QuarantineRecord | list[QuarantineRecord]:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[QuarantineRecord]:
        return iter(self._records)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def __repr__(self) -> str:
        return f"<Quarantine {self.total} records {dict(self.counts)}>"


def log_quarantine(q: Quarantine, desk: str | None, what: str) -> None:
    if q.counts:
        log.warning(
            "%s%s: %d record(s) quarantined, not analysed: %s (first positions %s)",
            what,
            "" if desk is None else f" desk {desk!r}",
            q.total,
            dict(q.counts),
            [r.position for r in q[:5]],
        )
    if q.defaulted:
        log.warning(
            "%s%s: legacy defaults applied: %s (missing currency -> USD and missing "
            "surveillance_required -> False, as the received pipeline did)",
            what,
            "" if desk is None else f" desk {desk!r}",
            dict(q.defaulted),
        )
