"""The session-calendar generator (tests/session_scenarios.py) keeps its promises.

Checked through the package's public ingest (what a detector sees), with slow
reference computations written here rather than the generator's own helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from session_scenarios import ABUSE_KINDS, SESSION_DESKS, generate_history
from surv_kernel import Dictionaries, columns_from_dicts

FLOORS = {"equity": 1e6, "fixed_income": 5e6, "derivative": 2e6}  # the brief's
W_NS = 30 * 60 * 1_000_000_000
DESK = {d.name: d for d in SESSION_DESKS}


@pytest.fixture(scope="module")
def history():
    return generate_history(7, n_days=4, n_traders=150, history_episodes=2)


def _decoded(day):
    """trade id -> (ns, usd, trader, asset class, desk) as ingest reads the feeds."""
    out = {}
    for name, feed in day.feeds.items():
        b, q = columns_from_dicts(feed, desk=name, return_quarantine=True)
        assert len(b) == len(feed) and not q.counts, (name, dict(q.counts))
        traders = b.trader_ids()
        acs = b.asset_classes()
        for i, tid in enumerate(b.trade_id.tolist()):
            out[tid] = (int(b.timestamp_ns[i]), float(b.notional_usd[i]), traders[i], acs[i], name)
    return out


def _max_window(rows) -> float:
    """Largest sum over [t - W, t] at a trade (every trade at t included): one pass over
    the distinct timestamps, adding the new one and dropping those older than t - W."""
    by_t: dict[int, float] = {}
    for t, u in rows:
        by_t[t] = by_t.get(t, 0.0) + u
    ts = sorted(by_t)
    best = total = 0.0
    lo = 0
    for t in ts:
        total += by_t[t]
        while ts[lo] < t - W_NS:
            total -= by_t[ts[lo]]
            lo += 1
        best = max(best, total)
    return best


def test_same_seed_same_history_other_seed_other_history(history):
    again = generate_history(7, n_days=4, n_traders=150, history_episodes=2)
    for a, b in zip(history.days, again.days, strict=True):
        assert a.feeds == b.feeds
        assert a.labels == b.labels
        assert a.lookalikes == b.lookalikes
    other = generate_history(8, n_days=4, n_traders=150, history_episodes=2)
    assert other.days[-1].feeds != history.days[-1].feeds


def test_feeds_decode_without_quarantine_and_the_clock_is_ingests(history):
    for day in history.days:
        got = _decoded(day)
        ts = day.timestamps_by_trade_id()
        assert ts.keys() == got.keys()
        assert all(ts[t] == v[0] for t, v in got.items())
        assert {t["currency"] for t in day.trades()} <= {"USD", "EUR", "GBP", "JPY"}
        for name, feed in day.feeds.items():
            assert [t["timestamp"] for t in feed] == sorted(t["timestamp"] for t in feed)
            assert {t["asset_class"] for t in feed} <= {DESK[name].asset_class}
    batch = history.days[-1].batch(Dictionaries())
    assert len(batch) == len(history.days[-1].trades())


def test_trade_ids_are_unique_across_days(history):
    ids = [t["trade_id"] for day in history.days for t in day.trades()]
    assert len(ids) == len(set(ids))


def test_every_episode_is_real_and_passes_the_floor_in_one_window(history):
    seen = set()
    for day in history.days:
        got = _decoded(day)
        for e in day.episodes:
            seen.add(e.kind)
            assert e.day == day.index
            rows = [got[t] for t in e.trade_ids]  # KeyError: a label naming no trade
            assert {(r[2], r[3]) for r in rows} == {(e.trader_id, e.asset_class)}
            assert {r[4] for r in rows} == set(e.desks)
            floor_x = FLOORS[e.asset_class] * 3.0
            assert e.floor_usd == floor_x
            injected = _max_window([(r[0], r[1]) for r in rows])
            assert injected > floor_x, e
            assert math.isclose(injected, e.injected_usd, rel_tol=1e-9)
            if math.isfinite(e.intensity):
                assert math.isclose(e.intensity, e.injected_usd / e.normal_usd)
                # the floor may raise it; lot rounding moves it by well under 0.1%
                assert e.intensity >= e.intensity_drawn * (1 - 1e-3)
            if e.kind == "structuring":
                assert len(rows) >= 10 and max(r[1] for r in rows) <= 0.31 * FLOORS[e.asset_class]
            if e.kind == "cross_desk":  # each desk alone under the floor, together over it
                assert len(e.desks) == 2
                for desk in e.desks:
                    own = [
                        (v[0], v[1])
                        for v in got.values()
                        if v[2:] == (e.trader_id, e.asset_class, desk)
                    ]
                    assert _max_window(own) < floor_x
            if e.kind in ("open_close", "off_session"):
                d = DESK[e.desk]
                hours = [(r[0] // 1_000_000_000 % 86400) / 3600 for r in rows]
                o, c = d.hours_utc
                if e.kind == "open_close":
                    assert all(o <= h <= o + 0.2 for h in hours) or all(
                        c - 0.2 <= h <= c for h in hours
                    )
                else:
                    pad = d.extended_h + 1.0
                    assert all(h < o - pad or h > c + pad for h in hours)
    assert seen == set(ABUSE_KINDS)


def test_abuse_only_on_the_last_day_by_default_and_cold_kinds_never_in_history(history):
    assert all(len(day.episodes) <= 2 for day in history.days[:-1])
    assert sum(len(day.episodes) for day in history.days[:-1]) > 0
    assert all(e.kind not in ("newcomer", "dormant") for d in history.days[:-1] for e in d.episodes)
    clean = generate_history(7, n_days=4, n_traders=150)
    assert all(not day.episodes for day in clean.days[:-1])
    assert len(clean.days[-1].episodes) == 28


def test_the_ordinary_trades_do_not_depend_on_the_abuse():
    with_abuse = generate_history(3, n_days=3, n_traders=80).days[-1]
    without = generate_history(3, n_days=3, n_traders=80, n_episodes=0).days[-1]
    labelled = set().union(*with_abuse.labels)

    def ordinary(day, skip=frozenset()):
        keys = ("trader_id", "timestamp", "notional", "currency", "surveillance_required")
        return sorted(
            (desk, *(t[k] for k in keys))
            for desk, feed in day.feeds.items()
            for t in feed
            if t["trade_id"] not in skip
        )

    assert labelled and not without.episodes
    assert ordinary(with_abuse, labelled) == ordinary(without)


def test_one_population_over_the_days(history):
    roster = {t.trader_id: t for t in history.traders}
    last = len(history.days) - 1
    active = []
    for day in history.days:
        trades = day.trades()
        traders = {t["trader_id"] for t in trades}
        active.append(traders)
        assert traders <= roster.keys()
        for t in trades:
            tr = roster[t["trader_id"]]
            assert day.index >= tr.start_day
            assert not (tr.dormant and day.index < last)
        desks = {(t["trader_id"], name) for name, feed in day.feeds.items() for t in feed}
        assert all(name in roster[trader].desks for trader, name in desks)
    newcomers = {t.trader_id for t in history.traders if t.start_day == last}
    dormant = {t.trader_id for t in history.traders if t.dormant}
    assert newcomers and dormant and newcomers <= active[-1] and dormant <= active[-1]
    regular = {t.trader_id for t in history.traders if t.start_day == 0 and not t.dormant}
    # most of the desk trades every day: the history is of the same people
    assert len(regular & active[0] & active[-1]) > 0.7 * len(regular)
    # newcomers and dormant traders of the episodes have no history at all
    for e in history.days[-1].episodes:
        if e.kind in ("newcomer", "dormant"):
            assert all(e.trader_id not in a for a in active[:-1])


def test_population_sizes_and_heavy_tail():
    h = generate_history(1, n_days=2, n_traders=2000, n_episodes=0)
    day = h.days[-1]
    counts = np.unique([t["trader_id"] for t in day.trades()], return_counts=True)[1]
    assert len(counts) > 1500
    counts = np.sort(counts)[::-1]
    # a Pareto population: the busiest 10% of traders do most of the trades
    assert counts[: len(counts) // 10].sum() > 0.5 * counts.sum()
    assert day.lookalikes and day.elevated
    assert {"large_order", "busy_half_hour", "auction"} <= set(day.lookalikes.values())
