"""The ``surv-kernel`` command, run as a user runs it: a subprocess through
``python -m surv_kernel`` (and the installed console script when present).

Days are small (a few thousand trades) so the whole file stays quick; the
expensive parts are interpreter start-up and, once, the report's matplotlib.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import surv_kernel
from surv_kernel.cli import EXIT_CODES
from surv_kernel.cli.demo import slug as _slug
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.model import Baselines, DetectionConfig, detect

PKG_PARENT = str(Path(surv_kernel.__file__).resolve().parent.parent)
SEED, TRADERS, EPISODES = 0, 24, 12  # a small day with alerts on each of the six desks


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # run the same surv_kernel the tests import (source tree or installed)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PKG_PARENT, env.get("PYTHONPATH")) if p)
    for knob in ("SURV_MAX_WORKERS", "SURV_DESK_DEADLINE_S", "SURV_PROGRESS_AFTER_S"):
        env.pop(knob, None)
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "surv_kernel", *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("surv-kernel")]


def _alerts(text: str) -> list[dict]:
    return [json.loads(line) for line in _lines(text)]


def _key(alert: dict) -> tuple:
    return (alert["trader_id"], alert["asset_class"], tuple(alert["trades"]))


@pytest.fixture(scope="module")
def scenario():
    return generate_day(SEED, n_traders=TRADERS, n_episodes=EPISODES)


@pytest.fixture(scope="module")
def feeds_dir(scenario, tmp_path_factory) -> Path:
    """The scenario's six desk feeds, one JSON array file per desk."""
    d = tmp_path_factory.mktemp("feeds")
    for desk, data in scenario.feeds().items():
        (d / f"{_slug(desk)}.json").write_bytes(data)
    return d


# -- help and usage ------------------------------------------------------------------------


def test_help_lists_the_subcommands_and_the_exit_codes(tmp_path):
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for word in ("demo", "run", "calibrate", "evaluate", "exit status"):
        assert word in r.stdout
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s", r.stdout, re.M), code


