"""A slow, obviously-correct decoder of desk feeds, built on ``json.loads``,
for the differential test of :mod:`surv_kernel.ingest`.

It shares no code with ingest: it reads the documented rules (the module
docstring of ``surv_kernel.ingest``) and applies them record by record.
Only the reference *data* is the package's (FX rates, asset classes, limits).

NDJSON records are the non-blank lines (split on ``\\n``; blanks are space,
tab and CR); array records are the elements (given by the caller, which built
the array from their texts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from surv_kernel.ingest import DEFAULT_LIMITS, MAX_NESTING, IngestLimits
from surv_kernel.reference import ASSET_CLASS_FLOORS_USD, FX_RATES_USD

BLANKS = b" \t\r\n"
STR_FIELDS = ("trade_id", "trader_id", "currency", "asset_class")
NUM_FIELDS = ("timestamp", "notional")
FIELDS = ("trade_id", "trader_id", "timestamp", "notional", "currency", "asset_class",
          "surveillance_required")  # fmt: skip


@dataclass(frozen=True)
class Row:
    trade_id: str
    trader_id: str
    timestamp_ns: int
    notional: float
    notional_usd: float
    currency: str
    asset_class: str
    surveillance_required: bool


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ns(seconds: float) -> int:
    # the nearest nanosecond of the float itself (Fraction is exact; round
    # ties to even)
    return round(Fraction(seconds) * 10**9)


def classify(text: bytes, limits: IngestLimits) -> tuple[str | None, Any]:
    """(reason or None, parsed value) of one record's text (blanks stripped)."""
    if len(text) > limits.max_record_bytes:
        return "record_too_large", None
    try:
        value = json.loads(text.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "bad_json", None
    if _depth(value) > MAX_NESTING:
        return "bad_json", None
    if not isinstance(value, dict):
        return "wrong_type", None
    for f in FIELDS:
        if f not in value:
            return "missing_field", value
    for f in FIELDS:
        v = value[f]
        ok = (
            isinstance(v, str)
            if f in STR_FIELDS
            else _is_number(v)
            if f in NUM_FIELDS
            else isinstance(v, bool)
        )
        if not ok:
            return "wrong_type", value
    for f in NUM_FIELDS:  # numbers beyond float range
        if isinstance(value[f], int) and abs(value[f]) > 1.7976931348623157e308:
            return ("bad_timestamp" if f == "timestamp" else "bad_notional"), value
    if value["trade_id"] == "" or value["trader_id"] == "":
        return "empty_id", value
    if value["currency"] not in FX_RATES_USD:
        return "unknown_currency", value
    if value["asset_class"] not in ASSET_CLASS_FLOORS_USD:
        return "unknown_asset_class", value
    x = float(value["notional"])
    if not (x > 0.0 and math.isfinite(x)):
        return "bad_notional", value
    if not (x * FX_RATES_USD[value["currency"]] <= limits.max_notional_usd):
        return "notional_too_large", value
    t = float(value["timestamp"])
    if not (limits.min_timestamp <= t < limits.max_timestamp):
        return "bad_timestamp", value
    return None, value


def decode_records(
    texts: Sequence[bytes], limits: IngestLimits = DEFAULT_LIMITS
) -> tuple[list[Row], list[tuple[int, str]]]:
    """Kept rows and [(position, reason)] for the records' texts, in order."""
    rows: list[Row] = []
    quarantine: list[tuple[int, str]] = []
    accepted: set[str] = set()
    for position, text in enumerate(texts):
        reason, v = classify(text, limits)
        if reason is None and v["trade_id"] in accepted:
            reason = "duplicate_trade_id"
        if reason is not None:
            quarantine.append((position, reason))
            continue
        accepted.add(v["trade_id"])
        x = float(v["notional"])
        rows.append(
            Row(
                v["trade_id"],
                v["trader_id"],
                _ns(float(v["timestamp"])),
                x,
                x * FX_RATES_USD[v["currency"]],
                v["currency"],
                v["asset_class"],
                v["surveillance_required"],
            )
        )
    return rows, quarantine


def ndjson_records(feed: bytes) -> list[bytes]:
    """The non-blank lines of an NDJSON feed, blanks stripped."""
    return [line.strip(BLANKS) for line in feed.split(b"\n") if line.strip(BLANKS)]
