"""The alert store on SQLite and on a real PostgreSQL server (same tests, same SQL).

The issue's "done when": a run written twice leaves one row per alert id and
two run records; a stream replay of the day adds no alert rows; every
suppressed episode is stored with its reason; a disposition round trip shows
in the history; the audit log cannot be edited; a run is all-or-nothing, even
when its writer is killed mid-transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap

import msgspec
import numpy as np
import pytest

from store_backends import BACKENDS, make_url
from surv_kernel.errors import ConfigError, DataError, InputError, SurveillanceError
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.model import DetectionConfig, calibrate
from surv_kernel.pipeline import BytesSource, run
from surv_kernel.store import (
    RETENTION_FLOOR_DAYS,
    SCHEMA_VERSION,
    AlertNotFoundError,
    Store,
    StoreConfigError,
    StoreDataError,
    StoreSink,
    StoreUnavailableError,
    StoreWriteError,
    TransitionError,
    cases,
    check,
    open_store,
    prune,
)
from surv_kernel.store.backend import driver_errors
from surv_kernel.stream import SurveillanceStream


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    return make_url(request.param, tmp_path, request)


@pytest.fixture(scope="module")
def day():
    """One labelled six-desk day's feeds, desk -> bytes."""
    return generate_day(3).feeds()


def sources(feeds):
    return [BytesSource(desk, data) for desk, data in feeds.items()]


def test_run_twice_one_row_per_alert_two_run_records(url, day):
    r1 = run(sources(day), sinks=[StoreSink(url, who="ops")])
    r2 = run(sources(day), sinks=[StoreSink(url, who="ops")])
    ids = {a.alert_id for a in r1.detection.alerts}
    assert ids and ids == {a.alert_id for a in r2.detection.alerts}
    with open_store(url) as s:
        assert s.count("alerts") == len(ids)
        assert s.count("dispositions") == len(ids)
        runs = s.runs()
        assert len(runs) == 2
        assert [r["n_alerts"] for r in runs] == [len(ids)] * 2
        assert s.count("run_alerts") == 2 * len(ids)
        # one 'created' entry per alert, not one per sighting
        assert s.count("audit_log") == len(ids)
        stored = {r["alert_id"]: r for r in s.list_alerts(content=True)}
        assert set(stored) == ids
        for a, d, home in zip(r1.detection.alerts, r1.alert_dicts(), r1.home_desks(), strict=True):
            row = stored[a.alert_id]
            content = dict(row["content"])
            peak = content.pop("peak_trades")
            assert content == {**json.loads(msgspec.json.encode(d)), "desk": home}
            assert row["desk"] == home
            # the peak window's trades, in full: they add up to the peak sum
            assert [t["trade_id"] for t in peak] == a.trades
            assert sum(t["notional_usd"] for t in peak) == pytest.approx(a.peak_window_sum_usd)
            assert all(a.peak_ns - 60e9 * a.window_minutes <= t["timestamp_ns"] <= a.peak_ns
                       for t in peak)  # fmt: skip
            assert {t["desk"] for t in peak} == set(d["desks"])
            assert row["score"] == a.score and row["status"] == "open"
        desks = s.run_desks(runs[0]["run_id"])
        assert {d["desk"] for d in desks} == set(day)
        assert sum(d["trades"] for d in desks) == runs[0]["n_trades"] == len(r1.batch)
        assert sum(d["alerts"] for d in desks) == len(ids)
        assert all(
            d["outcome"] == "ok" and d["seen"] == d["trades"] + d["quarantined"] for d in desks
        )
        assert check(s) == []