def test_console_script_when_installed(tmp_path):
    script = Path(sys.executable).with_name("surv-kernel")
    if not script.exists():
        pytest.skip("surv-kernel console script not installed here (pip install . puts it there)")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("surv-kernel ")


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "nope.json"], 3, "feed file not found: nope.json"),
        (
            ["run", "empty"],
            3,
            "no feed files (*.json, *.ndjson, *.jsonl, *.parquet, *.csv, or desk=NAME "
            "partitions) in directory empty",
        ),
        (["run", "bad.json"], 4, "desk 'bad' (bad.json): not a readable feed"),
        (["run", "good.json", "--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
        (["run", "good.json", "--window-minutes", "-5"], 2, "must be a finite number > 0"),
        (["run", "good.json", "--baselines", "nope.json"], 3, "baselines file not found"),
        (["run", "good.json", "--baselines", "good.json"], 5, "not a baselines file"),
        (["run", "good.json", "--baselines", "v9.json"], 5, "baselines version 9"),
        (["run", "good.json", "--baselines", "negative.json"], 5, "mad = -5.0"),
        (["run", "good.json", "--window-minutes", "1e300"], 2, "window_minutes must be at most"),
        (["run", "good.json", "--out", "good.json"], 6, "exists and is not a directory"),
        (["calibrate", "bad.json", "--out", "b.json"], 4, "no baselines written"),
        (["calibrate", "good.json", "--out", "b.txt"], 2, "must end in .json"),
        (["evaluate", "--mix", "nope"], 2, "unknown --mix 'nope'"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_clear_line_with_their_exit_code(tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("this is not JSON {")
    (tmp_path / "good.json").write_text(
        json.dumps(
            [
                {
                    "trade_id": "T1",
                    "asset_class": "equity",
                    "notional": 100.0,
                    "currency": "USD",
                    "trader_id": "TR1",
                    "timestamp": 1_700_000_000.0,
                    "surveillance_required": False,
                }
            ]
        )
    )
    stat = {"median": 1e6, "mad": 1e5, "n": 20}
    baselines = {
        "window_minutes": 30.0,
        "min_windows": 3,
        "groups": {"TR1": {"equity": stat}},
        "group_desk": {"TR1": {"equity": "good"}},
        "desk_peers": {},
        "class_peers": {},
    }
    (tmp_path / "v9.json").write_text(json.dumps({**baselines, "version": 9}))
    negative = {**baselines, "groups": {"TR1": {"equity": {**stat, "mad": -5.0}}}}
    (tmp_path / "negative.json").write_text(json.dumps(negative))
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == code, r.stderr
    errors = _error_lines(r.stderr)
    assert len(errors) == 1, r.stderr
    assert _lines(r.stderr) == errors  # nothing else on stderr
    assert message in errors[0], errors[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "b.json").exists()


def test_debug_shows_the_traceback_of_a_failed_desk(tmp_path):
    (tmp_path / "bad.json").write_text("<html>oops</html>")
    quiet = cli("run", "bad.json", cwd=tmp_path)
    loud = cli("run", "bad.json", "--debug", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 4
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert _error_lines(loud.stderr)[-1] == _error_lines(quiet.stderr)[-1]


# -- run -----------------------------------------------------------------------------------


def test_run_six_desks_with_one_corrupt_feed(feeds_dir, scenario, tmp_path):
    """The five good desks are analysed and alerted, the bad one is named, exit 4."""
    good = tmp_path / "good"
    mixed = tmp_path / "mixed"
    good.mkdir()
    mixed.mkdir()
    bad_desk = "ny_equities"
    for f in feeds_dir.iterdir():
        if f.stem != bad_desk:
            (good / f.name).write_bytes(f.read_bytes())
            (mixed / f.name).write_bytes(f.read_bytes())
    # a feed cut off mid-transfer and overwritten with an HTML error page
    (mixed / f"{bad_desk}.json").write_text("<html><body>502 Bad Gateway</body></html>")

    r = cli("run", "mixed", "--out", "out_mixed", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    last = _error_lines(r.stderr)[-1]
    assert f"desk '{bad_desk}' (mixed/{bad_desk}.json): not a readable feed" in last
    assert "the 5 other desk(s) were analysed and their alerts written" in last
    assert "Traceback" not in r.stderr
    assert "6 (5 ok, 1 FAILED)" in r.stderr
    mixed_alerts = _alerts((tmp_path / "out_mixed" / "alerts.jsonl").read_text())
    desks = {d for a in mixed_alerts for d in a["desks"]}
    assert bad_desk not in desks
    # what detect finds on the five good desks' trades, in process
    keep = np.array([_slug(d) != bad_desk for d in scenario.desk.tolist()])
    expected = detect(scenario.batch.take(keep), DetectionConfig()).alerts
    desk_of = dict(zip(scenario.trade_id.tolist(), scenario.desk.tolist(), strict=True))
    expected_desks = {_slug(desk_of[t]) for a in expected for t in a.trades}
    assert expected_desks == {f.stem for f in good.iterdir()}, (
        "the fixture day should have alerts on every good desk; pick another SEED"
    )
    assert sorted(map(_key, mixed_alerts)) == sorted(
        (a.trader_id, a.asset_class, tuple(a.trades)) for a in expected
    )
    assert desks == expected_desks
    summary = json.loads((tmp_path / "out_mixed" / "summary.json").read_text())
    assert [f["desk"] for f in summary["desks_failed"]] == [bad_desk]
    assert summary["alerts"] == len(mixed_alerts)

    # the failure did not change the good desks' alerts
    r_good = cli("run", "good", cwd=tmp_path)
    assert r_good.returncode == 0, r_good.stderr
    assert sorted(map(_key, _alerts(r_good.stdout))) == sorted(map(_key, mixed_alerts))


def test_run_alerts_match_detect_on_the_same_day(feeds_dir, scenario, tmp_path):
    """Files -> desk pool -> merge -> detect gives what detect gives on the
    generator's own batch, whatever the chunk size and worker count."""
    expected = sorted(
        (a.trader_id, a.asset_class, tuple(a.trades))
        for a in detect(scenario.batch, DetectionConfig()).alerts
    )
    assert expected
    for extra in ([], ["--chunk-size", "97", "--workers", "2"]):
        r = cli("run", str(feeds_dir), *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = _alerts(r.stdout)
        assert sorted(map(_key, got)) == expected
        for a in got:  # the legacy keys every caller reads
            assert {"trader_id", "trades", "combined_notional", "window_minutes"} <= set(a)
            assert a["combined_notional"] == a["peak_window_sum_usd"]
        # summary on stderr, alerts alone on stdout
        assert f"alerts       {len(expected)}" in r.stderr
        assert f"trades       {len(scenario):,}" in r.stderr


def test_run_ndjson_with_bad_records_quarantines_them(tmp_path):
    rows = [
        {
            "trade_id": f"T{i}",
            "asset_class": "equity",
            "notional": 2_000_000.0,
            "currency": "USD",
            "trader_id": "TR1",
            "timestamp": 1_700_000_000.0 + 60 * i,
            "surveillance_required": False,
        }
        for i in range(5)
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, json.dumps({**rows[0], "trade_id": "BAD-CCY", "currency": "XYZ"}))
    lines.insert(4, '{"trade_id": "BROKEN", "notional": ')
    (tmp_path / "desk_a.ndjson").write_text("\n".join(lines) + "\n")
    r = cli("run", "desk_a.ndjson", "--policy", "static", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    alerts = _alerts(r.stdout)
    assert len(alerts) == 1 and alerts[0]["desks"] == ["desk_a"]
    quarantine = _alerts((tmp_path / "quarantine.jsonl").read_text())
    assert len(quarantine) == 2
    assert {q["desk"] for q in quarantine} == {"desk_a"}
    assert "quarantined  2" in r.stderr
    assert "-> quarantine.jsonl" in r.stderr


def test_run_json_logs_and_prometheus_metrics(feeds_dir, tmp_path):
    r = cli(
        "run",
        str(feeds_dir),
        "--out",
        "o",
        "--log-format",
        "json",
        "--metrics",
        "m.prom",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert logs and all({"ts", "level", "logger", "message"} <= set(rec) for rec in logs)
    assert any(rec.get("event") == "desks_done" for rec in logs)
    prom = (tmp_path / "m.prom").read_text()
    assert "# TYPE surv_trades_decoded_total counter" in prom
    assert 'surv_trades_decoded_total{desk="ny_rates"}' in prom
    assert "surv_detect_seconds_bucket" in prom


def _run_on_pty(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "surv_kernel", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        assert proc.returncode == 0
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_only_on_a_terminal(feeds_dir, tmp_path):
    env = _env(SURV_PROGRESS_AFTER_S="0")  # "long input" from the first chunk on
    on_tty = _run_on_pty(["run", str(feeds_dir), "--out", "o1"], tmp_path, env)
    assert "\r[" in on_tty and "desks" in on_tty
    piped = cli("run", str(feeds_dir), "--out", "o2", cwd=tmp_path, env=env)
    assert piped.returncode == 0
    assert "\r" not in piped.stderr
    # auto on a terminal stays quiet while reading is shorter than the
    # threshold (1 s by default; 60 here so a cold Numba cache cannot cross it)
    quiet = _run_on_pty(
        ["run", str(feeds_dir), "--out", "o3"], tmp_path, _env(SURV_PROGRESS_AFTER_S="60")
    )
    assert "\r[" not in quiet
    never = _run_on_pty(
        ["run", str(feeds_dir), "--out", "o4", "--progress", "never"], tmp_path, env
    )
    assert "\r[" not in never


# -- calibrate + run --baselines -----------------------------------------------------------


def test_calibrate_then_run_with_baselines(feeds_dir, tmp_path):
    r = cli("calibrate", str(feeds_dir), "--out", "baselines.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    baselines = Baselines.load(tmp_path / "baselines.json")
    assert baselines.window_minutes == 30.0 and baselines.groups
    assert "baselines.json" in r.stderr
    r = cli("run", str(feeds_dir), "--baselines", "baselines.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "baselines baselines.json" in r.stderr
    alerts = _alerts(r.stdout)
    assert alerts and {a["explanation"]["baseline_source"] for a in alerts} >= {"own"}
    # baselines made with another window are refused, with the fix
    r = cli(
        "run", str(feeds_dir), "--baselines", "baselines.json", "--window-minutes", "15",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 5
    assert "recalibrate or pass --window-minutes 30" in _error_lines(r.stderr)[0]


def test_calibrate_history_with_several_days_per_desk(scenario, tmp_path):
    """A history directory per day: the same desk (file stem) on several days."""
    days = {"day1": scenario, "day2": generate_day(SEED + 1, n_traders=TRADERS)}
    for day, sc in days.items():
        (tmp_path / "history" / day).mkdir(parents=True)
        for desk, data in sc.feeds().items():
            (tmp_path / "history" / day / f"{_slug(desk)}.json").write_bytes(data)
    r = cli("calibrate", "history/day1", "history/day2", "--out", "b.msgpack", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    baselines = Baselines.load(tmp_path / "b.msgpack")
    traders = {t for sc in days.values() for t in sc.trader_id.tolist()}
    assert set(baselines.groups) == traders
    desks = {d for books in baselines.group_desk.values() for d in books.values()}
    assert desks == {_slug(d) for d in scenario.feeds()}


def test_seed_lists_and_merge_recode_in_process():
    import numpy as np

    from surv_kernel.batch import Dictionaries, TradeBatch
    from surv_kernel.cli.common import seed_list as _seed_list
    from surv_kernel.pipeline import DeskRead, FileSource, merge_desks

    assert _seed_list("0-3") == [0, 1, 2, 3]
    assert _seed_list("1,5,9") == [1, 5, 9]
    assert _seed_list("2,4-5") == [2, 4, 5]
    for bad in ("-1", "3-1", "a", "1-", ""):
        with pytest.raises(Exception, match="seeds"):
            _seed_list(bad)

    def batch(rows):
        d = Dictionaries()
        return TradeBatch(
            timestamp_ns=np.arange(len(rows), dtype=np.int64),
            notional_usd=np.ones(len(rows)),
            trader=d.trader.encode([r[0] for r in rows]),
            asset_class=d.asset_class.encode([r[1] for r in rows]),
            desk=d.desk.encode([r[2] for r in rows]),
            trade_id=np.array([f"{r[0]}-{i}" for i, r in enumerate(rows)], object),
            dictionaries=d,
        )

    a = [("B", "equity", "x"), ("A", "derivative", "x")]
    b = [("A", "equity", "y"), ("C", "equity", "y"), ("B", "derivative", "y")]
    src = FileSource(Path("x.json"))
    merged = merge_desks([DeskRead(src, batch(a), [], 0.0), DeskRead(src, batch(b), [], 0.0)])
    assert list(zip(merged.trader_ids(), merged.asset_classes(), strict=True)) == [
        (t, c) for t, c, _ in a + b
    ]
    assert merged.dictionaries.desk.decode(merged.desk) == [r[2] for r in a + b]


# -- evaluate ------------------------------------------------------------------------------


def test_evaluate_prints_the_table(tmp_path):
    r = cli("evaluate", "--seeds", "0-1", "--traders", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "model" in out and "received rule" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s+(\d+|all)\s", line)]
    assert [row[0] for row in rows] == ["0", "1", "all"]
    r = cli("evaluate", "--seeds", "4", "--traders", "12", "--json", cwd=tmp_path)
    payload = json.loads(r.stdout)
    assert payload[0]["seed"] == 4
    assert 0 <= payload[0]["model"]["recall"] <= 1
    assert payload[0]["received"]["n_alerts"] >= payload[0]["received"]["true_positives"]


# -- demo ----------------------------------------------------------------------------------


def test_demo_small_day_end_to_end(tmp_path):
    r = cli(
        "demo", "--out", "out", "--traders", str(TRADERS), "--episodes", str(EPISODES),
        "--seed", str(SEED), "--max-charts", "3",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for label in ("trades", "quarantined", "alerts", "suppressed", "lag", "time", "vs labels"):
        assert re.search(rf"^{label}\s", r.stdout, re.M), label
    assert re.search(r"precision \d\.\d\d, recall \d\.\d\d", r.stdout)
    summary = json.loads((out / "summary.json").read_text())
    alerts = _alerts((out / "alerts.jsonl").read_text())
    assert summary["alerts"] == len(alerts) > 0
    assert summary["evaluation"]["n_alerts"] == len(alerts)
    assert len(list((out / "feeds").glob("*.json"))) == 6
    assert (out / "quarantine.jsonl").exists()
    assert set(summary["stages_s"]) >= {"generate", "ingest", "detect", "report"}
    page = (out / "report.html").read_text()
    assert page.count('<section class="alert"') == min(3, len(alerts))
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels) == EPISODES


def test_settings_errors_exited_1_as_internal_errors(feeds_dir, tmp_path):
    """Received: SURV_MAX_WORKERS=abc or SURV_DESK_DEADLINE_S=-1 said "internal
    error, this is a bug" (exit 1). They are usage errors: exit 2, one line."""
    for knob, value in (("SURV_MAX_WORKERS", "abc"), ("SURV_DESK_DEADLINE_S", "-1")):
        r = cli("run", str(feeds_dir), "--out", "o", cwd=tmp_path, env=_env(**{knob: value}))
        assert r.returncode == 2, r.stderr
        (error,) = _error_lines(r.stderr)
        assert knob in error and "bug" not in error


def test_metrics_to_an_unwritable_path_exited_0(feeds_dir, tmp_path):
    r = cli("run", str(feeds_dir), "--out", "o", "--metrics", "no/such/dir/m.prom", cwd=tmp_path)
    assert r.returncode == 6, r.stderr
    (error,) = _error_lines(r.stderr)
    assert "cannot write metrics" in error and "m.prom" in error
    assert (tmp_path / "o" / "alerts.jsonl").exists()  # the run itself was published


def test_output_write_failures_exited_3_as_input_not_found(feeds_dir, tmp_path):
    """An output that cannot be written is exit 6 naming it, not 3 ("input
    not found"). /proc refuses new files even to root."""
    target = "/proc/surv-kernel-no-such-file.jsonl"
    r = cli("run", str(feeds_dir), "--out", "o", "--quarantine", target, cwd=tmp_path)
    assert r.returncode == 6, r.stderr
    (error,) = _error_lines(r.stderr)
    assert target in error
    assert not (tmp_path / "o" / "alerts.jsonl").exists()  # nothing half-published
