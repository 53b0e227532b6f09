"""
trade_surveillance_pipeline.py
Global Supervisory and Surveillance — Alert Pipeline

The drop-in replacement of the received module. Every public name keeps its
signature; the work is done by the ``surv_kernel`` package and these functions
are thin wrappers. What changed for callers, and why, is in README.md under
"What changed and why". In short: nothing that used to work stops working,
except that silent failures are now loud (an unknown currency or asset class
raises, a dead desk feed raises instead of returning "no anomalies").
"""

from __future__ import annotations

import json
import time

from surv_kernel.legacy.processors import EquityProcessor, SurveillanceProcessor, TradeProcessor
from surv_kernel.legacy.records import load_feeds_as_dicts as _load_feeds_as_dicts
from surv_kernel.legacy.records import make_alert as _make_alert
from surv_kernel.legacy.records import transform as _transform
from surv_kernel.reference import ASSET_CLASS_FLOORS_USD, asset_class_floor, fx_rate

__all__ = [
    "ALERT_THRESHOLDS",
    "EquityProcessor",
    "SurveillanceProcessor",
    "TradeProcessor",
    "analyze_desk",
    "create_alert",
    "detect_anomalies",
    "fetch_trade_feed",
    "get_fx_rate",
    "get_threshold",
    "load_trades",
    "process_all_desks",
    "transform_trade",
]

#: Alert floors by asset class, (asset_class, USD floor) pairs as before, now an
#: immutable tuple derived from ``surv_kernel.reference.ASSET_CLASS_FLOORS_USD``
#: (the single source of truth; lookups go through a dict, not a scan).
ALERT_THRESHOLDS: tuple[tuple[str, int], ...] = tuple(
    (asset_class, int(floor)) for asset_class, floor in ASSET_CLASS_FLOORS_USD.items()
)


def _desks():
    # imported on first use: it pulls in the Numba kernels, which callers that
    # only need the helpers below should not pay for at import time
    from surv_kernel.legacy import desks

    return desks


def get_threshold(asset_class):
    """Returns the alert threshold for a given asset class.

    Raises ``surv_kernel.UnknownAssetClassError`` (a ValueError) for an asset
    class without a floor; it used to return None, which switched detection
    off for that class without a word.
    """
    return int(asset_class_floor(asset_class))


def create_alert(trade, flags, metadata=None):
    """Creates an alert record from a trade and its flags.

    Neither ``trade`` nor ``metadata`` is modified or shared with the alert.
    """
    return _make_alert(trade, flags, metadata)


def load_trades(desk_feeds):
    """Loads trade data from all desk feeds (JSON array or NDJSON text/bytes).

    Returns one list of trade dicts, as before. The pipeline itself no longer
    uses this: it streams feeds into columns (``surv_kernel.iter_feed``).
    """
    return _load_feeds_as_dicts(desk_feeds)


def fetch_trade_feed(desk_id, max_retries=3):
    """Fetches trade data from a desk feed with retry logic.

    ``max_retries`` is the number of attempts, as before. Network and OS
    errors (and ``surv_kernel.pipeline.TransientFeedError``) are retried after a
    capped exponential backoff with full jitter (0.5 s, 1 s, ... at most 30 s,
    each scaled by a random factor); other errors are raised at once. Every
    attempt is logged through ``logging`` with the desk id and attempt number,
    and counted in ``surv_kernel.metrics``. After the last attempt it raises
    ``surv_kernel.FeedUnavailableError`` (it used to print and return None,
    which became "no anomalies").
    """
    # _api_call is looked up at call time, so callers and tests can replace it
    return _desks().fetch_trade_feed(desk_id, max_retries, api_call=lambda d: _api_call(d))


def transform_trade(trade, normalize_notional, convert_currency, add_timestamps):
    """Applies transformations to a trade record; returns a new dict.

    The input is no longer modified. New code should call
    ``surv_kernel.records.transform`` with keyword flags.
    """
    return _transform(
        trade,
        normalize_notional=normalize_notional,
        convert_currency=convert_currency,
        add_timestamp=add_timestamps,
    )


def process_all_desks(desk_ids):
    """Processes trades from multiple desks concurrently.

    Returns one list of alerts per desk, in the order of ``desk_ids``. Each
    desk's feed is fetched (``fetch_trade_feed``) on a bounded thread pool
    (``SURV_MAX_WORKERS``, default cores + 4), each within a deadline
    (``SURV_DESK_DEADLINE_S``, default 120 s), and detection runs once across
    the desks, as ``surv-kernel run`` does: a trader who splits a burst over
    two desks is caught, and the alert is listed under the desk that booked
    most of it. A desk that fails (dead feed, garbage feed, error, deadline)
    is logged and counted, the other desks still finish, and then
    ``surv_kernel.DeskFailuresError`` is raised: its ``.results`` holds every
    healthy desk's alerts in order and None for a failed desk, ``.failures``
    maps desk id to error. See README "What changed and why" and RUNBOOK.md.
    """
    report = _desks().analyze_desks(desk_ids, fetch=lambda d: fetch_trade_feed(d))
    return report.raise_for_failures()


def detect_anomalies(trades, window_minutes=30, threshold_multiplier=3.0):
    """Detects anomalous trading patterns within a time window.

    Flags trader activity whose USD notional over a rolling window passes the
    asset-class floor times ``threshold_multiplier`` and stands out from the
    trader's own robust baseline; one alert per episode. Each alert keeps the
    received keys (``trader_id``, ``trades``, ``combined_notional``,
    ``window_minutes``) and adds the explanation.
    """
    from surv_kernel.model import DetectionConfig
    from surv_kernel.observability import MetricsRegistry
    from surv_kernel.pipeline import DictsSource, LocalEngine, run

    config = DetectionConfig(
        window_minutes=float(window_minutes), threshold_multiplier=float(threshold_multiplier)
    )
    # a function of its argument, not a desk run: its figures stay out of the
    # process's desk metrics
    reg = MetricsRegistry()
    result = run(
        [DictsSource(None, trades)],
        config=config,
        engine=LocalEngine(registry=reg, inline=True),
        registry=reg,
    )
    if result.failures:
        raise result.failures[0].error
    return [alert.to_dict() for alert in result.detection.alerts]


def _api_call(desk_id):
    """Stub — simulates API response from a desk feed (the external black box)."""
    return json.dumps(
        [
            {
                "trade_id": f"T{desk_id}001",
                "asset_class": "equity",
                "notional": 1500000,
                "currency": "USD",
                "trader_id": "TR001",
                "timestamp": time.time(),
                "surveillance_required": True,
            }
        ]
    )


def get_fx_rate(currency):
    """Returns exchange rate to USD.

    Raises ``surv_kernel.UnknownCurrencyError`` (a ValueError) for a currency
    without a rate; it used to return 1.0, reading e.g. a JPY amount as USD.
    """
    return fx_rate(currency)


def analyze_desk(desk_id):
    """Analyzes trades for a single desk; returns its alerts as dicts.

    Fetches the feed (``fetch_trade_feed``), decodes it into columns and runs
    the detection model (``surv_kernel.legacy.desks.analyze_feed``). A feed that
    cannot be fetched raises ``FeedUnavailableError`` and one that is not JSON
    raises ``surv_kernel.FeedError``, instead of looking like a quiet desk;
    records that cannot be used are quarantined, logged and counted.
    """
    feed = fetch_trade_feed(desk_id)
    return _desks().analyze_feed(desk_id, feed)
