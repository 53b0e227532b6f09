"""``surv-kernel backtest`` on the local engine: the hive layout, rolling
calibration, the records, the formats and the errors. The Dask engine's
equality with it is in test_distributed.py."""

import datetime as dt
import json
import sys

import msgspec
import pytest

from surv_kernel.cli import main
from surv_kernel.errors import InputError
from surv_kernel.evaluation.history import write_history
from surv_kernel.model import DetectionConfig, VolumeDetector
from surv_kernel.pipeline import LocalEngine
from surv_kernel.pipeline.backtest import (
    backtest,
    calibrate_days,
    day_sources,
    history_days,
    read_day,
)

START = dt.date(2024, 3, 1)


@pytest.fixture(scope="module")
def hist(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    days = write_history(root, 6, start=START, n_traders=40)
    (root / "_SUCCESS").write_text("")  # what Spark leaves: not a day
    return root, days


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_history_days_are_the_date_directories(hist):
    root, days = hist
    assert list(history_days(root)) == days
    with pytest.raises(InputError, match="history directory not found"):
        history_days(root / "nope")


def test_rolling_calibration_skips_days_without_enough_history(hist, tmp_path):
    root, days = hist
    seen = []
    res = backtest(root, days[0], days[-1], tmp_path, rolling=2, on_day=seen.append)
    assert [d.status for d in res.days] == ["skipped", "skipped"] + ["ok"] * 4
    # each day's rows are let go once the day is written: memory follows the
    # day, not the history (the first version kept every day's batch)
    assert all(d.result is None for d in seen)
    assert "needs 2 earlier day(s) of history, has 1" in res.days[1].record["reason"]
    third = tmp_path / f"date={days[2]}"
    run = json.loads((third / "run.json").read_text())
    assert run["mode"] == "backtest" and run["status"] == "ok"
    assert run["baselines"]["calibrated_on"] == [str(days[0]), str(days[1])]
    alerts = lines(third / "alerts.jsonl")
    assert alerts and all(a["mode"] == "backtest" and a["date"] == str(days[2]) for a in alerts)
    assert all(a["desks"] for a in alerts)
    assert all(s["mode"] == "backtest" for s in lines(third / "suppressed.jsonl"))
    assert not (tmp_path / f"date={days[0]}" / "alerts.jsonl").exists()
    # the day's alerts are the local engine's on that day with those baselines
    base = calibrate_days([root / f"date={d}" for d in days[:2]], DetectionConfig())
    want = LocalEngine().execute(
        day_sources(root / f"date={days[2]}"), [VolumeDetector()], base, chunk_size=1 << 20
    )
    assert [a["alert_id"] for a in alerts] == [a.alert_id for a in want.detection.alerts]
    summary = json.loads((tmp_path / "backtest.json").read_text())
    assert summary["totals"]["days"] == 4 and summary["days"][str(days[0])] == "skipped"


def test_parquet_days_read_like_json(hist, tmp_path):
    pytest.importorskip("pyarrow")  # also in the 'test' extra: this only guards a bare install
    root, days = hist
    pq_root = tmp_path / "pq"
    write_history(pq_root, 3, start=START, n_traders=40, format="parquet")
    for day in days[:3]:
        a, _, qa = read_day(root / f"date={day}")
        b, _, qb = read_day(pq_root / f"date={day}")
        assert list(a.trade_id) == list(b.trade_id) and qa == qb == 0
        assert (a.timestamp_ns == b.timestamp_ns).all()
        assert (a.notional_usd == b.notional_usd).all()
        assert a.trader_ids() == b.trader_ids() and a.asset_classes() == b.asset_classes()
    backtest(root, days[0], days[2], tmp_path / "a", rolling=1)
    backtest(pq_root, days[0], days[2], tmp_path / "b", rolling=1)
    for day in days[1:3]:
        for name in ("alerts.jsonl", "suppressed.jsonl"):
            d = f"date={day}"
            assert (tmp_path / "a" / d / name).read_bytes() == (
                tmp_path / "b" / d / name
            ).read_bytes()


def test_a_broken_calibration_day_fails_that_day_only(hist, tmp_path):
    root, days = hist
    broken = tmp_path / "h"
    write_history(broken, 4, start=START, n_traders=20)
    (broken / f"date={days[1]}" / "NY Rates.json").write_text("<html>502</html>")
    code = main(
        [
            "backtest",
            str(broken),
            "--from",
            str(days[0]),
            "--to",
            str(days[3]),
            "--rolling-calibration",
            "1",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 4
    status = json.loads((tmp_path / "o" / "backtest.json").read_text())["days"]
    # day 1 itself: its desk failed (the others analysed); day 2: calibrated on day 1
    assert status == {
        str(days[0]): "skipped",
        str(days[1]): "failed",
        str(days[2]): "failed",
        str(days[3]): "ok",
    }
    run2 = json.loads((tmp_path / "o" / f"date={days[2]}" / "run.json").read_text())
    assert run2["reason"].startswith("calibration: calibration history")


def test_cli_with_a_baselines_file_and_a_config(hist, tmp_path, capsys):
    root, days = hist
    cfg = tmp_path / "cfg.json"
    cfg.write_bytes(msgspec.json.encode({"window_minutes": 20.0, "policy": "static"}))
    base = tmp_path / "b.json"
    calibrate_days([root / f"date={days[0]}"], DetectionConfig(window_minutes=20.0)).save(base)
    code = main(
        [
            "backtest",
            str(root),
            "--from",
            str(days[1]),
            "--to",
            str(days[2]),
            "--config",
            str(cfg),
            "--baselines",
            str(base),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "backtest     2 day(s)" in err
    run = json.loads((tmp_path / "o" / f"date={days[1]}" / "run.json").read_text())
    assert run["baselines"]["source"] == "file" and len(run["baselines"]["sha256"]) == 64
    alerts = lines(tmp_path / "o" / f"date={days[1]}" / "alerts.jsonl")
    assert alerts and {a["policy"] for a in alerts} == {"static"}
    assert {a["window_minutes"] for a in alerts} == {20.0}


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--scheduler", "tcp://x:1"], 2, "--scheduler needs --engine dask"),
        (["--engine", "dask"], 2, "--engine dask needs --baselines FILE or --rolling-calibration"),
        (["--rolling-calibration", "1", "--baselines", "b.json"], 2, "not allowed with"),
    ],
)
def test_cli_usage_errors(hist, tmp_path, capsys, extra, code, message):
    root, days = hist
    argv = ["backtest", str(root), "--from", str(days[0]), "--to", str(days[1])]
    assert main([*argv, "--out", str(tmp_path), *extra]) == code
    assert message in capsys.readouterr().err


def test_cli_range_and_history_errors(hist, tmp_path, capsys):
    root, days = hist
    out = ["--out", str(tmp_path)]
    assert main(["backtest", str(root), "--from", "2024-03-08", "--to", "2024-03-01", *out]) == 2
    assert "is after --to" in capsys.readouterr().err
    assert main(["backtest", str(root), "--from", "2030-01-01", "--to", "2030-01-02", *out]) == 3
    assert "no history days" in capsys.readouterr().err
    assert (
        main(["backtest", str(tmp_path / "x"), "--from", "2024-03-01", "--to", "2024-03-01", *out])
        == 3
    )


def test_dask_without_the_extra_is_one_line(hist, tmp_path, capsys, monkeypatch):
    root, days = hist
    monkeypatch.setitem(sys.modules, "distributed", None)
    argv = [
        "backtest",
        str(root),
        "--from",
        str(days[0]),
        "--to",
        str(days[1]),
        "--rolling-calibration",
        "1",
        "--engine",
        "dask",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'surv_kernel[dask]'" in err[0]
