"""Feeds, retries, the desk pool and its failure contract (issue 5).

Regression tests for the received defects are named after them:
``fetch_trade_feed`` printed, slept a fixed second and returned None after the
last retry, which ``analyze_desk`` turned into "no anomalies";
``process_all_desks`` started one unbounded thread per desk, lost a raising
thread's desk, and returned results in completion order without desk identity.

No test sleeps for backoff: ``sleep``, ``rng`` and ``clock`` are injected.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trade_surveillance_pipeline as tsp
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.ingest import FeedError, decode_feed
from surv_kernel.legacy import desks
from surv_kernel.legacy.desks import (
    DeskDeadlineError,
    DeskFailuresError,
    DeskRunReport,
    FeedUnavailableError,
    TransientFeedError,
    analyze_feed,
    fetch_trade_feed,
    process_all_desks,
    replay_window,
    run_demo,
    warm_up,
)
from surv_kernel.model import DetectionConfig, detect
from surv_kernel.observability import MetricsRegistry


class FixedRng:
    """Returns the given fractions in turn (what ``random()`` would)."""

    def __init__(self, *values):
        self.values = list(values)
        self.calls = 0

    def random(self):
        self.calls += 1
        return self.values.pop(0) if self.values else 1.0


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Flaky:
    """An api_call failing with ``errors`` in turn, then returning ``feed``."""

    def __init__(self, errors, feed="[]", clock=None, latency=0.0):
        self.errors = list(errors)
        self.feed = feed
        self.calls = []
        self.clock = clock
        self.latency = latency

    def __call__(self, desk_id):
        self.calls.append(desk_id)
        if self.clock is not None:
            self.clock.now += self.latency
        if self.errors:
            raise self.errors.pop(0)
        return self.feed


def desk_records(caplog, desk):
    return [r for r in caplog.records if getattr(r, "desk", None) == desk]


# -- fetch_trade_feed ----------------------------------------------------------


def test_fetch_returns_the_feed_first_time_without_sleeping(caplog):
    reg = MetricsRegistry()
    sleeps = []
    clock = FakeClock()
    api = Flaky([], feed='[{"x": 1}]', clock=clock, latency=0.25)
    with caplog.at_level(logging.DEBUG, logger="surv_kernel"):
        feed = fetch_trade_feed("EQ", api_call=api, sleep=sleeps.append, clock=clock, registry=reg)
    assert feed == '[{"x": 1}]'
    assert api.calls == ["EQ"] and sleeps == []
    assert reg.value("surv_feed_attempts_total", desk="EQ", outcome="ok") == 1
    fetch = reg.value("surv_feed_fetch_seconds", desk="EQ")
    assert fetch["count"] == 1 and fetch["sum"] == pytest.approx(0.25)
    (record,) = desk_records(caplog, "EQ")
    assert record.attempt == 1 and record.event == "fetch_ok"


def test_fetch_retries_with_full_jitter_exponential_backoff(caplog):
    reg = MetricsRegistry()
    sleeps = []
    api = Flaky([ConnectionError("reset"), TimeoutError("slow"), TransientFeedError("503")])
    rng = FixedRng(0.5, 1.0, 0.25)
    with caplog.at_level(logging.DEBUG, logger="surv_kernel"):
        feed = fetch_trade_feed(
            7,
            max_retries=4,
            api_call=api,
            sleep=sleeps.append,
            rng=rng,
            base_delay=0.5,
            max_delay=30.0,
            registry=reg,
        )
    assert feed == "[]"
    assert api.calls == [7, 7, 7, 7]
    # attempt k sleeps uniform(0, base * 2**(k-1)): caps 0.5, 1.0, 2.0
    assert sleeps == [0.25, 1.0, 0.5]
    assert reg.value("surv_feed_retries_total", desk="7") == 3
    assert reg.value("surv_feed_attempts_total", desk="7", outcome="retryable") == 3
    assert reg.value("surv_feed_attempts_total", desk="7", outcome="ok") == 1
    records = desk_records(caplog, "7")
    assert [r.attempt for r in records] == [1, 2, 3, 4]
    assert [r.event for r in records] == ["fetch_retry"] * 3 + ["fetch_ok"]
    assert all(r.levelno == logging.WARNING for r in records[:3])


def test_fetch_backoff_is_capped():
    sleeps = []
    api = Flaky([OSError("x")] * 6)
    fetch_trade_feed(
        "FX",
        max_retries=7,
        api_call=api,
        sleep=sleeps.append,
        rng=FixedRng(),  # always the top of the range
        base_delay=1.0,
        max_delay=3.0,
        registry=MetricsRegistry(),
    )
    assert sleeps == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]


@settings(max_examples=40, deadline=None)
@given(
    fractions=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=5, max_size=5),
    base=st.floats(0.0, 5.0),
    cap=st.floats(0.0, 60.0),
)
def test_fetch_jitter_stays_inside_the_capped_range(fractions, base, cap):
    sleeps = []
    with pytest.raises(FeedUnavailableError):
        fetch_trade_feed(
            "D",
            max_retries=6,
            api_call=Flaky([ConnectionError()] * 6),
            sleep=sleeps.append,
            rng=FixedRng(*fractions),
            base_delay=base,
            max_delay=cap,
            registry=MetricsRegistry(),
        )
    assert len(sleeps) == 5
    for k, (delay, f) in enumerate(zip(sleeps, fractions, strict=True)):
        assert 0.0 <= delay <= min(cap, base * 2**k)
        assert delay == pytest.approx(f * min(cap, base * 2**k))


def test_fetch_trade_feed_returned_none_after_last_retry_now_raises(caplog):
    """Received defect: after max_retries failures it returned None."""
    reg = MetricsRegistry()
    sleeps = []
    errors = [ConnectionError(f"down {i}") for i in range(3)]
    with (
        caplog.at_level(logging.DEBUG, logger="surv_kernel"),
        pytest.raises(FeedUnavailableError) as info,
    ):
        fetch_trade_feed("CR", api_call=Flaky(errors), sleep=sleeps.append, registry=reg)
    err = info.value
    assert err.desk_id == "CR" and err.attempts == 3
    assert err.last_error is errors[2] and err.__cause__ is errors[2]
    assert "CR" in str(err) and "down 2" in str(err)
    assert len(sleeps) == 2  # no pointless sleep after the last attempt
    assert reg.value("surv_feed_failures_total", desk="CR", reason="exhausted") == 1
    last = desk_records(caplog, "CR")[-1]
    assert last.levelno == logging.ERROR and last.event == "fetch_failed" and last.attempt == 3


def test_fetch_trade_feed_printed_instead_of_logging(capsys, caplog):
    """Received defect: it printed [LOG] lines to stdout."""
    with caplog.at_level(logging.DEBUG, logger="surv_kernel"), pytest.raises(FeedUnavailableError):
        fetch_trade_feed(
            "EQ",
            api_call=Flaky([OSError()] * 3),
            sleep=lambda s: None,
            registry=MetricsRegistry(),
        )
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert len(desk_records(caplog, "EQ")) == 3


def test_fetch_does_not_retry_programming_errors():
    reg = MetricsRegistry()
    sleeps = []
    api = Flaky([TypeError("bad argument")])
    with pytest.raises(TypeError, match="bad argument"):
        fetch_trade_feed("EQ", api_call=api, sleep=sleeps.append, registry=reg)
    assert len(api.calls) == 1 and sleeps == []
    assert reg.value("surv_feed_failures_total", desk="EQ", reason="fatal") == 1
    assert reg.value("surv_feed_attempts_total", desk="EQ", outcome="fatal") == 1


def test_fetch_time_budget_stops_retrying():
    reg = MetricsRegistry()
    clock = FakeClock()
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        clock.now += s

    api = Flaky([ConnectionError()] * 10, clock=clock, latency=1.0)
    with pytest.raises(FeedUnavailableError) as info:
        fetch_trade_feed(
            "EQ",
            max_retries=10,
            api_call=api,
            sleep=sleep,
            rng=FixedRng(),
            clock=clock,
            base_delay=1.0,
            timeout_s=6.0,
            registry=reg,
        )
    # t=1 fail, sleep 1 -> t=2; t=3 fail, sleep 2 -> t=5; t=6 fail, next sleep 4 would cross 6 s
    assert sleeps == [1.0, 2.0]
    assert info.value.attempts == 3
    assert reg.value("surv_feed_failures_total", desk="EQ", reason="budget") == 1


def test_fetch_rejects_zero_attempts():
    with pytest.raises(ValueError, match="number of attempts"):
        fetch_trade_feed("EQ", 0, api_call=Flaky([]))


def test_feed_errors_pickle():
    import pickle

    err = pickle.loads(pickle.dumps(FeedUnavailableError("EQ", 3, ConnectionError("x"))))
    assert err.desk_id == "EQ" and err.attempts == 3 and "x" in str(err)
    rep = DeskRunReport((desks.DeskOutcome("EQ", None, err, "feed_unavailable", 0.1),))
    back = pickle.loads(pickle.dumps(DeskFailuresError(rep)))
    assert back.failures["EQ"].attempts == 3


# -- process_all_desks -----------------------------------------------------------


def alerts_for(desk_id):
    """A desk's distinct, recognisable alerts."""
    return [
        {"alert_id": f"{desk_id}-{k}", "desk": desk_id} for k in range(len(str(desk_id)) % 3 + 1)
    ]


