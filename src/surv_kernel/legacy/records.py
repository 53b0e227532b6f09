"""Per-record helpers behind the legacy ``create_alert`` and ``transform_trade``.

Both received functions changed data they did not own: ``create_alert`` shared
one mutable default ``metadata`` dict between every alert (and stamped
``processed_at`` into it, so all alerts showed the latest time) and shallow-
copied the trade, so nested values stayed aliased with the caller's trade;
``transform_trade`` mutated its input. Here every function returns new objects
and leaves its arguments untouched.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from ..reference import fx_rate


def make_alert(
    trade: Mapping[str, Any],
    flags: Iterable[Any],
    metadata: Mapping[str, Any] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """An alert record: a deep copy of ``trade`` with ``flags`` and ``metadata``.

    ``metadata`` is copied (never stored or modified) and gets ``processed_at``.
    """
    alert = copy.deepcopy(dict(trade))
    alert["flags"] = list(flags)
    meta = copy.deepcopy(dict(metadata)) if metadata is not None else {}
    meta["processed_at"] = clock()
    alert["metadata"] = meta
    return alert


def transform(
    trade: Mapping[str, Any],
    *,
    normalize_notional: bool = False,
    convert_currency: bool = False,
    add_timestamp: bool = False,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """A transformed copy of ``trade``; the input is not modified.

    - ``normalize_notional``: ``notional`` becomes a float (missing -> 0.0 as before).
    - ``convert_currency``: adds ``notional_usd``; an unknown currency raises
      :class:`~surv_kernel.reference.UnknownCurrencyError` instead of passing as USD.
      A missing ``currency`` still means USD, as in the received module.
    - ``add_timestamp``: adds ``processed_at``.
    """
    out = dict(trade)
    if normalize_notional:
        out["notional"] = float(out.get("notional", 0))
    if convert_currency:
        out["notional_usd"] = float(out["notional"]) * fx_rate(out.get("currency", "USD"))
    if add_timestamp:
        out["processed_at"] = clock()
    return out


def load_feeds_as_dicts(feeds: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """Every trade of every feed as one list of dicts (the legacy ``load_trades``).

    A feed is a JSON array of trade objects or newline-delimited JSON. A feed
    that is neither raises :class:`~surv_kernel.ingest.FeedError` naming the
    feed's position. Records are not validated here: the dict path has always
    returned what the desks sent; validation happens in ``columns_from_dicts``
    and ``decode_feed``.
    """
    from ..ingest import FeedError

    trades: list[dict[str, Any]] = []
    for position, feed in enumerate(feeds):
        if isinstance(feed, str):
            feed = feed.encode()
        try:
            decoded = _decode_any(feed)
        except msgspec.DecodeError as exc:
            raise FeedError(f"feed #{position} is not JSON or NDJSON: {exc}") from None
        if not isinstance(decoded, list) or not all(isinstance(t, dict) for t in decoded):
            raise FeedError(f"feed #{position} is not a list of trade objects")
        trades.extend(decoded)
    return trades


def _decode_any(feed: bytes) -> Any:
    stripped = feed.lstrip()
    if stripped[:1] == b"[" or not stripped:
        return msgspec.json.decode(feed) if stripped else []
    return [msgspec.json.decode(line) for line in feed.splitlines() if line.strip()]
