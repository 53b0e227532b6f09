"""The alert model on labelled days it was not tuned on.

Days come from ``tests/alt_scenarios.py``, a generator written apart from
:mod:`surv_kernel.scenario` (clustered Hawkes-like arrivals, lognormal +
Pareto sizes, lot rounding, cross-asset traders, abuse at 3-30x the book's
normal half hour). The seeds below were never used to choose the model's
defaults (those were chosen on seeds 0-5 of both generators and checked on
6-11), and every mix is used: nothing is picked.

What is asserted, and why not simply the brief's targets everywhere:

- the brief's targets (precision >= 0.9, <= 1.2 alerts per detected
  episode, recall >= 0.95) hold on Poisson-arrival days, recall counted on
  the episodes of at least 5x the trader's normal half hour (measured on
  these days: precision 0.996, recall 0.946 overall; 0.987 / 0.958 before
  time-of-day baselines);
- on the default (clustered) days the model measures precision 0.940,
  recall 0.912 overall and 0.957 at >= 5x (the legacy path, every desk in
  one feed: 0.935, 0.900, 0.940; before time-of-day baselines both measured
  0.903, 0.933, 0.962): ordinary clusters of trades (a
  desk's open, a macro release) look like a small burst, and 3-5x episodes
  of large traders sit under the 4x ratio level. Those days assert floors
  under the measured figures (precision 0.85, recall 0.90, 0.93 at >= 5x),
  so a regression shows (the model before the activity-weighted spread
  measured precision 0.81 here) without pretending the target is met.
"""

from __future__ import annotations

import math

import pytest

from alt_scenarios import MIXES, AltDay, generate_alt_day
from surv_kernel.evaluation.scenario import EvalResult, evaluate_alerts
from surv_kernel.model import detect
from surv_kernel.reference import FX_RATES_USD, asset_class_floor
from trade_surveillance_pipeline import detect_anomalies

SEEDS = (20, 21)


def _pooled(results: list[EvalResult]) -> tuple[float, float, float]:
    n_alerts = sum(r.n_alerts for r in results)
    tp = sum(r.true_positives for r in results)
    eps = sum(r.n_episodes for r in results)
    found = sum(r.detected for r in results)
    hits = sum(r.alerts_per_detected_episode * r.detected for r in results if r.detected)
    return tp / n_alerts, found / eps, hits / found


def _recall_at_least(days: list[AltDay], results: list[EvalResult], intensity: float) -> float:
    hit = total = 0
    for day, r in zip(days, results, strict=True):
        missed = set(r.missed)
        for i, e in enumerate(day.episodes):
            if e.intensity >= intensity:
                total += 1
                hit += i not in missed
    return hit / total


def _alerts(day: AltDay, path: str) -> list:
    if path == "legacy":  # the received entry point: dicts, no desks, defaults
        return detect_anomalies(day.trades())
    return detect(day.batch()).alerts  # the six desk feeds with their desks


def _days(**knobs) -> list[AltDay]:
    return [generate_alt_day(seed, mix=mix, **knobs) for mix in MIXES for seed in SEEDS]


@pytest.fixture(scope="module")
def clustered_days() -> list[AltDay]:
    return _days()


@pytest.fixture(scope="module")
def poisson_days() -> list[AltDay]:
    return _days(clustering=0.0)


def test_alt_days_are_labelled_feeds_in_the_schema(clustered_days):
    keys = {
        "trade_id",
        "asset_class",
        "notional",
        "currency",
        "trader_id",
        "timestamp",
        "surveillance_required",
    }
    for day in clustered_days[:3]:
        trades = day.trades()
        assert len(day.feeds) == 6
        assert all(set(t) == keys for t in trades)
        assert len({t["trade_id"] for t in trades}) == len(trades)
        assert {t["currency"] for t in trades} <= set(FX_RATES_USD)
        for feed in day.feeds.values():
            ts = [t["timestamp"] for t in feed]
            assert ts == sorted(ts)
        by_id = {t["trade_id"]: t for t in trades}
        for e in day.episodes:
            # every label is real, on one book, and crosses the static floor
            rows = [by_id[i] for i in e.trade_ids]
            assert {(t["trader_id"], t["asset_class"]) for t in rows} == {
                (e.trader_id, e.asset_class)
            }
            assert e.floor_usd == asset_class_floor(e.asset_class) * 3.0
            assert e.target_usd > e.floor_usd
            if e.kind in ("layering", "cross_ccy"):  # each trade under the single-trade floor
                usd = [t["notional"] * FX_RATES_USD[t["currency"]] for t in rows]
                assert max(usd) < asset_class_floor(e.asset_class)
    assert generate_alt_day(SEEDS[0]).labels == clustered_days[0].labels  # deterministic


def test_poisson_arrival_days_meet_the_targets(poisson_days):
    results = [evaluate_alerts(detect(day.batch()).alerts, day) for day in poisson_days]
    precision, recall, per_episode = _pooled(results)
    assert precision >= 0.90, (precision, recall)
    assert per_episode <= 1.2
    assert _recall_at_least(poisson_days, results, 5.0) >= 0.95
    assert recall >= 0.90, (precision, recall)


@pytest.mark.parametrize("path", ["legacy", "model"])
def test_clustered_days_hold_the_measured_level(clustered_days, path):
    results = [evaluate_alerts(_alerts(day, path), day) for day in clustered_days]
    precision, recall, per_episode = _pooled(results)
    assert not math.isnan(precision)
    assert per_episode <= 1.2
    # floors under the measured figures (module docstring)
    assert _recall_at_least(clustered_days, results, 5.0) >= 0.93
    assert precision >= 0.85, (precision, recall)
    assert recall >= 0.90, (precision, recall)