def test_process_all_desks_returned_completion_order_now_keeps_desk_order():
    """Received defect: results came back in completion order without desk identity."""
    ids = ["A", "B", "C", "D", "E"]
    done = {d: threading.Event() for d in ids}

    def analyze(desk_id):
        # finish in reverse order: each desk waits for the one after it
        i = ids.index(desk_id)
        if i + 1 < len(ids):
            assert done[ids[i + 1]].wait(10)
        done[desk_id].set()
        return alerts_for(desk_id)

    reg = MetricsRegistry()
    out = process_all_desks(ids, analyze=analyze, max_workers=len(ids), registry=reg)
    assert out == [alerts_for(d) for d in ids]


def test_results_are_the_same_for_any_pool_size():
    ids = [f"D{i}" for i in range(9)]
    outs = [
        process_all_desks(ids, analyze=alerts_for, max_workers=w, registry=MetricsRegistry())
        for w in (1, 2, 9)
    ]
    assert outs[0] == outs[1] == outs[2] == [alerts_for(d) for d in ids]


def test_process_all_desks_lost_a_raising_desk_now_raises_with_the_healthy_results(caplog):
    """Received defect: an exception in a desk's thread vanished with its desk."""
    reg = MetricsRegistry()
    ids = ["EQ", "FX", "RATES", "CREDIT"]

    def analyze(desk_id):
        if desk_id == "FX":
            raise KeyError("trader_id")
        return alerts_for(desk_id)

    with (
        caplog.at_level(logging.DEBUG, logger="surv_kernel"),
        pytest.raises(DeskFailuresError) as info,
    ):
        process_all_desks(ids, analyze=analyze, registry=reg)
    err = info.value
    assert err.results == [alerts_for("EQ"), None, alerts_for("RATES"), alerts_for("CREDIT")]
    assert set(err.failures) == {"FX"} and isinstance(err.failures["FX"], KeyError)
    assert err.alerts_by_desk == {d: alerts_for(d) for d in ("EQ", "RATES", "CREDIT")}
    assert "FX" in str(err) and "1 of 4" in str(err)
    assert reg.value("surv_desk_failures_total", desk="FX", kind="error") == 1
    assert reg.value("surv_desk_runs_total", desk="FX", outcome="failed") == 1
    assert reg.total("surv_desk_runs_total", outcome="ok") == 3
    assert reg.value("surv_desk_last_failure_timestamp_seconds", desk="FX") > 0
    failed = [r for r in desk_records(caplog, "FX") if r.levelno == logging.ERROR]
    assert failed and failed[0].kind == "error" and failed[0].exc_info is not None


