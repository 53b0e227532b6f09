"""Per-trade review processors (the received class hierarchy, repaired).

The received ``SurveillanceProcessor`` subclassed ``EquityProcessor`` only to
reuse ``process()``, and so inherited its meaning ("an equity processor") by
accident: ``isinstance(p, EquityProcessor)`` was true for a processor that
selects on ``surveillance_required`` across every asset class. The shared
template now lives in the base class and each processor states its own
selection rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class TradeProcessor:
    """Selects trades with :meth:`validate` and reviews each with :meth:`_analyze`.

    Subclasses implement ``validate``. ``process`` is the shared template.
    """

    def process(self, trades: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self._analyze(trade) for trade in trades if self.validate(trade)]

    def validate(self, trade: Mapping[str, Any]) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement validate(trade)")

    def _analyze(self, trade: Mapping[str, Any]) -> dict[str, Any]:
        return {"trade_id": trade["trade_id"], "status": "reviewed", "flags": []}


class EquityProcessor(TradeProcessor):
    """Reviews equity trades."""

    def validate(self, trade: Mapping[str, Any]) -> bool:
        return trade.get("asset_class") == "equity"


class SurveillanceProcessor(TradeProcessor):
    """Reviews trades flagged ``surveillance_required``, whatever their asset class."""

    def validate(self, trade: Mapping[str, Any]) -> bool:
        flag = trade.get("surveillance_required", False)
        if not isinstance(flag, bool):
            # A string "false" is truthy: guessing would silently select or
            # drop trades, so a non-boolean flag is a data error.
            raise TypeError(
                f"trade {trade.get('trade_id')!r}: surveillance_required must be a JSON boolean, "
                f"got {flag!r}"
            )
        return flag
