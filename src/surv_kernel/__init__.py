"""surv_kernel: a trade-surveillance detection kernel.

Data flows one way through the layers:
bytes -> records (``schema``) -> columns (``batch``, ``ingest``) -> window
statistics (``kernels``, ``windows``) -> scored episodes (``model``) -> alerts,
scheduled by the pipeline (``pipeline``: sources -> engine -> sinks) or the
stream (``stream``). ``legacy`` keeps the received module's API on top,
``evaluation`` the labelled days that score it. Arrow, Parquet, CSV, polars and pandas
come in and go out through ``frames`` (pyarrow, imported only there) and the one
validation step every reader shares (``validate.validate_columns``). Every error raised on purpose
derives from :class:`SurveillanceError` (``errors``).

Heavy modules (Numba kernels, the model) are imported on first use of a name
that needs them, so ``import surv_kernel`` stays cheap for callers that only
need the reference tables or the legacy shim's helpers.
"""

from __future__ import annotations

import importlib
from typing import Any

from .batch import Dictionaries, Dictionary, TradeBatch
from .errors import ConfigError, DataError, InputError, OutputError, SurveillanceError
from .reference import (
    ASSET_CLASS_FLOORS_USD,
    FX_RATES_USD,
    ReferenceDataError,
    UnknownAssetClassError,
    UnknownCurrencyError,
    asset_class_floor,
    fx_rate,
)

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # ingest
    "decode_feed": "ingest",
    "iter_feed": "ingest",
    "columns_from_dicts": "ingest",
    "Quarantine": "ingest",
    "QuarantineRecord": "ingest",
    "FeedError": "ingest",
    "Trade": "schema",
    # the one validation step for columns from any reader
    "validate_columns": "validate",
    "ColumnError": "validate",
    "Utf8Column": "validate",
    # frames in and out (pyarrow, imported only here)
    "read_frame": "frames",
    "iter_frame": "frames",
    "iter_parquet": "frames",
    "iter_csv": "frames",
    "detect_frame": "frames",
    # kernel wrappers
    "rolling_window_sums": "windows",
    "window_stats": "windows",
    "WindowStats": "windows",
    "group_median_mad": "windows",
    "MAD_TO_SIGMA": "windows",
    # alert model
    "detect": "model",
    "calibrate": "model",
    "Baselines": "model",
    "DetectionConfig": "model",
    "Detection": "model",
    "Alert": "model",
    "SuppressedEpisode": "model",
    "Detector": "model",
    "DETECTORS": "model",
    # scenarios and evaluation
    "generate_day": "evaluation.scenario",
    "evaluate_alerts": "evaluation.scenario",
    # the pipeline
    "run": "pipeline",
    "replay_window": "pipeline",
    "FileSource": "pipeline",
    "LocalEngine": "pipeline",
    # desks, ops
    "FeedUnavailableError": "pipeline",
    "DeskFailuresError": "pipeline",
    "process_all_desks": "legacy.desks",
    "metrics": "observability",
    # streaming
    "SurveillanceStream": "stream",
}

__all__ = [
    "ASSET_CLASS_FLOORS_USD",
    "FX_RATES_USD",
    "ConfigError",
    "DataError",
    "Dictionaries",
    "Dictionary",
    "InputError",
    "OutputError",
    "ReferenceDataError",
    "SurveillanceError",
    "TradeBatch",
    "UnknownAssetClassError",
    "UnknownCurrencyError",
    "asset_class_floor",
    "fx_rate",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'surv_kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
