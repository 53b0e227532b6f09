"""Reference data from files: the format, the loader and ``reference check``.

A reference directory holds two CSV files (UTF-8, a header row, ``#``
comment lines allowed):

``fx_rates.csv``
    ``date,currency,usd_per_unit[,source]``: one row per currency and
    publication date (ISO ``YYYY-MM-DD``); ``usd_per_unit`` is US dollars per
    one unit of the currency (EUR 1.08 = 1 EUR buys 1.08 USD). USD itself may
    be omitted (it is 1). Example row: ``2024-03-14,EUR,1.0893,ECB``.
``floors.csv``
    ``asset_class,floor_usd,effective_from[,effective_to][,source]``: the
    alert floor of an asset class from ``effective_from`` to ``effective_to``
    (inclusive; empty: open-ended), e.g. ``equity,1000000,2024-01-01,,policy
    2024-07``. Periods of one class must not overlap.

The tables' version is a hash of both files' bytes (``sha256:...``): change
a value and every alert made with the new tables names a new version.
:func:`check_reference` validates a directory the way ``surv-kernel
reference check PATH`` reports it: ISO 4217 codes, positive finite rates, no
gaps on business days (Monday to Friday) between a currency's first and last
rates, no duplicate rows, no overlapping floor periods.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError
from .tables import ALWAYS, FloorPeriod, RateSeries, ReferenceData, content_version

__all__ = ["FLOORS_FILE", "FX_FILE", "ISO_4217", "check_reference", "load_reference"]

FX_FILE = "fx_rates.csv"
FLOORS_FILE = "floors.csv"

#: Active ISO 4217 alphabetic codes (2024), for ``reference check``.
ISO_4217 = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWL",
    ]
)


def _day(text: str, where: str) -> int:
    try:
        return int(np.datetime64(text.strip(), "D").astype(np.int64))
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None


def _rows(data: bytes, path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the header must have {list(required)}"
        )
    return [
        (i + 2, {k: (v or "").strip() for k, v in row.items() if k}) for i, row in enumerate(reader)
    ]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found (a reference directory holds {FX_FILE} and {FLOORS_FILE})"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def load_reference(
    path: str | os.PathLike[str], *, max_rate_age_days: int = 4, check: bool = True
) -> ReferenceData:
    """The reference tables of a directory (see the module docstring); with
    ``check`` every problem :func:`check_reference` finds is refused."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"{root}: not a directory (a reference directory holds {FX_FILE} and {FLOORS_FILE})"
        )
    if check:
        problems = check_reference(root)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DataError(
                f"{root}: {problems[0]}{more}; see 'surv-kernel reference check {root}'"
            )
    fx_bytes, floor_bytes = _read(root / FX_FILE), _read(root / FLOORS_FILE)
    by_ccy: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    for line, row in _rows(fx_bytes, root / FX_FILE, ("date", "currency", "usd_per_unit")):
        where = f"{root / FX_FILE}:{line}"
        try:
            rate = float(row["usd_per_unit"])
        except ValueError:
            raise DataError(
                f"{where}: usd_per_unit {row['usd_per_unit']!r} is not a number"
            ) from None
        by_ccy[row["currency"]].append((_day(row["date"], where), rate, row.get("source", "")))
    rates = {}
    for ccy, items in by_ccy.items():
        items.sort()
        rates[ccy] = RateSeries(
            np.array([d for d, _, _ in items], np.int64),
            np.array([r for _, r, _ in items], np.float64),
            tuple(sorted({s for _, _, s in items if s})),
        )
    if "USD" not in rates:
        rates["USD"] = RateSeries(np.array([ALWAYS], np.int64), np.array([1.0]), ("identity",))
    floors: dict[str, list[FloorPeriod]] = defaultdict(list)
    for line, row in _rows(
        floor_bytes, root / FLOORS_FILE, ("asset_class", "floor_usd", "effective_from")
    ):
        where = f"{root / FLOORS_FILE}:{line}"
        try:
            value = float(row["floor_usd"])
        except ValueError:
            raise DataError(f"{where}: floor_usd {row['floor_usd']!r} is not a number") from None
        first = _day(row["effective_from"], where) if row["effective_from"] else int(ALWAYS)
        last = _day(row["effective_to"], where) if row.get("effective_to") else None
        floors[row["asset_class"]].append(FloorPeriod(value, first, last, row.get("source", "")))
    return ReferenceData(
        version=content_version(fx_bytes, floor_bytes),
        source=str(root),
        rates=rates,
        floors={ac: tuple(sorted(ps, key=lambda p: p.first_day)) for ac, ps in floors.items()},
        max_rate_age_days=max_rate_age_days,
    )


