"""The drop-in module's public surface, pinned.

Callers across the bank import these names and call them positionally or by
keyword; a rename, a reordered parameter or a changed default is a cross-team
migration, so any such change must fail here first.
"""

import inspect

import pytest

import trade_surveillance_pipeline as tsp

P = inspect.Parameter
POS = P.POSITIONAL_OR_KEYWORD

# name -> [(parameter, default or P.empty)], in order
FUNCTIONS = {
    "get_threshold": [("asset_class", P.empty)],
    "create_alert": [("trade", P.empty), ("flags", P.empty), ("metadata", None)],
    "load_trades": [("desk_feeds", P.empty)],
    "fetch_trade_feed": [("desk_id", P.empty), ("max_retries", 3)],
    "transform_trade": [
        ("trade", P.empty),
        ("normalize_notional", P.empty),
        ("convert_currency", P.empty),
        ("add_timestamps", P.empty),
    ],
    "process_all_desks": [("desk_ids", P.empty)],
    "detect_anomalies": [
        ("trades", P.empty),
        ("window_minutes", 30),
        ("threshold_multiplier", 3.0),
    ],
    "_api_call": [("desk_id", P.empty)],
    "get_fx_rate": [("currency", P.empty)],
    "analyze_desk": [("desk_id", P.empty)],
}

METHODS = {
    "TradeProcessor": {"process": ["self", "trades"], "validate": ["self", "trade"]},
    "EquityProcessor": {
        "process": ["self", "trades"],
        "validate": ["self", "trade"],
        "_analyze": ["self", "trade"],
    },
    "SurveillanceProcessor": {
        "process": ["self", "trades"],
        "validate": ["self", "trade"],
        "_analyze": ["self", "trade"],
    },
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_signature_is_unchanged(name):
    sig = inspect.signature(getattr(tsp, name))
    got = [(p.name, p.default) for p in sig.parameters.values()]
    assert got == FUNCTIONS[name]
    assert all(p.kind is POS for p in sig.parameters.values())


@pytest.mark.parametrize("cls", sorted(METHODS))
def test_processor_methods_are_unchanged(cls):
    klass = getattr(tsp, cls)
    for method, params in METHODS[cls].items():
        sig = inspect.signature(getattr(klass, method))
        assert list(sig.parameters) == params


def test_alert_thresholds_still_iterate_as_pairs():
    assert dict(tsp.ALERT_THRESHOLDS) == {
        "equity": 1_000_000,
        "fixed_income": 5_000_000,
        "derivative": 2_000_000,
    }
    for asset_class, threshold in tsp.ALERT_THRESHOLDS:
        assert tsp.get_threshold(asset_class) == threshold


def test_every_received_name_is_still_exported():
    received = {
        "TradeProcessor",
        "EquityProcessor",
        "SurveillanceProcessor",
        "ALERT_THRESHOLDS",
        *FUNCTIONS,
    }
    assert received <= set(dir(tsp))


def test_package_and_module_import_together():
    import surv_kernel

    assert surv_kernel.__version__
    assert tsp.get_fx_rate("EUR") == surv_kernel.FX_RATES_USD["EUR"]


def test_every_package_export_resolves():
    # the package exports lazily; a renamed function must fail here, not at a caller
    import surv_kernel

    missing = [name for name in surv_kernel.__all__ if not hasattr(surv_kernel, name)]
    assert missing == []
    assert callable(surv_kernel.rolling_window_sums) and callable(surv_kernel.detect)
    assert callable(surv_kernel.decode_feed) and callable(surv_kernel.iter_feed)


def test_moved_modules_stay_importable_as_the_same_objects():
    """``surv_kernel.desks`` and ``surv_kernel.scenario`` moved (legacy/,
    evaluation/); callers importing the old paths get the same module, so a
    monkeypatch or a module attribute set through either name is seen by both."""
    import importlib
    import subprocess
    import sys

    from surv_kernel.evaluation import scenario
    from surv_kernel.legacy import desks

    assert importlib.import_module("surv_kernel.desks") is desks
    assert importlib.import_module("surv_kernel.scenario") is scenario
    from surv_kernel.desks import process_all_desks  # noqa: F401  (the old spelling)

    proc = subprocess.run(
        [sys.executable, "-m", "surv_kernel.scenario", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "--seeds" in proc.stdout, proc.stderr
