"""Reference data: FX rates and asset-class alert floors.

The received module silently treated an unknown currency as USD (rate 1.0) and
an unknown asset class as "no threshold" (detection off). Both are now errors
that name the value and say where the table lives.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .errors import SurveillanceError

#: US dollars per one unit of the currency, as in the received module.
FX_RATES_USD: Mapping[str, float] = MappingProxyType(
    {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}
)

#: Asset-class alert floors in USD, as in the received module. A window sum is
#: compared with ``floor * threshold_multiplier``.
ASSET_CLASS_FLOORS_USD: Mapping[str, float] = MappingProxyType(
    {"equity": 1_000_000.0, "fixed_income": 5_000_000.0, "derivative": 2_000_000.0}
)


class ReferenceDataError(SurveillanceError, ValueError):
    """A value is missing from a reference table (FX rates, asset-class floors)."""


class UnknownCurrencyError(ReferenceDataError):
    def __init__(self, currency: object) -> None:
        self.currency = currency
        super().__init__(
            f"no FX rate for currency {currency!r}; known: {sorted(FX_RATES_USD)}. "
            "Add it to surv_kernel.reference.FX_RATES_USD rather than letting it pass as USD."
        )


class UnknownAssetClassError(ReferenceDataError):
    def __init__(self, asset_class: object) -> None:
        self.asset_class = asset_class
        super().__init__(
            f"no alert floor for asset class {asset_class!r}; known: "
            f"{sorted(ASSET_CLASS_FLOORS_USD)}. Unknown classes are not exempt from surveillance: "
            "add a floor to surv_kernel.reference.ASSET_CLASS_FLOORS_USD."
        )


def fx_rate(currency: str) -> float:
    """USD per unit of ``currency``; raises :class:`UnknownCurrencyError`."""
    try:
        return FX_RATES_USD[currency]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(currency) from None


def asset_class_floor(asset_class: str) -> float:
    """The USD alert floor of ``asset_class``; raises :class:`UnknownAssetClassError`."""
    try:
        return ASSET_CLASS_FLOORS_USD[asset_class]
    except (KeyError, TypeError):
        raise UnknownAssetClassError(asset_class) from None
