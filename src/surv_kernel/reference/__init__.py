"""Reference data: FX rates and asset-class alert floors.

The received module silently treated an unknown currency as USD (rate 1.0) and
an unknown asset class as "no threshold" (detection off). Both are errors that
name the value and say where the table lives.

The package keeps the received values as its embedded default
(:data:`EMBEDDED`, version ``embedded-1``: four currencies at fixed rates,
three floors). A bank's own tables (FX rates by date for every currency it
books, floors with effective dates) come from a directory of CSV files
(:mod:`.files`: the format, the loader, ``surv-kernel reference check``),
given as ``--reference PATH`` to every subcommand or ``SURV_REFERENCE=PATH``
to the library (:func:`active_reference`). A trade converts at its own
trading date's rate; a currency or date without a rate is quarantined with
the reason, never converted at 1.0; every run records the reference version
(``config.reference`` in ``summary.json``, the store's run record).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .files import FLOORS_FILE, FX_FILE, check_reference, load_reference
from .tables import (
    ALWAYS,
    FloorPeriod,
    RateSeries,
    ReferenceData,
    ReferenceDataError,
    UnknownAssetClassError,
    UnknownCurrencyError,
)

__all__ = [
    "ASSET_CLASS_FLOORS_USD",
    "EMBEDDED",
    "ENV_REFERENCE",
    "FLOORS_FILE",
    "FX_FILE",
    "FX_RATES_USD",
    "ReferenceData",
    "ReferenceDataError",
    "UnknownAssetClassError",
    "UnknownCurrencyError",
    "active_reference",
    "asset_class_floor",
    "check_reference",
    "fx_rate",
    "load_reference",
    "use_reference",
]

#: US dollars per one unit of the currency, as in the received module.
FX_RATES_USD: Mapping[str, float] = MappingProxyType(
    {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}
)

#: Asset-class alert floors in USD, as in the received module. A window sum is
#: compared with ``floor * threshold_multiplier``.
ASSET_CLASS_FLOORS_USD: Mapping[str, float] = MappingProxyType(
    {"equity": 1_000_000.0, "fixed_income": 5_000_000.0, "derivative": 2_000_000.0}
)

#: The embedded default: the received values, valid on every date.
EMBEDDED = ReferenceData(
    version="embedded-1",
    source="surv_kernel.reference (embedded defaults)",
    rates={
        c: RateSeries(np.array([ALWAYS], np.int64), np.array([r]), ("received module",))
        for c, r in FX_RATES_USD.items()
    },
    floors={
        ac: (FloorPeriod(f, int(ALWAYS), None, "received module"),)
        for ac, f in ASSET_CLASS_FLOORS_USD.items()
    },
)

ENV_REFERENCE = "SURV_REFERENCE"

_lock = threading.Lock()
_chosen: ReferenceData | None = None
_loaded: dict[tuple[str, float, float], ReferenceData] = {}


def use_reference(reference: ReferenceData | str | os.PathLike[str] | None) -> ReferenceData:
    """Make ``reference`` (tables, or a directory to load) the process's
    reference data; None goes back to ``SURV_REFERENCE`` / the embedded
    default. The CLI's ``--reference`` calls this."""
    global _chosen
    ref = load_reference(reference) if isinstance(reference, (str, os.PathLike)) else reference
    with _lock:
        _chosen = ref
    return active_reference()


def active_reference() -> ReferenceData:
    """The reference data in force: :func:`use_reference`'s, else the
    directory ``SURV_REFERENCE`` names (reloaded when its files change), else
    :data:`EMBEDDED`."""
    if _chosen is not None:
        return _chosen
    path = os.environ.get(ENV_REFERENCE, "").strip()
    if not path:
        return EMBEDDED
    root = Path(path)
    try:
        key = (
            str(root.resolve()),
            (root / FX_FILE).stat().st_mtime,
            (root / FLOORS_FILE).stat().st_mtime,
        )
    except OSError:
        key = (str(root), 0.0, 0.0)  # load_reference says what is missing
    with _lock:
        ref = _loaded.get(key)
        if ref is None:
            ref = _loaded[key] = load_reference(root)
        return ref


def fx_rate(currency: str) -> float:
    """USD per unit of ``currency`` (its latest rate in the reference data in
    force); raises :class:`UnknownCurrencyError`."""
    return active_reference().fx_rate(currency)


def asset_class_floor(asset_class: str) -> float:
    """The USD alert floor of ``asset_class`` (the latest period); raises
    :class:`UnknownAssetClassError`."""
    return active_reference().floor(asset_class)