def test_feed_unavailable_desk_is_classified_and_others_survive():
    reg = MetricsRegistry()

    def analyze(desk_id):
        if desk_id == "RATES":
            fetch_trade_feed(
                desk_id, api_call=Flaky([ConnectionError()] * 3), sleep=lambda s: None, registry=reg
            )
        return alerts_for(desk_id)

    rep = process_all_desks(["EQ", "RATES"], analyze=analyze, report=True, registry=reg)
    assert isinstance(rep, DeskRunReport) and not rep.ok
    assert rep.results == [alerts_for("EQ"), None]
    assert [o.kind for o in rep.outcomes] == ["ok", "feed_unavailable"]
    assert reg.value("surv_desk_failures_total", desk="RATES", kind="feed_unavailable") == 1
    with pytest.raises(DeskFailuresError):
        rep.raise_for_failures()


def test_a_desk_returning_garbage_is_a_failure_not_no_alerts():
    reg = MetricsRegistry()
    garbage = {"EQ": None, "FX": "oops", "RATES": {"a": 1}}

    def analyze(desk_id):
        return garbage.get(desk_id, alerts_for(desk_id))

    rep = process_all_desks(
        ["EQ", "FX", "RATES", "CREDIT"], analyze=analyze, report=True, registry=reg
    )
    assert rep.results == [None, None, None, alerts_for("CREDIT")]
    assert [o.kind for o in rep.outcomes] == ["bad_result"] * 3 + ["ok"]
    assert reg.total("surv_desk_failures_total", kind="bad_result") == 3


