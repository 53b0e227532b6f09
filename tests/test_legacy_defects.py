"""One regression test per defect of the received module (README: "What changed and why").

The detection, feed and desk defects have their own tests next to the code
that fixed them (test_model.py, test_ingest.py, test_desks.py); the ones
that live in the drop-in module's own helpers are here, plus the end-to-end
legacy detect_anomalies checks.
"""

import copy

import pytest

import surv_kernel
import trade_surveillance_pipeline as tsp
from surv_kernel.legacy.processors import EquityProcessor, SurveillanceProcessor

TRADE = {
    "trade_id": "T1",
    "asset_class": "equity",
    "notional": 1_500_000,
    "currency": "JPY",
    "trader_id": "TR001",
    "timestamp": 1_700_000_000.0,
    "surveillance_required": True,
    "legs": [{"venue": "XLON"}],
}


def test_create_alert_mutable_default_metadata_is_not_shared():
    a = tsp.create_alert(TRADE, ["big"])
    a["metadata"]["note"] = "analyst edit"
    b = tsp.create_alert(TRADE, ["big"])
    assert "note" not in b["metadata"]
    assert a["metadata"] is not b["metadata"]


def test_create_alert_does_not_modify_caller_metadata():
    meta = {"rule": "window"}
    alert = tsp.create_alert(TRADE, [], meta)
    assert meta == {"rule": "window"}
    assert alert["metadata"]["rule"] == "window"
    assert "processed_at" in alert["metadata"]


def test_create_alert_shallow_copy_aliasing_is_gone():
    trade = copy.deepcopy(TRADE)
    alert = tsp.create_alert(trade, ["x"])
    alert["legs"][0]["venue"] = "changed"
    assert trade["legs"][0]["venue"] == "XLON"
    assert trade == TRADE  # no flags/metadata written into the caller's trade


def test_transform_trade_does_not_mutate_input():
    trade = dict(TRADE, notional="1000", currency="EUR")
    before = dict(trade)
    out = tsp.transform_trade(trade, True, True, True)
    assert trade == before
    assert out["notional"] == 1000.0
    assert out["notional_usd"] == pytest.approx(1080.0)
    assert "processed_at" in out and "processed_at" not in trade


def test_transform_trade_flags_keep_their_meaning():
    out = tsp.transform_trade(dict(TRADE, currency="USD"), False, False, False)
    assert out == dict(TRADE, currency="USD")
    missing_currency = {k: v for k, v in TRADE.items() if k != "currency"}
    assert tsp.transform_trade(missing_currency, True, True, False)["notional_usd"] == 1_500_000


def test_get_fx_rate_unknown_currency_is_an_error_not_usd():
    with pytest.raises(surv_kernel.UnknownCurrencyError, match="CHF"):
        tsp.get_fx_rate("CHF")
    with pytest.raises(ValueError):  # callers catching ValueError keep working
        tsp.get_fx_rate("chf")
    assert tsp.get_fx_rate("JPY") == 0.0067


def test_transform_trade_unknown_currency_is_an_error():
    with pytest.raises(surv_kernel.UnknownCurrencyError):
        tsp.transform_trade(dict(TRADE, currency="XXX"), True, True, False)


def test_get_threshold_unknown_asset_class_does_not_switch_detection_off():
    with pytest.raises(surv_kernel.UnknownAssetClassError, match="commodity"):
        tsp.get_threshold("commodity")
    assert tsp.get_threshold("fixed_income") == 5_000_000


def test_alert_thresholds_is_immutable_and_single_sourced():
    with pytest.raises((TypeError, AttributeError)):
        tsp.ALERT_THRESHOLDS.append(("commodity", 1))
    assert dict(tsp.ALERT_THRESHOLDS) == dict(surv_kernel.ASSET_CLASS_FLOORS_USD)


def test_surveillance_processor_is_not_an_equity_processor_by_accident():
    assert not issubclass(SurveillanceProcessor, EquityProcessor)
    assert issubclass(SurveillanceProcessor, tsp.TradeProcessor)
    trades = [
        dict(TRADE, trade_id="A", asset_class="derivative", surveillance_required=True),
        dict(TRADE, trade_id="B", asset_class="equity", surveillance_required=False),
        {k: v for k, v in TRADE.items() if k != "surveillance_required"} | {"trade_id": "C"},
    ]
    assert [r["trade_id"] for r in tsp.SurveillanceProcessor().process(trades)] == ["A"]
    assert [r["trade_id"] for r in tsp.EquityProcessor().process(trades)] == ["B", "C"]
    assert tsp.EquityProcessor().process(trades)[0] == {
        "trade_id": "B",
        "status": "reviewed",
        "flags": [],
    }


def test_surveillance_processor_rejects_non_boolean_flag():
    with pytest.raises(TypeError, match="surveillance_required"):
        tsp.SurveillanceProcessor().process([dict(TRADE, surveillance_required="false")])


def test_trade_processor_base_still_requires_validate():
    with pytest.raises(NotImplementedError):
        tsp.TradeProcessor().process([TRADE])


def test_load_trades_same_result_for_json_arrays_and_accepts_ndjson():
    import json

    a = [dict(TRADE, trade_id="1"), dict(TRADE, trade_id="2")]
    b = [dict(TRADE, trade_id="3")]
    feeds = [json.dumps(a), json.dumps(b).encode()]
    assert tsp.load_trades(feeds) == a + b
    ndjson = "\n".join(json.dumps(t) for t in a + b) + "\n"
    assert tsp.load_trades([ndjson]) == a + b
    assert tsp.load_trades(iter(feeds)) == a + b  # any iterable of feeds, not only a list
    assert tsp.load_trades([]) == []


def test_load_trades_garbage_feed_is_loud():
    from surv_kernel.ingest import FeedError

    with pytest.raises(FeedError, match="feed #1"):
        tsp.load_trades(["[]", "<html>502 Bad Gateway</html>"])
    with pytest.raises(FeedError, match="feed #0"):
        tsp.load_trades(['"a JSON string, not trades"'])
    with pytest.raises(FeedError, match="feed #0"):
        tsp.load_trades(['{"rows": [1, 2]}\n[3]'])


def test_api_call_stub_shape_is_kept():
    [trade] = tsp.load_trades([tsp._api_call("EQ1")])
    assert trade["trade_id"] == "TEQ1001"
    assert set(trade) == {
        "trade_id",
        "asset_class",
        "notional",
        "currency",
        "trader_id",
        "timestamp",
        "surveillance_required",
    }
