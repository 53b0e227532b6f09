"""``surv-kernel run --store``, ``alerts ...`` and ``store ...`` end to end, on
SQLite and a real PostgreSQL server (in process through ``cli.main``: the
same parser, commands and exit statuses as the console script)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from store_backends import BACKENDS, make_url
from surv_kernel.cli import main
from surv_kernel.cli.demo import slug
from surv_kernel.evaluation.scenario import generate_day


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    return make_url(request.param, tmp_path, request)


@pytest.fixture(scope="module")
def feeds(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("feeds")
    for desk, data in generate_day(1, n_traders=40, n_episodes=10).feeds().items():
        (d / f"{slug(desk)}.json").write_bytes(data)
    return d


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # 'run' without --out writes ./quarantine.jsonl: keep it out of the checkout
    monkeypatch.chdir(tmp_path)


def sk(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_twice_then_work_a_case(url, feeds, tmp_path, capsys):
    out = tmp_path / "out"
    for _ in range(2):
        code, _, err = sk(
            capsys, "run", str(feeds), "--out", str(out), "--store", url, "--user", "ops"
        )
        assert code == 0, err
        assert "store        " in err and " run " in err
    summary = json.loads((out / "summary.json").read_text())
    (line,) = [x for x in err.splitlines() if x.startswith("store        ")]
    assert summary["outputs"]["store"].endswith(line.split(" run ")[-1])
    n = len((out / "alerts.jsonl").read_text().splitlines())
    assert n > 3

    code, text, _ = sk(capsys, "store", "runs", "--store", url)
    assert code == 0 and len(text.splitlines()) == 1 + 2

    code, text, _ = sk(capsys, "alerts", "list", "--store", url, "--format", "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and len(rows) == n == len({r["alert_id"] for r in rows})
    file_ids = {
        json.loads(line)["alert_id"] for line in (out / "alerts.jsonl").read_text().splitlines()
    }
    assert {r["alert_id"] for r in rows} == file_ids
    assert all(r["status"] == "open" for r in rows)

    code, text, err = sk(capsys, "alerts", "list", "--store", url)
    assert code == 0 and text.splitlines()[0].split()[:3] == ["alert", "id", "date"]
    assert len(text.splitlines()) == n + 1 and f"{n} alert(s)" in err

    top = rows[0]["alert_id"]
    code, text, _ = sk(capsys, "alerts", "show", top[:8], "--store", url)
    assert code == 0
    assert top in text and "window sum" in text and "peak window's trades" in text
    assert "time (UTC)" in text  # the trades in full, not only their ids
    assert "audit log:" in text and "created" in text

    # illegal before review: exit 2 and a message naming the allowed step
    code, _, err = sk(
        capsys, "alerts", "close", top, "--store", url, "--disposition", "no_action",
        "--reason", "x",
    )  # fmt: skip
    assert code == 2 and "is open: cannot close it (from open: assign" in err
    code, text, _ = sk(
        capsys, "alerts", "assign", top, "--to", "maria", "--store", url, "--user", "lead"
    )
    assert code == 0 and "open -> under_review" in text
    code, text, _ = sk(
        capsys, "alerts", "close", top, "--store", url, "--user", "maria",
        "--disposition", "false_positive", "--reason", "client hedge, ticket 7",
    )  # fmt: skip
    assert code == 0 and "under_review -> closed" in text

    code, text, _ = sk(capsys, "alerts", "history", top, "--store", url, "--format", "jsonl")
    h = [json.loads(line) for line in text.splitlines()]
    assert [(e["action"], e["who"]) for e in h] == [
        ("created", "ops"),
        ("assign", "lead"),
        ("close", "maria"),
    ]
    assert h[-1]["reason"] == "client hedge, ticket 7" and h[0]["at"] < h[1]["at"] <= h[2]["at"]

    code, text, _ = sk(
        capsys, "alerts", "list", "--store", url, "--status", "closed", "--format", "csv"
    )
    got = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and [(r["alert_id"], r["disposition"]) for r in got] == [
        (top, "false_positive")
    ]

    dest = tmp_path / "export.csv"
    code, _, err = sk(
        capsys, "alerts", "export", "--store", url, "--format", "csv", "--output", str(dest)
    )
    exported = list(csv.DictReader(io.StringIO(dest.read_text())))
    assert code == 0 and len(exported) == n and f"{n} alert(s)" in err
    assert all(r["explanation"].startswith("window sum") for r in exported)
    code, text, _ = sk(capsys, "alerts", "export", "--store", url, "--status", "open")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == n - 1 and all(len(r["alert"]["trades"]) > 0 for r in lines)

    code, text, _ = sk(capsys, "alerts", "feedback", "--store", url, "--format", "jsonl")
    *groups, missed = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and [(g["typology"], g["cases"], g["decided"]) for g in groups] == [
        ("volume_burst", n, 1)
    ]
    assert groups[0]["precision"] == 0.0 and missed["suppressed_later_alerted"]["suppressed"] > 0
    code, text, _ = sk(capsys, "alerts", "feedback", "--store", url, "--by", "score_band")
    assert code == 0 and "precision" in text and "suppressed episodes later alerted: 0" in text

    code, text, _ = sk(capsys, "store", "check", "--store", url)
    assert code == 0 and text.startswith("ok: ") and f"{n} alerts" in text


def test_list_filters_and_bad_values(url, feeds, tmp_path, capsys):
    assert sk(capsys, "run", str(feeds), "--store", url)[0] == 0
    code, text, _ = sk(capsys, "alerts", "list", "--store", url, "--format", "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    trader = rows[-1]["trader_id"]
    code, text, _ = sk(
        capsys, "alerts", "list", "--store", url, "--format", "jsonl", "--trader", trader,
        "--since", rows[-1]["trading_date"], "--until", rows[-1]["trading_date"],
    )  # fmt: skip
    got = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and got and {r["trader_id"] for r in got} == {trader}
    assert len(got) == sum(r["trader_id"] == trader for r in rows)
    code, text, _ = sk(capsys, "alerts", "list", "--store", url, "--since", "2099-01-01")
    assert code == 0 and len(text.splitlines()) == 1  # the header alone
    cut = sorted(r["score"] for r in rows)[len(rows) // 2]
    code, text, _ = sk(
        capsys, "alerts", "list", "--store", url, "--format", "jsonl", "--min-score", str(cut)
    )
    assert {json.loads(line)["alert_id"] for line in text.splitlines()} == {
        r["alert_id"] for r in rows if r["score"] >= cut
    }
    for bad, message in (
        (["--min-score", "101"], "a score is 0..100"),
        (["--since", "14/03/2024"], "expected a date YYYY-MM-DD"),
        (["--status", "pending"], "status must be one or more of"),
    ):
        code, _, err = sk(capsys, "alerts", "list", "--store", url, *bad)
        assert code == 2 and message in err


def test_store_errors_and_exit_statuses(tmp_path, feeds, capsys, monkeypatch):
    monkeypatch.delenv("SURV_STORE", raising=False)
    code, _, err = sk(capsys, "alerts", "list")
    assert code == 2 and "give --store URL" in err
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    code, _, err = sk(capsys, "alerts", "list", "--store", missing)
    assert code == 3 and "no alert store at" in err
    code, _, err = sk(capsys, "alerts", "list", "--store", "alerts.db")
    assert code == 2 and "sqlite:///" in err
    url = f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("SURV_STORE", url)  # the default store
    assert sk(capsys, "run", str(feeds), "--store", url)[0] == 0
    code, _, err = sk(capsys, "alerts", "show", "0123456789abcdef01234567")
    assert code == 3 and "no alert '0123456789abcdef01234567'" in err
    code, _, err = sk(capsys, "store", "prune", "--older-than", "1y")
    assert code == 2 and "refusing to prune records younger than the retention" in err
    code, text, _ = sk(capsys, "store", "prune", "--older-than", "5y", "--dry-run")
    assert code == 0 and "would delete: 0 runs" in text
    code, text, _ = sk(capsys, "store", "migrate")
    assert code == 0 and "none needed" in text
    # tamper behind the API: check finds it, exit 5
    import sqlite3

    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute("UPDATE dispositions SET status = 'closed' WHERE rowid = 1")
    conn.commit()
    conn.close()
    code, _, err = sk(capsys, "store", "check")
    assert code == 5 and "differs from their last audit entry" in err


def test_a_failed_desk_is_in_the_run_record(url, feeds, tmp_path, capsys):
    """Exit 4 for the dead desk, and the store says which desk was not surveilled."""
    d = tmp_path / "feeds"
    d.mkdir()
    good, cut = sorted(feeds.iterdir())[:2]
    (d / good.name).write_bytes(good.read_bytes())
    data = cut.read_bytes()
    (d / "cut_desk.json").write_bytes(data[: len(data) // 2])  # a truncated transfer
    (d / "dead_desk.json").write_text("this is not JSON")
    code, _, err = sk(capsys, "run", str(d), "--store", url)
    assert code == 4 and "dead_desk" in err
    from surv_kernel.store import check, open_store

    with open_store(url) as s:
        (r,) = s.runs()
        assert (r["n_desks"], r["n_desks_failed"]) == (3, 2)
        desks = {x["desk"]: x for x in s.run_desks(r["run_id"])}
        assert desks["dead_desk"]["outcome"] == "bad_feed" and desks["dead_desk"]["error"]
        assert desks["cut_desk"]["outcome"] == "partial" and desks["cut_desk"]["error"]
        assert (
            desks["cut_desk"]["seen"]
            == (desks["cut_desk"]["trades"] + desks["cut_desk"]["quarantined"])
            > 0
        )
        assert desks[good.stem]["outcome"] == "ok"
        assert check(s) == []


def test_demo_records_its_run_with_the_evaluation(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    code, text, _ = sk(
        capsys, "demo", "--out", str(tmp_path / "out"), "--traders", "24", "--episodes", "6",
        "--store", url,
    )  # fmt: skip
    assert code == 0 and "store        sqlite:///" in text
    from surv_kernel.store import open_store

    with open_store(url) as s:
        (r,) = s.runs()
        summary = json.loads(s.backend.query("SELECT summary FROM runs")[0][0])
        assert r["n_alerts"] == summary["alerts"] == s.count("alerts") > 0
        assert "evaluation" in summary and summary["scenario"]["traders"] == 24


def test_serve_with_store_killed_and_restarted_stores_each_alert_once(url, tmp_path):
    """``surv-kernel serve --store``: a real service SIGKILLed mid-day and
    restarted; the store holds every alert of batch detection exactly once,
    closed, with the batch's content, and one 'created' audit entry each."""
    import signal

    from surv_kernel.store import check, open_store
    from test_serve import Day, Serve, all_closed, feed_day

    day = Day(tmp_path)
    svc = Serve(tmp_path / "svc", day, "--store", url, "--user", "svc")
    svc.start()
    feed_day(svc, day, {len(day.slices) // 2}, seed=3)
    svc.wait_for(all_closed(len(day.alerts)))
    assert svc.kill(signal.SIGTERM) == 0
    with open_store(url, migrate=False) as s:
        rows = s.list_alerts(content=True)
        assert sorted(r["alert_id"] for r in rows) == sorted(day.alerts)
        for r in rows:
            assert r["stream_status"] == "closed"
            want = day.alerts[r["alert_id"]]
            assert {k: r["content"][k] for k in want} == want
        assert s.count("audit_log") == len(day.alerts)
        assert {e["who"] for r in rows for e in s.history(r["alert_id"])} == {"svc"}
        assert check(s) == []


def test_evaluate_with_a_store_is_the_feedback_report(feeds, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    assert sk(capsys, "run", str(feeds), "--store", url)[0] == 0
    code, text, _ = sk(capsys, "alerts", "list", "--store", url, "--format", "jsonl")
    first = json.loads(text.splitlines()[0])["alert_id"]
    assert sk(capsys, "alerts", "assign", first, "--to", "maria", "--store", url)[0] == 0
    assert sk(capsys, "alerts", "escalate", first, "--reason", "spoofing", "--store", url)[0] == 0
    for by in ("typology", "desk", "score_band"):
        code, table, _ = sk(capsys, "evaluate", "--store", url, "--by", by)
        assert code == 0 and (table.splitlines()[0].split()[0] == by.split("_")[0])
        assert sk(capsys, "alerts", "feedback", "--store", url, "--by", by)[1] == table
        code, lines, _ = sk(capsys, "evaluate", "--store", url, "--by", by, "--json")
        assert code == 0
        assert (
            sk(capsys, "alerts", "feedback", "--store", url, "--by", by, "--format", "jsonl")[1]
            == lines
        )
    *groups, missed = [json.loads(line) for line in lines.splitlines()]
    assert sum(g["decided"] for g in groups) == 1 == sum(g["true_positives"] for g in groups)
    assert "suppressed_later_alerted" in missed
    # no synthetic days were generated: the received-rule table is not there
    assert "received rule" not in table
    code, _, err = sk(capsys, "evaluate", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert code != 0 and err


def test_run_with_out_keeps_a_sqlite_store_there_by_default(feeds, tmp_path, capsys):
    """Issue 12: --store defaults to a SQLite file in --out, kept across runs
    beside the published sets; --store none opts out."""
    code, _, err = sk(capsys, "run", str(feeds), "--out", "out")
    assert code == 0, err
    db = tmp_path / "out" / "alerts.db"
    assert db.exists() and f"sqlite:///{db}" in err
    code, _, err = sk(capsys, "run", str(feeds), "--out", "out")
    assert code == 0, err
    code, out, err = sk(capsys, "store", "runs", "--store", f"sqlite:///{db}")
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 2  # a header and two run records
    code, _, err = sk(capsys, "run", str(feeds), "--out", "plain", "--store", "none")
    assert code == 0, err
    assert not (tmp_path / "plain" / "alerts.db").exists()