def test_every_suppressed_episode_is_stored_with_its_reason(url, day):
    r = run(sources(day), sinks=[sink := StoreSink(url)])
    sup = r.detection.suppressed
    assert len(sup) > 10
    with open_store(url) as s:
        stored = s.suppressed(sink.run_id)
    assert len(stored) == len(sup)
    enc = msgspec.json.encode  # NaN -> null on both sides: NaN != NaN otherwise
    for ep, row in zip(sup, stored, strict=True):
        assert (row["trader_id"], row["asset_class"], row["start_ns"], row["peak_ns"]) == (
            ep.trader_id,
            ep.asset_class,
            ep.start_ns,
            ep.peak_ns,
        )
        assert row["reason"] == ep.reason and row["reason"].startswith("within baseline")
        assert row["n_trades"] == ep.n_trades
        assert enc(row["explanation"]) == enc(ep.explanation)


def _stream_day(result, base, cfg, store, pieces=7):
    """Push the merged day through a stream in time order, writing every
    push's events to the store; returns the closed alerts."""
    batch = result.batch
    order = np.argsort(batch.timestamp_ns, kind="stable")
    stream = SurveillanceStream(
        cfg, base, lateness_ns=0, dictionaries=batch.dictionaries, metrics=None
    )
    closed = {}
    statuses = set()
    for rows in np.array_split(order, pieces):
        up = stream.push(batch.take(rows))
        store.record_events(up.events, who="stream")
        statuses |= {e.status for e in up.events}
        closed.update({e.episode_id: e.alert for e in up.events if e.status == "closed"})
    up = stream.flush()
    store.record_events(up.events, who="stream")
    closed.update({e.episode_id: e.alert for e in up.events if e.status == "closed"})
    return closed, statuses


def test_stream_replay_of_the_day_adds_no_alert_rows(url, day):
    cfg = DetectionConfig()
    first = run(sources(day), config=cfg)
    base = calibrate(first.batch, cfg)
    batch_run = run(sources(day), config=cfg, baselines=base, sinks=[StoreSink(url)])
    ids = {a.alert_id for a in batch_run.detection.alerts}
    with open_store(url) as s:
        before = {r["alert_id"]: r["content"] for r in s.list_alerts(content=True)}
        closed, statuses = _stream_day(batch_run, base, cfg, s)
        assert "open" in statuses  # the stream really emitted partial episodes
        assert set(closed) == ids
        assert s.count("alerts") == len(ids)
        # a second replay: the open/update events must not regress final content
        _stream_day(batch_run, base, cfg, s, pieces=3)
        after = {r["alert_id"]: r["content"] for r in s.list_alerts(content=True)}
        assert s.count("alerts") == len(ids) and s.count("audit_log") == len(ids)
    for aid, content in before.items():
        for key in ("start_ns", "end_ns", "peak_ns", "trades", "score", "peak_window_sum_usd"):
            assert after[aid][key] == content[key]


def test_stream_events_alone_upsert_one_row_per_episode(url, day):
    """Without a batch run: open -> update -> closed of each episode is one row,
    marked final only once closed."""
    cfg = DetectionConfig()
    result = run(sources(day), config=cfg)
    with open_store(url) as s:
        closed, _ = _stream_day(result, None, cfg, s)
        rows = s.list_alerts()
        assert len(rows) == len({r["alert_id"] for r in rows}) >= len(closed) > 0
        by_id = {r["alert_id"]: r for r in rows}
        assert all(by_id[a]["stream_status"] == "closed" for a in closed)


def _one_alert(url, day):
    run(sources(day), sinks=[StoreSink(url)])
    s = open_store(url)
    return s, s.list_alerts(limit=3)