def test_a_hung_desk_times_out_and_the_others_finish(caplog):
    reg = MetricsRegistry()
    release = threading.Event()

    def analyze(desk_id):
        if desk_id == "HUNG":
            release.wait(30)
            return alerts_for(desk_id)
        return alerts_for(desk_id)

    start = time.monotonic()
    try:
        with caplog.at_level(logging.DEBUG, logger="surv_kernel"):
            rep = process_all_desks(
                ["EQ", "HUNG", "FX"],
                analyze=analyze,
                deadline_s=0.3,
                report=True,
                registry=reg,
            )
        elapsed = time.monotonic() - start
    finally:
        release.set()
    assert elapsed < 5
    assert rep.results == [alerts_for("EQ"), None, alerts_for("FX")]
    (hung,) = [o for o in rep.outcomes if not o.ok]
    assert hung.kind == "timeout" and isinstance(hung.error, DeskDeadlineError)
    assert hung.seconds >= 0.3
    assert reg.value("surv_desk_failures_total", desk="HUNG", kind="timeout") == 1
    assert any(r.event == "desk_failed" for r in desk_records(caplog, "HUNG"))


def test_desks_queued_behind_hung_workers_fail_instead_of_waiting_forever():
    reg = MetricsRegistry()
    release = threading.Event()

    def analyze(desk_id):
        if desk_id == "HUNG":
            release.wait(30)
        return alerts_for(desk_id)

    try:
        start = time.monotonic()
        rep = process_all_desks(
            ["HUNG", "EQ"],
            analyze=analyze,
            max_workers=1,
            deadline_s=0.2,
            report=True,
            registry=reg,
        )
        assert time.monotonic() - start < 5
    finally:
        release.set()
    assert rep.results == [None, None]
    assert [o.kind for o in rep.outcomes] == ["timeout", "timeout"]
    assert rep.outcomes[1].error.started is False


def test_queueing_for_a_worker_does_not_count_against_the_deadline():
    # 4 desks of ~0.15 s on 1 worker: the last starts after ~0.45 s, past a
    # 0.3 s deadline counted from submission, but well inside it from its start
    reg = MetricsRegistry()

    def analyze(desk_id):
        time.sleep(0.15)
        return alerts_for(desk_id)

    ids = ["A", "B", "C", "D"]
    out = process_all_desks(ids, analyze=analyze, max_workers=1, deadline_s=0.3, registry=reg)
    assert out == [alerts_for(d) for d in ids]


def test_pool_is_bounded_and_metrics_after_a_run():
    reg = MetricsRegistry()
    running = 0
    peak = 0
    lock = threading.Lock()

    def analyze(desk_id):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return alerts_for(desk_id)

    ids = [f"D{i}" for i in range(8)]
    out = process_all_desks(ids, analyze=analyze, max_workers=3, registry=reg)
    assert out == [alerts_for(d) for d in ids]
    assert peak <= 3
    assert reg.value("surv_pool_workers") == 3
    assert reg.value("surv_desks_in_flight") == 0
    assert reg.total("surv_desk_runs_total", outcome="ok") == 8
    assert reg.total("surv_desk_seconds") == 8
    for d in ids:
        assert reg.value("surv_desk_seconds", desk=d)["sum"] >= 0.02
        assert reg.value("surv_desk_last_success_timestamp_seconds", desk=d) > 0
    assert reg.total("surv_desk_failures_total") == 0


def test_default_workers_and_env_knobs(monkeypatch):
    monkeypatch.delenv(desks.ENV_MAX_WORKERS, raising=False)
    assert desks.default_workers(1) == 1
    assert 5 <= desks.default_workers(100) <= 100  # cores + 4
    monkeypatch.setenv(desks.ENV_MAX_WORKERS, "2")
    assert desks.default_workers(6) == 2
    monkeypatch.setenv(desks.ENV_MAX_WORKERS, "zero")
    with pytest.raises(ValueError, match="SURV_MAX_WORKERS"):
        desks.default_workers(6)
    monkeypatch.setenv(desks.ENV_DESK_DEADLINE_S, "none")
    assert desks.resolve_deadline(None) is None
    monkeypatch.setenv(desks.ENV_DESK_DEADLINE_S, "2.5")
    assert desks.resolve_deadline(None) == 2.5
    assert desks.resolve_deadline(1.0) == 1.0
    monkeypatch.delenv(desks.ENV_DESK_DEADLINE_S)
    assert desks.resolve_deadline(None) == desks.DEFAULT_DESK_DEADLINE_S
    with pytest.raises(ValueError, match="deadline_s"):
        desks.resolve_deadline(0)


