"""The desk feed schema, as msgspec Structs, exactly as feeds arrive.

A feed is a JSON array of trade objects (what the desks' ``_api_call`` returns)
or newline-delimited JSON, one trade object per line. The upstream format is a
black box we cannot change, so the schema mirrors it field for field and
tolerates extra fields (they are ignored, not an error).

Decoding is strict about types (a string notional, an integer trade id or a
``"true"`` flag is a *wrong_type* quarantine, never coerced); JSON integers are
accepted where a float is expected, as any JSON decoder would. Value checks
(positive notional, known currency, sane timestamp, duplicates) happen after
decoding, on columns, in :mod:`surv_kernel.ingest`.
"""

from __future__ import annotations

import msgspec

__all__ = ["FIELDS", "LegacyTrade", "Trade"]


class Trade(msgspec.Struct, gc=False):
    """One trade record of a desk feed.

    ``gc=False``: instances hold only str/float/bool, so they can never be part
    of a reference cycle; untracked Structs decode faster and cost the garbage
    collector nothing when a million of them are alive.
    """

    trade_id: str
    asset_class: str
    #: Amount in ``currency`` units (JSON integer or float).
    notional: float
    #: ISO code, converted to USD at ingest with ``surv_kernel.reference.fx_rate``.
    currency: str
    trader_id: str
    #: Unix epoch seconds (UTC), integer or fractional.
    timestamp: float
    surveillance_required: bool


#: Field names in schema order.
FIELDS: tuple[str, ...] = Trade.__struct_fields__


class LegacyTrade(msgspec.Struct, gc=False):
    """A trade dict as the legacy ``detect_anomalies`` received it.

    The received detector never read ``currency`` or ``surveillance_required``,
    so its callers may omit them: a missing currency is USD (the received
    ``transform_trade`` defaulted it so) and a missing flag is False (the
    received ``SurveillanceProcessor`` did). ``UNSET`` marks the omission so
    ingest can count and log each default; an explicit ``None`` is still a type
    error.
    """

    trade_id: str
    asset_class: str
    notional: float
    trader_id: str
    timestamp: float
    currency: str | msgspec.UnsetType = msgspec.UNSET
    surveillance_required: bool | msgspec.UnsetType = msgspec.UNSET