def test_disposition_round_trip_shows_in_history(url, day):
    s, top = _one_alert(url, day)
    with s:
        aid = top[0]["alert_id"]
        cases.assign(s, aid[:10], "maria", who="lead")
        assert s.alert(aid)["status"] == "under_review"
        assert s.alert(aid)["assignee"] == "maria"
        cases.close(s, aid, "false_positive", "hedge of a client order, see ticket 42", who="maria")
        a = s.alert(aid)
        assert (a["status"], a["disposition"]) == ("closed", "false_positive")
        h = s.history(aid)
        assert [e["action"] for e in h] == ["created", "assign", "close"]
        assert [(e["from_status"], e["to_status"]) for e in h] == [
            (None, "open"),
            ("open", "under_review"),
            ("under_review", "closed"),
        ]
        assert [e["who"] for e in h[1:]] == ["lead", "maria"]
        assert h[2]["reason"] == "hedge of a client order, see ticket 42"
        stamps = [dt.datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%S.%fZ") for e in h]
        assert stamps == sorted(stamps)
        assert abs(stamps[-1] - dt.datetime.utcnow()) < dt.timedelta(minutes=5)
        # escalation path, then reopen
        other = top[1]["alert_id"]
        cases.assign(s, other, "ken", who="lead")
        cases.escalate(s, other, "pattern across three days", who="ken")
        assert s.alert(other)["status"] == "escalated"
        cases.close(s, other, "reported", "STOR filed", who="compliance")
        cases.reopen(s, other, "new evidence", who="compliance")
        a = s.alert(other)
        assert (a["status"], a["disposition"]) == ("under_review", None)
        assert check(s) == []


@pytest.mark.parametrize(
    "steps, error",
    [
        ([("close", "no_action", "x")], "is open: cannot close"),
        ([("escalate", "x")], "is open: cannot escalate"),
        ([("reopen", "x")], "is open: cannot reopen"),
        ([("assign", "a"), ("close", "no_action", " ")], "needs --reason"),
        ([("assign", "a"), ("close", "maybe", "x")], "disposition must be one of"),
        ([("assign", "a"), ("escalate", "x"), ("escalate", "y")], "is escalated: cannot escalate"),
        (
            [("assign", "a"), ("close", "no_action", "x"), ("assign", "b")],
            "is closed: cannot assign",
        ),
        ([("assign", " ")], "assign needs --to"),
    ],
)
def test_illegal_transitions_are_clear_errors_and_change_nothing(url, day, steps, error):
    s, top = _one_alert(url, day)
    aid = top[0]["alert_id"]
    fns = {"assign": cases.assign, "close": cases.close, "escalate": cases.escalate,
           "reopen": cases.reopen}  # fmt: skip
    with s:
        *ok, bad = steps
        for name, *a in ok:
            fns[name](s, aid, *a, who="t")
        before = (s.alert(aid), s.history(aid))
        with pytest.raises(TransitionError, match=error) as info:
            fns[bad[0]](s, aid, *bad[1:], who="t")
        assert isinstance(info.value, ConfigError)  # the CLI's exit 2
        assert (s.alert(aid), s.history(aid)) == before


def test_two_analysts_racing_never_both_land(tmp_path, request, day, monkeypatch):
    """A's step reads the case, B changes it before A writes: A's conditional
    UPDATE matches nothing and A fails; B's step and only B's is in the log.
    (On SQLite the race cannot start: BEGIN IMMEDIATE makes B wait for A.)"""
    url = make_url("postgresql", tmp_path, request)
    s, top = _one_alert(url, day)
    aid = top[0]["alert_id"]
    other = open_store(url, migrate=False)
    orig = s.backend.query

    def query_then_b_acts(sql, params=()):
        rows = orig(sql, params)
        if sql.startswith("SELECT status FROM dispositions"):
            cases.assign(other, aid, "bea", who="b")
        return rows

    with s, other:
        monkeypatch.setattr(s.backend, "query", query_then_b_acts)
        with pytest.raises(SurveillanceError, match="changed while this step ran"):
            cases.assign(s, aid, "al", who="a")
        monkeypatch.undo()
        assert s.alert(aid)["assignee"] == "bea"
        assert [(e["action"], e["who"]) for e in s.history(aid)][1:] == [("assign", "b")]
        assert check(s) == []


def test_unknown_alert_is_an_input_error(url, day):
    s, _ = _one_alert(url, day)
    with s, pytest.raises(AlertNotFoundError, match="no alert 'nope'") as info:
        cases.assign(s, "nope", "maria")
    assert isinstance(info.value, InputError)


def test_audit_log_has_no_update_or_delete_path(url, day):
    s, top = _one_alert(url, day)
    aid = top[0]["alert_id"]
    with s:
        cases.assign(s, aid, "maria")
        # the API: nothing that edits or deletes audit rows
        api = [n for obj in (Store, cases) for n in dir(obj) if not n.startswith("__")]
        assert not [n for n in api if any(w in n.lower() for w in ("delete", "edit", "update"))]
        # the database: every way around the API is refused by the triggers
        b = s.backend
        stmts = [
            "UPDATE audit_log SET who = 'mallory'",
            "UPDATE audit_log SET reason = 'nothing to see' WHERE action = 'assign'",
            "DELETE FROM audit_log",
            "DELETE FROM audit_log WHERE action = 'assign'",
        ]
        if s.dialect == "postgresql":
            stmts.append("TRUNCATE audit_log")
        for stmt in stmts:
            with pytest.raises(StoreWriteError, match="append-only"), b.transaction():
                b.execute(stmt)
        h = s.history(aid)
        assert [e["action"] for e in h] == ["created", "assign"] and h[1]["who"] != "mallory"
        # and a case edited behind the API's back no longer matches its audit trail
        with b.transaction():
            b.execute("UPDATE dispositions SET status = 'closed' WHERE alert_id = ?", (aid,))
        assert any("differs from their last audit entry" in p for p in check(s))


def test_a_failed_write_leaves_nothing_of_the_run(url, day, monkeypatch):
    run(sources(day), sinks=[StoreSink(url)])
    with open_store(url) as s:
        n_alerts, n_audit = s.count("alerts"), s.count("audit_log")
        orig = s.backend.insert_rows

        def fail_on_suppressed(table, cols, rows):
            if table == "suppressed":
                raise driver_errors()[0]("disk full (simulated)")
            return orig(table, cols, rows)

        monkeypatch.setattr(s.backend, "insert_rows", fail_on_suppressed)
        fresh = generate_day(4).feeds()  # new alerts: they must not appear either
        with pytest.raises(SurveillanceError, match="disk full"):
            run(sources(fresh), sinks=[StoreSink(s)])
        assert len(s.runs()) == 1
        assert (s.count("alerts"), s.count("audit_log")) == (n_alerts, n_audit)
        assert check(s) == []


_WRITER = textwrap.dedent(
    """
    import sys, time
    from surv_kernel.evaluation.scenario import generate_day
    from surv_kernel.pipeline import BytesSource, run
    from surv_kernel.store import StoreSink, open_store

    url, pause = sys.argv[1], sys.argv[2] == "pause"
    store = open_store(url)
    orig = store.backend.insert_rows

    def slow(table, cols, rows):
        orig(table, cols, rows)
        if table == "suppressed" and pause:
            # everything of the run is written, uncommitted: say so, then hang
            print("in transaction", flush=True)
            time.sleep(600)

    store.backend.insert_rows = slow
    feeds = generate_day(5).feeds()
    run([BytesSource(d, b) for d, b in feeds.items()], sinks=[StoreSink(store)])
    print("committed", flush=True)
    """
)


def test_killed_writer_leaves_all_or_nothing(url, tmp_path):
    """SIGKILL a real process after it wrote every row of a run but before
    COMMIT: the store has none of it; the same run left to finish: all of it."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    with open_store(url):
        pass  # the schema exists before the writer starts
    with subprocess.Popen(
        [sys.executable, str(script), url, "pause"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout.readline().strip() == "in transaction"
            with open_store(url, migrate=False) as s:  # a reader meanwhile sees nothing of it
                assert (s.count("runs"), s.count("alerts")) == (0, 0)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with open_store(url) as s:
        tables = ("runs", "alerts", "suppressed", "run_alerts", "audit_log", "run_desks")
        assert {t: s.count(t) for t in tables} == dict.fromkeys(tables, 0)
        assert check(s) == []
    done = subprocess.run(
        [sys.executable, str(script), url, "go"], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "committed", done.stderr
    with open_store(url) as s:
        (r,) = s.runs()
        assert r["n_alerts"] == s.count("alerts") > 0
        assert r["n_suppressed"] == s.count("suppressed") > 0
        assert check(s) == []


def test_prune_keeps_five_years_and_open_cases(url, day):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=RETENTION_FLOOR_DAYS + 100)
    with open_store(url, clock=lambda: old) as s:
        s.write_run(run(sources(day)))
        ids = [r["alert_id"] for r in s.list_alerts()]
        closed, escalated = ids[0], ids[1]
        cases.assign(s, closed, "a")
        cases.close(s, closed, "no_action", "reviewed", who="a")
        cases.assign(s, escalated, "a")
        cases.escalate(s, escalated, "for compliance", who="a")
    fresh = generate_day(4)
    with open_store(url) as s:
        s.write_run(run(sources(fresh.feeds())))
        n_alerts = s.count("alerts")
        for days in (30, 365, RETENTION_FLOOR_DAYS - 1):
            with pytest.raises(StoreConfigError, match="refusing to prune"):
                prune(s, days)
        with pytest.raises(StoreConfigError, match="shorter than MAR"):
            prune(s, 4000, retention_days=365)
        dry = prune(s, RETENTION_FLOOR_DAYS, dry_run=True)
        assert dry == {
            "runs": 1,
            "suppressed": dry["suppressed"],
            "alerts": 1,
            "audit_entries": 3,
            "kept_not_closed": len(ids) - 1,
        }
        assert s.count("alerts") == n_alerts  # dry run
        done = prune(s, RETENTION_FLOOR_DAYS)
        assert done == dry and done["suppressed"] > 0
        assert len(s.runs()) == 1
        assert s.count("alerts") == n_alerts - 1
        with pytest.raises(AlertNotFoundError):
            s.alert(closed)
        assert s.alert(escalated)["status"] == "escalated"  # old, but not closed: kept
        assert len(s.history(escalated)) == 3
        assert check(s) == []
        # the database's own floor: a young audit row cannot be deleted even
        # by SQL that bypasses prune
        b = s.backend
        with pytest.raises(StoreWriteError, match="append-only"), b.transaction():
            b.execute("DELETE FROM audit_log WHERE at > ?", ("2000-01-01",))


def _naive(rows, status=None, desk=None, trader=None, asset_class=None, typology=None,
           since=None, until=None, min_score=None):  # fmt: skip
    """The filter, obviously right, over every row."""
    return sorted(
        r["alert_id"]
        for r in rows
        if (status is None or r["status"] in status)
        and (desk is None or r["desk"] == desk)
        and (trader is None or r["trader_id"] == trader)
        and (asset_class is None or r["asset_class"] == asset_class)
        and (typology is None or r["typology"] == typology)
        and (since is None or r["trading_date"] >= since)
        and (until is None or r["trading_date"] <= until)
        and (min_score is None or r["score"] >= min_score)
    )


def test_list_filters_match_a_naive_filter(url, day):
    run(sources(day), sinks=[StoreSink(url)])
    run(sources(generate_day(6, date="2024-03-15").feeds()), sinks=[StoreSink(url)])
    with open_store(url) as s:
        rows = s.list_alerts()
        assert len({r["trading_date"] for r in rows}) == 2
        for r in rows[::3]:
            cases.assign(s, r["alert_id"], "x")
        rows = s.list_alerts()
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True)
        rng = np.random.default_rng(0)
        pick = lambda key: str(rows[rng.integers(len(rows))][key])  # noqa: E731
        for _ in range(40):
            f = {}
            for key, col in (("desk", "desk"), ("trader", "trader_id"),
                             ("asset_class", "asset_class"), ("typology", "typology")):  # fmt: skip
                if rng.random() < 0.3:
                    f[key] = pick(col)
            if rng.random() < 0.4:
                f["status"] = [["open"], ["under_review"], ["open", "under_review"]][
                    rng.integers(3)
                ]
            if rng.random() < 0.4:
                f["since"] = pick("trading_date")
            if rng.random() < 0.4:
                f["until"] = pick("trading_date")
            if rng.random() < 0.5:
                f["min_score"] = float(rng.uniform(40, 100))
            got = sorted(r["alert_id"] for r in s.list_alerts(**f))
            assert got == _naive(rows, **f), f


def test_schema_versions(url, tmp_path):
    with open_store(url) as s:
        assert s.version() == SCHEMA_VERSION
        assert s.migrate() == []  # idempotent
        with s.backend.transaction():
            s.backend.execute(
                "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                (SCHEMA_VERSION + 1, s.now(), "from the future"),
            )
    for migrate in (True, False):
        with pytest.raises(StoreDataError, match="newer than this surv-kernel") as info:
            open_store(url, migrate=migrate)
        assert isinstance(info.value, DataError)


def test_first_writers_racing_on_a_new_store_both_succeed(url):
    """Two processes' first run against one empty database: the migrations
    are applied once, and neither fails."""
    import threading

    errors, barrier = [], threading.Barrier(4)

    def first_open():
        try:
            barrier.wait()
            with open_store(url) as s:
                assert s.version() == SCHEMA_VERSION
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=first_open) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with open_store(url) as s:
        assert s.count("schema_version") == SCHEMA_VERSION


def test_urls_and_missing_stores(tmp_path):
    for bad in ("alerts.db", "sqlite:/x.db", "sqlite://", "mysql://h/db"):
        with pytest.raises(StoreConfigError, match="sqlite:///"):
            open_store(bad)
    missing = tmp_path / "none.db"
    with pytest.raises(StoreUnavailableError, match="no alert store at"):
        open_store(f"sqlite:///{missing}", create=False)
    assert not missing.exists()
    with pytest.raises(StoreUnavailableError, match="cannot connect") as info:
        open_store("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value) and isinstance(info.value, InputError)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, " * 512)
    with pytest.raises(StoreDataError, match="not a usable SQLite database"):
        open_store(f"sqlite:///{junk}")


def test_sqlite_store_is_one_wal_file(tmp_path, day):
    path = tmp_path / "a.db"
    run(sources(day), sinks=[StoreSink(f"sqlite:///{path}")])
    import sqlite3

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_precision_from_dispositions_matches_a_naive_count(url, day):
    from surv_kernel.store import feedback

    run(sources(day), sinks=[StoreSink(url)])
    rng = np.random.default_rng(1)
    with open_store(url) as s:
        decided = {}
        for r in s.list_alerts():
            choice = ["open", "review", "false_positive", "no_action", "reported", "escalated"][
                rng.integers(6)
            ]
            if choice == "open":
                continue
            cases.assign(s, r["alert_id"], "a")
            if choice == "escalated":
                cases.escalate(s, r["alert_id"], "why")
            elif choice != "review":
                cases.close(s, r["alert_id"], choice, "why")
            if choice != "review":
                decided[r["alert_id"]] = choice
        rows = s.list_alerts()
        assert 0 < len(decided) < len(rows)

        bands = feedback.SCORE_BANDS
        upper = dict(zip(bands, (*bands[1:], 100.0), strict=True))

        def band(score):
            lo = max(b for b in bands if score >= b)
            return f"{lo:g}-{upper[lo]:g}"

        for by, key in (("typology", lambda r: r["typology"]), ("desk", lambda r: r["desk"]),
                        ("score_band", lambda r: band(r["score"]))):  # fmt: skip
            want = {}
            for r in rows:
                g = want.setdefault(key(r), {"cases": 0, "decided": 0, "tp": 0})
                g["cases"] += 1
                if r["alert_id"] in decided:
                    g["decided"] += 1
                    g["tp"] += decided[r["alert_id"]] in ("reported", "escalated")
            got = {g[by]: g for g in feedback.precision(s, by=by)}
            assert set(got) == set(want), by
            for name, w in want.items():
                g = got[name]
                assert (g["cases"], g["decided"], g["true_positives"]) == (
                    w["cases"], w["decided"], w["tp"]
                ), (by, name)  # fmt: skip
                assert g["precision"] == (w["tp"] / w["decided"] if w["decided"] else None)


def test_suppressed_episodes_later_alerted(url, day):
    """Every episode a robust run suppressed is alerted by a later static-policy
    run (static alerts every floor-passing episode): the feedback finds them all."""
    from surv_kernel.store import feedback

    robust = run(sources(day), sinks=[StoreSink(url)])
    n = len(robust.detection.suppressed)
    with open_store(url) as s:
        assert feedback.suppressed_later_alerted(s)["later_alerted"] == 0
    run(sources(day), config=DetectionConfig(policy="static"), sinks=[StoreSink(url)])
    with open_store(url) as s:
        got = feedback.suppressed_later_alerted(s)
        assert got["suppressed"] == n and got["later_alerted"] == n and got["runs"] == 1
        assert got["alerts_true_positive"] == 0
        ep = robust.detection.suppressed[0]
        (hit,) = [
            r["alert_id"]
            for r in s.list_alerts(trader=ep.trader_id, asset_class=ep.asset_class, content=True)
            if r["content"]["start_ns"] <= ep.end_ns and r["content"]["end_ns"] >= ep.start_ns
        ]
        cases.assign(s, hit, "a")
        cases.close(s, hit, "reported", "a miss of the robust run")
        got = feedback.suppressed_later_alerted(s)
        assert (got["alerts_decided"], got["alerts_true_positive"]) == (1, 1)


def test_a_version_1_store_is_migrated_and_keeps_its_rows(tmp_path, monkeypatch):
    """Migration 2 adds the explanation's time-of-day and evidence columns; a
    suppressed row stored before reads back with what was true of it then
    (factor 1, the former weights and floor; the evidence values unknown)."""
    import surv_kernel.store.store as store_module
    from surv_kernel.store.schema import MIGRATIONS, SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'v1.db'}"
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:1])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with open_store(url) as s:
        assert s.version() == 1
        with s.backend.transaction():
            s.backend.execute(
                "INSERT INTO runs (run_id, recorded_at, recorded_by, kind, code_version, config, "
                "summary, n_desks, n_desks_failed, n_trades, n_alerts, n_suppressed, "
                "n_quarantined) VALUES ('R1', '2024-03-14T00:00:00', 'ops', 'run', 'old', '{}', "
                "'{}', 1, 0, 10, 0, 1, 0)"
            )
            s.backend.execute(
                "INSERT INTO suppressed VALUES ((SELECT run_no FROM runs WHERE run_id = 'R1'), 0, "
                "'T1', 'equity', 'volume_burst', 1, 2, 2, 3e6, 4, 'within_baseline', 3e6, 1e6, "
                "1e6, 3.0, 'own', '', 1e6, 2e5, 20, 3e5, 'mad', 4.0, 3.0, 6.0, 5.0, 7)"
            )
    monkeypatch.undo()
    with open_store(url) as s:
        assert s.version() == SCHEMA_VERSION == 2
        (row,) = s.suppressed("R1")
    e = row["explanation"]
    assert (e.time_of_day_factor, e.weight_z, e.weight_ratio, e.evidence_floor) == (
        1.0, 0.5, 0.5, 1.0,
    )  # fmt: skip
    assert np.isnan(e.evidence_score) and e.z == 4.0 and row["reason"] == "within_baseline"