def test_empty_desk_list():
    assert process_all_desks([], analyze=alerts_for, registry=MetricsRegistry()) == []
    assert process_all_desks(
        iter([]), analyze=alerts_for, report=True, registry=MetricsRegistry()
    ).ok


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 8),
    fail=st.sets(st.integers(0, 7)),
    workers=st.integers(1, 4),
)
def test_no_desk_alerts_are_ever_lost(n, fail, workers):
    """Every healthy desk's alerts are in its slot; every failed desk is named.

    Whatever subset fails, the union of what the caller sees (returned list,
    or the exception's results + failures) accounts for every desk exactly.
    """
    ids = [f"D{i}" for i in range(n)]
    failing = {ids[i] for i in fail if i < n}

    def analyze(desk_id):
        if desk_id in failing:
            raise RuntimeError(desk_id)
        return alerts_for(desk_id)

    reg = MetricsRegistry()
    try:
        results = process_all_desks(ids, analyze=analyze, max_workers=workers, registry=reg)
        failures = {}
    except DeskFailuresError as err:
        results, failures = err.results, err.failures
    assert len(results) == n
    for desk_id, got in zip(ids, results, strict=True):
        if desk_id in failing:
            assert got is None and desk_id in failures
        else:
            assert got == alerts_for(desk_id)
    assert set(failures) == failing
    assert reg.total("surv_desk_failures_total") == len(failing)
    assert reg.total("surv_desk_runs_total", outcome="ok") == n - len(failing)


# -- the real path: ingest + model ------------------------------------------------


@pytest.fixture(scope="module")
def day_feeds():
    return generate_day(3).feeds()


@pytest.fixture(scope="module")
def alerting_desk(day_feeds):
    """The desk with the most alerts that day (tests below need some)."""
    counts = {d: len(analyze_feed(d, f, registry=MetricsRegistry())) for d, f in day_feeds.items()}
    desk = max(counts, key=counts.get)
    assert counts[desk] > 0, f"the scenario day has no alerts at all: {counts}"
    return desk


@pytest.fixture
def no_sleep(monkeypatch):
    """The shim cannot take a sleeper; fetch looks time.sleep up per call."""
    sleeps = []
    monkeypatch.setattr(desks.time, "sleep", sleeps.append)
    return sleeps


def test_analyze_feed_is_decode_then_detect_and_counts_everything(day_feeds, alerting_desk, caplog):
    desk = alerting_desk
    feed = day_feeds[desk]
    reg = MetricsRegistry()
    now = 2_000_000_000.0
    with caplog.at_level(logging.DEBUG, logger="surv_kernel"):
        alerts = analyze_feed(desk, feed, registry=reg, clock=lambda: now)
    batch, quarantine = decode_feed(feed, desk=desk)
    detection = detect(batch, DetectionConfig())
    assert alerts == [a.to_dict() for a in detection.alerts]
    assert alerts, "the scenario day must give this desk alerts to check"
    assert reg.value("surv_trades_decoded_total", desk=desk) == len(batch)
    assert reg.total("surv_records_quarantined_total", desk=desk) == len(quarantine)
    assert reg.value("surv_alerts_emitted_total", desk=desk) == len(alerts)
    assert reg.total("surv_alerts_suppressed_total", desk=desk) == len(detection.suppressed)
    assert reg.value("surv_decode_seconds", desk=desk)["count"] == 1
    assert reg.value("surv_detect_seconds", desk=desk)["count"] == 1
    lag = reg.value("surv_alert_lag_seconds", desk=desk)
    assert lag["count"] == len(alerts)
    expected = [now - a.end_ns / 1e9 for a in detection.alerts]
    assert lag["sum"] == pytest.approx(sum(expected))
    assert lag["max"] == pytest.approx(max(expected))
    (summary,) = [r for r in desk_records(caplog, desk) if r.event == "desk_analyzed"]
    assert summary.alerts == len(alerts) and summary.trades == len(batch)


def test_quarantined_records_are_logged_and_counted_not_dropped(day_feeds, caplog):
    desk = "NY Equities"
    rows = json.loads(day_feeds[desk])
    bad = [
        dict(rows[0], trade_id="BAD-CCY", currency="XYZ"),
        {k: v for k, v in rows[1].items() if k != "notional"} | {"trade_id": "BAD-MISSING"},
        dict(rows[2], trade_id="BAD-AC", asset_class="crypto"),
    ]
    feed = json.dumps(rows[:50] + bad + rows[50:]).encode()
    reg = MetricsRegistry()
    with caplog.at_level(logging.DEBUG, logger="surv_kernel"):
        analyze_feed(desk, feed, registry=reg)
    _, quarantine = decode_feed(feed, desk=desk)
    assert len(quarantine) == 3
    assert reg.total("surv_records_quarantined_total", desk=desk) == 3
    assert reg.value("surv_trades_decoded_total", desk=desk) == len(rows)
    (warning,) = [r for r in desk_records(caplog, desk) if r.event == "records_quarantined"]
    assert warning.levelno == logging.WARNING and warning.quarantined == 3
    assert sorted(warning.first_positions) == [50, 51, 52]


