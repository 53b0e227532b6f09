"""The labelled day generator and the evaluation (and the model on them)."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from surv_kernel import dtypes
from surv_kernel.evaluation.received_rule import received_rule
from surv_kernel.evaluation.scenario import MIXES, evaluate_alerts, generate_day
from surv_kernel.model import DetectionConfig, detect
from surv_kernel.reference import ASSET_CLASS_FLOORS_USD, FX_RATES_USD

W = 30 * dtypes.NS_PER_MINUTE


@pytest.fixture(scope="module")
def day():
    return generate_day(0)


def test_same_seed_same_day_other_seed_other_day(day):
    again = generate_day(0)
    assert (again.trade_id == day.trade_id).all()
    assert (again.notional == day.notional).all() and (again.timestamp_ns == day.timestamp_ns).all()
    assert again.labels == day.labels
    other = generate_day(1)
    assert len(other) != len(day) or not (other.notional == day.notional).all()


def test_feeds_are_the_trades_in_the_feed_schema(day):
    feeds = day.feeds()
    assert len(feeds) == 6
    trades = day.trades()
    decoded = [t for name in feeds for t in msgspec.json.decode(feeds[name])]
    assert decoded == trades
    keys = {
        "trade_id",
        "asset_class",
        "notional",
        "currency",
        "trader_id",
        "timestamp",
        "surveillance_required",
    }
    assert all(set(t) == keys for t in trades)
    assert len({t["trade_id"] for t in trades}) == len(trades)
    assert {t["currency"] for t in trades} == set(FX_RATES_USD)
    assert {t["asset_class"] for t in trades} == set(ASSET_CLASS_FLOORS_USD)
    for data in feeds.values():  # each desk's feed arrives in time order
        ts = [t["timestamp"] for t in msgspec.json.decode(data)]
        assert ts == sorted(ts)
    # the batch is those trades converted to USD with the reference FX table
    b = day.batch
    usd = np.array([t["notional"] * FX_RATES_USD[t["currency"]] for t in trades])
    assert np.allclose(b.notional_usd, usd, rtol=1e-15)
    ns = np.array([round(t["timestamp"] * 1e6) * 1000 for t in trades])
    assert (b.timestamp_ns == ns).all()  # millisecond stamps survive float seconds
    assert b.trader_ids() == [t["trader_id"] for t in trades]
    # JPY books: raw notionals ~150x their USD value
    jpy = day.currency == "JPY"
    assert jpy.any() and np.median(day.notional[jpy] / day.notional_usd[jpy]) > 100


def test_labels_are_injected_episodes_over_the_static_floor(day):
    assert len(day.episodes) == 24
    ids = set(day.trade_id.tolist())
    seen: set[str] = set()
    ts_of = day.timestamps_by_trade_id()
    for e in day.episodes:
        assert e.trade_ids <= ids and not (e.trade_ids & seen)
        seen |= e.trade_ids
        assert e.kind in ("burst", "structuring", "ramp")
        # the injected trades alone reach their target in some window, which is
        # over the static floor and far above the book's normal volume
        rows = np.array([i for i, t in enumerate(day.trade_id) if t in e.trade_ids])
        t = day.timestamp_ns[rows]
        x = day.notional_usd[rows][np.argsort(t)]
        t = np.sort(t)
        c = np.concatenate([[0.0], np.cumsum(x)])
        best = np.max(c[np.searchsorted(t, t, "right")] - c[np.searchsorted(t, t - W, "left")])
        assert best == pytest.approx(e.injected_usd, rel=1e-6)
        assert best > 3 * ASSET_CLASS_FLOORS_USD[e.asset_class]
        assert best >= 6 * e.normal_window_usd * (1 - 1e-9)
        assert max(ts_of[i] for i in e.trade_ids) - min(ts_of[i] for i in e.trade_ids) <= 2 * W
    kinds = {e.kind for e in day.episodes}
    assert kinds == {"burst", "structuring", "ramp"}


def test_trader_mix_and_knobs():
    inst = generate_day(3, n_traders=30, trader_mix={"institutional": 1.0}, n_episodes=4)
    assert {t.kind for t in inst.traders} == {"institutional"}
    assert len(inst.episodes) == 4
    # the same population on another day: same traders and books, other trades
    a = generate_day(1, population_seed=9, n_traders=20, n_episodes=2)
    b = generate_day(2, population_seed=9, n_traders=20, n_episodes=2)
    assert a.traders == b.traders and len(a) != len(b)
    with pytest.raises(ValueError, match="unknown trader kinds"):
        generate_day(0, trader_mix={"whale": 1.0})
    with pytest.raises(ValueError, match="unknown abuse kinds"):
        generate_day(0, abuse_mix={"spoofing": 1.0})
    with pytest.raises(ValueError, match="intensity"):
        generate_day(0, intensity=(5.0, 2.0))
    with pytest.raises(TypeError):
        generate_day(0, n_trader=3)


def test_evaluation_counts_true_positives_duplicates_and_spans(day):
    e0, e1 = day.episodes[0], day.episodes[1]
    inj0 = sorted(e0.trade_ids)
    normal = [t for t in day.trade_id.tolist() if not any(t in e.trade_ids for e in day.episodes)]
    ts_of = day.timestamps_by_trade_id()
    far = next(t for t in normal if abs(ts_of[t] - ts_of[inj0[0]]) > 3 * W)
    alerts = [
        {"trades": inj0[:1]},  # true positive
        {"trades": inj0[:1]},  # duplicate of the same episode: still a TP, 2 alerts/episode
        {"trades": [inj0[0], far]},  # names an injected trade but spans > 2 windows: FP
        {"trades": normal[:1]},  # FP
        {"trades": sorted(e1.trade_ids)[:2]},
    ]
    r = evaluate_alerts(alerts, day)
    assert (r.n_alerts, r.true_positives, r.false_positives) == (5, 3, 2)
    assert (r.n_episodes, r.detected) == (24, 2)
    assert r.precision == pytest.approx(0.6) and r.recall == pytest.approx(2 / 24)
    assert r.alerts_per_detected_episode == pytest.approx(1.5)
    assert len(r.missed) == 22 and 0 not in r.missed and 1 not in r.missed
    empty = evaluate_alerts([], day)
    assert math.isnan(empty.precision) and empty.recall == 0.0
    with pytest.raises(ValueError, match="not in the scenario"):
        evaluate_alerts([{"trades": ["nope"]}], day)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_meets_targets_on_the_default_day(seed):
    sc = generate_day(seed)
    r = evaluate_alerts(detect(sc.batch).alerts, sc)
    assert r.precision >= 0.90, r
    assert r.recall >= 0.95, r
    assert r.alerts_per_detected_episode <= 1.2, r


@pytest.mark.parametrize("mix", ["institutional-heavy", "retail-heavy"])
def test_model_holds_up_on_other_trader_mixes(mix):
    sc = generate_day(11, trader_mix=MIXES[mix])
    r = evaluate_alerts(detect(sc.batch).alerts, sc)
    assert r.precision >= 0.85 and r.recall >= 0.9 and r.alerts_per_detected_episode <= 1.2, r


def test_received_rule_side_by_side_on_a_small_day():
    sc = generate_day(5, n_traders=36, n_episodes=8)
    model = evaluate_alerts(detect(sc.batch).alerts, sc)
    old = evaluate_alerts(received_rule(sc.trades()), sc)
    # the pair rule floods (JPY raw notionals, institutional books, duplicate
    # pairs) and misses structuring; the model does neither
    assert old.n_alerts > 20 * model.n_alerts
    assert old.precision < 0.2 < 0.9 <= model.precision
    assert old.alerts_per_detected_episode > 5 >= 1.2 >= model.alerts_per_detected_episode
    assert model.recall >= old.recall


def test_static_policy_is_the_floor_without_pairs():
    sc = generate_day(4, n_traders=36, n_episodes=8)
    static = evaluate_alerts(detect(sc.batch, DetectionConfig(policy="static")).alerts, sc)
    robust = evaluate_alerts(detect(sc.batch).alerts, sc)
    assert static.n_alerts > robust.n_alerts and static.precision < robust.precision
    assert static.recall >= robust.recall


def test_calibrated_baselines_on_history_days_of_the_same_desks():
    from surv_kernel.batch import Dictionaries, TradeBatch
    from surv_kernel.model import calibrate

    d = Dictionaries()
    history = TradeBatch.concat(
        [
            generate_day(
                50 + k, population_seed=3, n_episodes=0, date=f"2024-03-{11 + k}", dictionaries=d
            ).batch
            for k in range(2)
        ]
    )
    base = calibrate(history)
    today = generate_day(60, population_seed=3)
    r = evaluate_alerts(detect(today.batch, baselines=base).alerts, today)
    assert r.precision >= 0.85 and r.recall >= 0.95 and r.alerts_per_detected_episode <= 1.2, r
    sources = {a.explanation.baseline_source for a in detect(today.batch, baselines=base).alerts}
    assert "own" in sources
