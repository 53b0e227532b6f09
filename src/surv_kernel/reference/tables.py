"""Reference tables: FX rates by date and asset-class floors with effective dates.

:class:`ReferenceData` holds both, with the version that identifies them; a
lookup never guesses: a currency, date or asset class without a value gives
NaN (vectorised lookups, so ingest can quarantine the row with the reason)
or raises (:class:`UnknownCurrencyError`, :class:`UnknownAssetClassError`).

Rates are **US dollars per one unit of the currency** (``usd_per_unit``:
EUR 1.08 means 1 EUR = 1.08 USD). A trade converts at its own trading date's
rate (the UTC date of its timestamp); on a date without a published rate
(weekend, holiday) the most recent earlier rate applies if it is at most
``max_rate_age_days`` old (default 4: a Friday rate covers a long weekend),
else the trade has no rate. A floor applies from its ``effective_from`` date
to its ``effective_to`` date (inclusive; open-ended when empty).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SurveillanceError

__all__ = [
    "DAY_NS",
    "FloorPeriod",
    "RateSeries",
    "ReferenceData",
    "ReferenceDataError",
    "UnknownAssetClassError",
    "UnknownCurrencyError",
]

DAY_NS = 86_400 * 1_000_000_000
#: A rate series or floor period without a start applies from the beginning of time.
ALWAYS = np.iinfo(np.int64).min // 2


class ReferenceDataError(SurveillanceError, ValueError):
    """A value is missing from a reference table (FX rates, asset-class floors)."""


class UnknownCurrencyError(ReferenceDataError):
    def __init__(
        self,
        currency: object,
        known: Iterable[str] | None = None,
        table: str = "surv_kernel.reference.FX_RATES_USD",
    ) -> None:
        if known is None:  # the tables in force
            from . import active_reference

            known = active_reference().currencies
        self.currency = currency
        super().__init__(
            f"no FX rate for currency {currency!r}; known: {sorted(known)}. "
            f"Add it to {table} rather than letting it pass as USD."
        )


class UnknownAssetClassError(ReferenceDataError):
    def __init__(
        self,
        asset_class: object,
        known: Iterable[str] | None = None,
        table: str = "surv_kernel.reference.ASSET_CLASS_FLOORS_USD",
    ) -> None:
        if known is None:  # the tables in force
            from . import active_reference

            known = active_reference().asset_classes
        self.asset_class = asset_class
        super().__init__(
            f"no alert floor for asset class {asset_class!r}; known: {sorted(known)}. Unknown "
            f"classes are not exempt from surveillance: add a floor to {table}."
        )


@dataclass(frozen=True)
class RateSeries:
    """One currency's rates: ``days`` (UTC day numbers, ascending) and rates."""

    days: np.ndarray  # int64 days since 1970-01-01
    usd_per_unit: np.ndarray  # float64
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class FloorPeriod:
    floor_usd: float
    first_day: int  # inclusive, ALWAYS for open start
    last_day: int | None  # inclusive, None for open end
    source: str = ""


@dataclass(frozen=True)
class ReferenceData:
    """FX rates by date and floors by period, and their identity.

    ``version`` names the tables (``embedded-1`` for the package's defaults, a
    content hash for files): every run records the version it was made with
    (``summary.json`` and the alert store's run record).
    """

    version: str
    source: str
    rates: Mapping[str, RateSeries]
    floors: Mapping[str, tuple[FloorPeriod, ...]]
    max_rate_age_days: int = 4

    # -- rates --------------------------------------------------------------
    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted(self.rates))

    def usd_per_unit(self, currency: str, days: np.ndarray) -> np.ndarray:
        """The rate of ``currency`` on each UTC day of ``days``; NaN where it
        has none (unknown currency, or no rate within ``max_rate_age_days``)."""
        days = np.asarray(days, np.int64)
        series = self.rates.get(currency)
        out = np.full(days.shape, np.nan)
        if series is None or not len(series.days):
            return out
        i = np.searchsorted(series.days, days, side="right") - 1
        ok = i >= 0
        age = np.where(ok, days - series.days[np.maximum(i, 0)], 0)
        open_start = series.days[0] == ALWAYS and len(series.days) == 1
        ok &= open_start | (age <= self.max_rate_age_days)
        out[ok] = series.usd_per_unit[i[ok]]
        return out

    def rates_for(
        self, currency_names: Sequence[str], currency: np.ndarray, timestamp_ns: np.ndarray
    ) -> np.ndarray:
        """Per row, the rate of its currency (``currency`` codes into
        ``currency_names``) on its trading date (UTC date of ``timestamp_ns``)."""
        currency = np.asarray(currency)
        days = np.asarray(timestamp_ns, np.int64) // DAY_NS
        out = np.full(currency.shape, np.nan)
        for code, name in enumerate(currency_names):
            rows = np.flatnonzero(currency == code)
            if len(rows):
                out[rows] = self.usd_per_unit(name, days[rows])
        return out

    def fx_rate(self, currency: str, day: int | None = None) -> float:
        """USD per unit of ``currency`` on ``day`` (UTC day number; None: its
        latest rate); raises :class:`UnknownCurrencyError`."""
        series = self.rates.get(currency) if isinstance(currency, str) else None
        if series is None or not len(series.days):
            raise UnknownCurrencyError(currency, self.rates, *self._table("fx_rates.csv"))
        if day is None:
            return float(series.usd_per_unit[-1])
        rate = float(self.usd_per_unit(currency, np.array([day]))[0])
        if rate != rate:
            raise ReferenceDataError(
                f"no FX rate for {currency} on day {_iso(day)} (latest rate at most "
                f"{self.max_rate_age_days} days old){self._where()}"
            )
        return rate

    # -- floors -------------------------------------------------------------
    @property
    def asset_classes(self) -> tuple[str, ...]:
        return tuple(sorted(self.floors))

    def floor(self, asset_class: str, day: int | None = None) -> float:
        """The USD floor of ``asset_class`` on ``day`` (None: the latest
        period); raises :class:`UnknownAssetClassError`."""
        periods = self.floors.get(asset_class) if isinstance(asset_class, str) else None
        if not periods:
            raise UnknownAssetClassError(asset_class, self.floors, *self._table("floors.csv"))
        if day is None:
            return periods[-1].floor_usd
        for p in periods:
            if p.first_day <= day and (p.last_day is None or day <= p.last_day):
                return p.floor_usd
        raise ReferenceDataError(
            f"no alert floor for {asset_class!r} in force on {_iso(day)}{self._where()}"
        )

    def floors_between(self, asset_class: str, first_day: int, last_day: int) -> float:
        """The floor in force on every day of ``[first_day, last_day]``; a
        clear error when it changes inside (split the run at that date)."""
        first = self.floor(asset_class, first_day)
        last = self.floor(asset_class, last_day)
        if first != last:
            raise ReferenceDataError(
                f"the {asset_class!r} floor changes between {_iso(first_day)} ({first:g}) and "
                f"{_iso(last_day)} ({last:g}); run each floor period separately"
            )
        return first

    def _where(self) -> str:
        return f" ({self.source})" if self.source else ""

    def _table(self, name: str) -> tuple[str, ...]:
        """Where to add a missing value: the file (tables from a directory),
        or the embedded table's name (the default)."""
        if self.version.startswith("embedded"):
            return ()
        return (f"{self.source}/{name}",)


def _iso(day: int) -> str:
    return str(np.datetime64(int(day), "D"))


def content_version(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return "sha256:" + h.hexdigest()[:16]