def test_garbage_feeds_are_bad_feed_failures(day_feeds):
    reg = MetricsRegistry()
    with pytest.raises(FeedError):
        analyze_feed("EQ", b"<html>502 Bad Gateway</html>", registry=reg)
    with pytest.raises(FeedError, match="NoneType"):
        analyze_feed("EQ", None, registry=reg)
    garbage = {"A": b"<html>", "B": None, "C": 12345}
    good = day_feeds["NY Equities"]
    rep = process_all_desks(
        ["A", "B", "GOOD", "C"],
        analyze=lambda d: analyze_feed(d, garbage.get(d, good), registry=reg),
        report=True,
        registry=reg,
    )
    assert [o.kind for o in rep.outcomes] == ["bad_feed", "bad_feed", "ok", "bad_feed"]
    assert rep.results[2] == analyze_feed("GOOD", good, registry=MetricsRegistry())
    assert reg.total("surv_desk_failures_total", kind="bad_feed") == 3


def test_real_desks_give_the_same_alerts_for_any_pool_size(day_feeds):
    names = list(day_feeds)

    def analyze(d):
        return analyze_feed(d, day_feeds[d], registry=MetricsRegistry())

    serial = [analyze(d) for d in names]
    for workers in (1, 3, 6):
        assert (
            process_all_desks(
                names, analyze=analyze, max_workers=workers, registry=MetricsRegistry()
            )
            == serial
        )


def test_legacy_process_all_desks_through_the_shim(day_feeds, monkeypatch, no_sleep):
    monkeypatch.setattr(tsp, "_api_call", lambda desk_id: day_feeds[desk_id])
    names = list(day_feeds)
    out = tsp.process_all_desks(names)
    live = _live_run(day_feeds)  # what surv-kernel run delivers, by home desk
    assert out == [live[d] for d in names]
    assert any(out), "the scenario day must have alerts"
    assert tsp.fetch_trade_feed(names[0]) == day_feeds[names[0]]


def test_analyze_desk_turned_a_dead_feed_into_no_anomalies(monkeypatch, no_sleep):
    """Received defect: fetch returned None and analyze_desk returned []."""
    calls = []

    def dead(desk_id):
        calls.append(desk_id)
        raise ConnectionError("feed service down")

    monkeypatch.setattr(tsp, "_api_call", dead)
    with pytest.raises(FeedUnavailableError) as info:
        tsp.analyze_desk("EQ")
    assert calls == ["EQ"] * 3 and len(no_sleep) == 2
    assert isinstance(info.value.last_error, ConnectionError)


def test_legacy_process_all_desks_keeps_healthy_desks_when_one_is_dead(
    day_feeds, monkeypatch, no_sleep
):
    names = list(day_feeds)

    def api(desk_id):
        if desk_id == names[2]:
            raise TimeoutError("read timed out")
        return day_feeds[desk_id]

    monkeypatch.setattr(tsp, "_api_call", api)
    with pytest.raises(DeskFailuresError) as info:
        tsp.process_all_desks(names)
    err = info.value
    healthy = _live_run({d: f for d, f in day_feeds.items() if d != names[2]})
    expected = [healthy.get(d) for d in names]
    assert err.results == expected
    assert list(err.failures) == [names[2]]
    assert isinstance(err.failures[names[2]], FeedUnavailableError)


def _live_run(day_feeds):
    """What the live run (``surv-kernel run`` over every desk) delivered, by home desk."""
    from surv_kernel.pipeline import BytesSource, LocalEngine, run

    reg = MetricsRegistry()
    sources = [BytesSource(d, f) for d, f in day_feeds.items()]
    result = run(sources, engine=LocalEngine(registry=reg), registry=reg)
    return result.desk_report().alerts_by_desk


def test_replay_window_delivers_exactly_the_missing_alerts(day_feeds, tmp_path):
    names = list(day_feeds)
    live = _live_run(day_feeds)
    dead = max(live, key=lambda d: len(live[d]))  # the desk whose delivery was lost
    delivered = {a["alert_id"] for d in names if d != dead for a in live[d]}
    paths = {}
    for d in names:
        paths[d] = tmp_path / f"{d}.json"
        paths[d].write_bytes(day_feeds[d])
    result = replay_window({d: str(p) for d, p in paths.items()}, delivered_ids=delivered)
    assert result.report.ok
    assert result.new_alerts[dead] == live[dead] and live[dead]
    assert all(result.new_alerts[d] == [] for d in names if d != dead)
    assert sum(result.duplicates.values()) == len(delivered)
    # replaying again after delivering finds nothing new: no duplicates
    delivered |= {a["alert_id"] for a in result.new_alerts[dead]}
    again = replay_window({d: str(p) for d, p in paths.items()}, delivered_ids=delivered)
    assert all(v == [] for v in again.new_alerts.values())