def check_reference(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a reference directory, one line each (empty: usable)."""
    root = Path(path)
    problems: list[str] = []
    try:
        fx = _rows(_read(root / FX_FILE), root / FX_FILE, ("date", "currency", "usd_per_unit"))
        fl = _rows(
            _read(root / FLOORS_FILE),
            root / FLOORS_FILE,
            ("asset_class", "floor_usd", "effective_from"),
        )
    except DataError as exc:
        return [str(exc)]
    seen: dict[tuple[str, int], int] = {}
    days_of: dict[str, list[int]] = defaultdict(list)
    for line, row in fx:
        where = f"{FX_FILE}:{line}"
        ccy = row["currency"]
        if ccy not in ISO_4217:
            problems.append(f"{where}: {ccy!r} is not an ISO 4217 currency code")
        try:
            day = _day(row["date"], where)
        except DataError as exc:
            problems.append(str(exc).replace(str(root / FX_FILE), FX_FILE))
            continue
        try:
            rate = float(row["usd_per_unit"])
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            problems.append(
                f"{where}: usd_per_unit {row['usd_per_unit']!r} must be a positive finite number"
            )
        if ccy == "USD" and rate != 1.0:
            problems.append(f"{where}: USD must be 1 USD per unit, got {row['usd_per_unit']!r}")
        if (ccy, day) in seen:
            problems.append(f"{where}: {ccy} on {row['date']} is also on line {seen[ccy, day]}")
        seen[ccy, day] = line
        days_of[ccy].append(day)
    for ccy, days in sorted(days_of.items()):
        have = set(days)
        for d in range(min(days), max(days) + 1):
            # 1970-01-01 was a Thursday: day % 7 == 2 is Saturday, 3 Sunday
            if d % 7 not in (2, 3) and d not in have:
                problems.append(
                    f"{FX_FILE}: {ccy} has no rate on business day {np.datetime64(d, 'D')}"
                )
                break
    periods: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for line, row in fl:
        where = f"{FLOORS_FILE}:{line}"
        try:
            value = float(row["floor_usd"])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            problems.append(
                f"{where}: floor_usd {row['floor_usd']!r} must be a positive finite number"
            )
        try:
            first = _day(row["effective_from"], where) if row["effective_from"] else int(ALWAYS)
            last = _day(row["effective_to"], where) if row.get("effective_to") else int(2**62)
        except DataError as exc:
            problems.append(str(exc).replace(str(root / FLOORS_FILE), FLOORS_FILE))
            continue
        if last < first:
            problems.append(f"{where}: effective_to is before effective_from")
        periods[row["asset_class"]].append((first, last, line))
    for ac, ps in sorted(periods.items()):
        ps.sort()
        for (_, last_a, line_a), (first_b, _, line_b) in zip(ps, ps[1:], strict=False):
            if first_b <= last_a:
                problems.append(
                    f"{FLOORS_FILE}: {ac!r} floor periods on lines {line_a} and {line_b} overlap"
                )
    if not fl:
        problems.append(
            f"{FLOORS_FILE}: no floors: every asset class would be without surveillance"
        )
    return problems