def _split_burst_day():
    """Two equity desks of ordinary traders; T0 books 2M on each within four
    minutes: 4M together (floor 3M), under the floor on either desk alone."""
    t0 = 1_710_403_200.0 + 9 * 3600
    rows = {"EQ_NY": [], "EQ_LDN": []}
    for desk, trader_base in (("EQ_NY", 0), ("EQ_LDN", 100)):
        for i in range(400):  # ordinary days of 10 traders per desk, 0.2-0.3M trades
            rows[desk].append(
                {
                    "trade_id": f"{desk}-{i}",
                    "asset_class": "equity",
                    "notional": 200_000.0 + 1_000.0 * (i % 97),
                    "currency": "USD",
                    "trader_id": f"T{trader_base + i % 10}",
                    "timestamp": t0 + 60.0 * i,
                    "surveillance_required": False,
                }
            )
    # T0's burst: 2M on each desk within ten minutes: 4M together (floor 3M),
    # under the floor on either desk alone
    for desk in rows:
        for k in range(4):
            rows[desk].append(
                {
                    "trade_id": f"{desk}-burst-{k}",
                    "asset_class": "equity",
                    "notional": 500_000.0,
                    "currency": "USD",
                    "trader_id": "T0",
                    "timestamp": t0 + 5 * 3600 + 60.0 * k + (30.0 if desk == "EQ_LDN" else 0.0),
                    "surveillance_required": True,
                }
            )
    return rows


def test_replay_detected_per_desk_and_lost_a_burst_split_across_two_desks(tmp_path):
    """The run judges a trader across every desk that booked it; replay must
    too, or a replay can never restore a cross-desk alert the run made."""
    import subprocess
    import sys

    rows = _split_burst_day()
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for desk, trades in rows.items():
        (feeds / f"{desk}.json").write_text(json.dumps(trades))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "surv_kernel", "run", str(feeds), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    run_alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    split = [a for a in run_alerts if a["desks"] == ["EQ_LDN", "EQ_NY"]]
    assert [a["trader_id"] for a in split] == ["T0"]
    # per desk, nothing: the burst is under the floor on each desk alone
    assert all(analyze_feed(d, (feeds / f"{d}.json").read_bytes()) == [] for d in rows)
    replay = replay_window({d: str(feeds / f"{d}.json") for d in rows})
    replayed = [a for alerts in replay.new_alerts.values() for a in alerts]
    assert sorted(a["alert_id"] for a in replayed) == sorted(a["alert_id"] for a in run_alerts)
    assert {a["alert_id"]: a for a in replayed} == {a["alert_id"]: a for a in run_alerts}


def test_replay_of_a_feed_split_into_files_matches_the_whole_feed(
    day_feeds, alerting_desk, tmp_path
):
    desk = alerting_desk
    rows = json.loads(day_feeds[desk])
    half = len(rows) // 2
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(rows[:half]))
    second.write_text(json.dumps(rows[half:]))
    whole = replay_window({desk: day_feeds[desk]})
    split = replay_window({desk: [str(first), second]})
    assert split.new_alerts == whole.new_alerts and whole.new_alerts[desk]
    assert split.trades == whole.trades == {desk: len(rows)}


def test_replay_names_a_desk_whose_feed_is_still_garbage(tmp_path):
    result = replay_window({"EQ": b"not json"})
    assert not result.report.ok and "EQ" in result.report.failures
    assert "EQ" not in result.new_alerts


def test_run_demo_rehearses_a_dead_desk(tmp_path):
    reg = MetricsRegistry()
    rep = run_demo(dead_desks=["NY Rates"], archive_dir=tmp_path, registry=reg)
    assert list(rep.failures) == ["NY Rates"]
    assert sum(len(a) for a in rep.alerts_by_desk.values()) > 0
    assert reg.value("surv_desk_failures_total", desk="NY Rates", kind="feed_unavailable") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{o.desk_id}.json" for o in rep.outcomes
    )
    with pytest.raises(ValueError, match="unknown desk"):
        run_demo(dead_desks=["Mars"], registry=MetricsRegistry())


def test_warm_up_runs_the_whole_path():
    assert warm_up() > 0


def test_reason_labels_stay_bounded():
    """Reasons with numbers in them must not become one time series each."""
    reasons = [f"within baseline: z={z / 10:.1f} < 3, ratio {z / 7:.1f} < 2" for z in range(500)]
    assert {desks.reason_label(r) for r in reasons} == {"within_baseline"}
    assert desks.reason_label("unknown_currency") == "unknown_currency"
    assert desks.reason_label("Bad -- thing: detail") == "bad_thing"
    assert desks.reason_label("") == "unspecified"
    assert len(desks.reason_label("x" * 500)) == 48


# --- allocator tuning (the six-desk benchmark's page-fault finding) ---------


def test_tune_allocator_applies_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt tuning is glibc-only")
    assert desks.tune_allocator() is True


def test_process_all_desks_tunes_allocator_once_unless_disabled(monkeypatch):
    calls = []
    from surv_kernel.pipeline import pool

    monkeypatch.setattr(pool, "tune_allocator", lambda: calls.append(1) or True)
    monkeypatch.setattr(pool, "_allocator_tuned", None)
    monkeypatch.setenv("SURV_MALLOC_TUNING", "0")
    assert desks.process_all_desks(["A"], analyze=lambda d: []) == [[]]
    assert calls == []
    monkeypatch.delenv("SURV_MALLOC_TUNING")
    desks.process_all_desks(["A", "B"], analyze=lambda d: [])
    desks.process_all_desks(["A"], analyze=lambda d: [])
    assert calls == [1]


def test_legacy_process_all_desks_caught_no_burst_split_across_two_desks(monkeypatch, no_sleep):
    """Received behaviour: each desk analysed alone, so a trader who splits a
    burst over two desks stays under the floor on both. The shim now detects
    across the desks it fetched, as surv-kernel run does."""
    rows = _split_burst_day()
    monkeypatch.setattr(tsp, "_api_call", lambda d: json.dumps(rows[d]))
    assert all(tsp.analyze_desk(d) == [] for d in rows)  # one desk's view: nothing
    out = tsp.process_all_desks(list(rows))
    alerts = [a for desk_alerts in out for a in desk_alerts]
    assert [a["trader_id"] for a in alerts] == ["T0"]
    assert alerts[0]["desks"] == ["EQ_LDN", "EQ_NY"]


def test_a_hung_feed_kept_the_process_from_exiting(tmp_path):
    """Received (and first-stage) behaviour: the pool's non-daemon worker,
    stuck in a feed call that never returns, kept the interpreter alive at
    exit. Now the process exits within the deadline plus a little."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            import trade_surveillance_pipeline as tsp
            from surv_kernel import DeskFailuresError

            def api(desk_id):
                if desk_id == "HUNG":
                    threading.Event().wait()  # a feed that never answers
                return tsp._api_call.__wrapped__(desk_id)

            api.__wrapped__ = tsp._api_call
            tsp._api_call = api
            try:
                tsp.process_all_desks(["EQ", "HUNG"])
            except DeskFailuresError as exc:
                print("failed:", sorted(exc.failures), "healthy:", len(exc.results[0]))
            """
        )
    )
    env = {**os.environ, "SURV_DESK_DEADLINE_S": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=30
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "failed: ['HUNG'] healthy: 0" in proc.stdout  # EQ answered: its (empty) alert list
    assert elapsed < 1 + 2 + 2.5, f"took {elapsed:.1f}s (interpreter start included)"


def test_a_late_feed_was_counted_though_its_alerts_were_never_delivered(day_feeds, alerting_desk):
    """A desk past its deadline is abandoned; when its call returns later,
    nothing it did may move the metrics: its trades and alerts were not
    delivered. The abandoned-call gauge shows it while it is out."""
    release = threading.Event()
    returned = threading.Event()
    reg = MetricsRegistry()
    feed = day_feeds[alerting_desk]

    def analyze(desk):
        if desk == "LATE":
            release.wait()
            try:
                return analyze_feed("LATE", feed, registry=reg)
            finally:
                returned.set()
        return analyze_feed(desk, feed, registry=reg)

    rep = process_all_desks(
        ["ON_TIME", "LATE"], analyze=analyze, deadline_s=0.3, report=True, registry=reg
    )
    assert rep.outcomes[1].kind == "timeout" and rep.outcomes[0].ok
    assert reg.value("surv_desks_abandoned_in_flight") == 1
    release.set()
    assert returned.wait(10)
    for _ in range(100):  # the worker records the discard just after returning
        if reg.value("surv_desks_abandoned_in_flight") == 0:
            break
        time.sleep(0.01)
    assert reg.value("surv_desks_abandoned_in_flight") == 0
    assert reg.value("surv_desk_late_results_discarded_total", desk="LATE") == 1
    assert reg.value("surv_trades_decoded_total", desk="LATE") == 0
    assert reg.value("surv_alerts_emitted_total", desk="LATE") == 0
    assert reg.value("surv_alerts_emitted_total", desk="ON_TIME") == len(rep.outcomes[0].alerts)
