"""The calibration sweep (``surv_kernel.evaluation.sweep``, ``calibrate --sweep``).

Each row must be exactly what detecting with that setting gives (recomputed
here directly), the recommendation must follow its stated rule, and the
record must carry the config, the rationale, the data and the table.
"""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from surv_kernel.cli import main
from surv_kernel.evaluation.scenario import evaluate_alerts, generate_day
from surv_kernel.evaluation.sweep import SweepRow, recommend, sweep
from surv_kernel.model import DetectionConfig, detect


@pytest.fixture(scope="module")
def days():
    out = []
    for seed in (0, 1):
        day = generate_day(seed, n_traders=60)
        out.append((day.batch, day))
    return out


def test_each_row_is_detection_with_that_setting(days):
    grid = {"z_level": [4.0, 8.0], "ratio_level": [3.0, 5.0]}
    rows = sweep(days, DetectionConfig(), grid)
    assert [r.settings for r in rows] == [
        {"z_level": z, "ratio_level": q} for z in (4.0, 8.0) for q in (3.0, 5.0)
    ]
    trader_days = sum(len(np.unique(b.trader)) for b, _ in days)
    for r in rows:
        cfg = DetectionConfig(**r.settings)
        res = [evaluate_alerts(detect(b, cfg).alerts, d) for b, d in days]
        assert r.alerts == sum(x.n_alerts for x in res)
        assert r.false_alerts == sum(x.false_positives for x in res)
        assert r.detected == sum(x.detected for x in res)
        assert r.recall == r.detected / r.episodes
        assert r.alerts_per_1000_trader_days == pytest.approx(r.alerts * 1000 / trader_days)
        assert r.alerts_per_day == r.alerts / 2
    # a stricter line never alerts more on the same days
    by = {(r.settings["z_level"], r.settings["ratio_level"]): r for r in rows}
    assert by[(8.0, 5.0)].alerts <= by[(4.0, 3.0)].alerts


def _row(p, r, **kw):
    return SweepRow({"z_level": kw.get("z", 6.0)}, p, r, 10, 1, 24, 24, 1.0, 0.1, 5.0, p, r)


def test_recommend_takes_the_most_precise_setting_that_keeps_the_recall():
    rows = [_row(0.99, 0.90, z=8), _row(0.95, 0.96, z=6), _row(0.93, 0.99, z=5)]
    best, why = recommend(rows, 0.95)
    assert best is rows[1] and "2 of 3 settings with recall >= 0.95" in why
    best, why = recommend(rows, 0.999)
    assert best is rows[2] and "no setting reaches recall" in why
    with pytest.raises(ValueError):
        recommend([])


def test_bad_grids_are_refused(days):
    with pytest.raises(ValueError, match="not a DetectionConfig field"):
        sweep(days, grid={"zz": [1.0]})
    with pytest.raises(ValueError, match="no values"):
        sweep(days, grid={"z_level": []})
    with pytest.raises(ValueError, match="at least one"):
        sweep([])


def test_calibrate_sweep_writes_a_versioned_recommendation(tmp_path, capsys):
    out = tmp_path / "recommended.json"
    code = main(
        ["calibrate", "--sweep", "--sweep-seeds", "0-1", "--sweep-traders", "60", "--out", str(out)]
    )
    assert code == 0
    rec = json.loads(out.read_text())
    assert rec["format"] == "surv_kernel.sweep" and rec["version"] == 1
    cfg = msgspec.convert(rec["config"], DetectionConfig)  # a loadable config
    assert rec["data"]["seeds"] == [0, 1] and rec["data"]["traders"] == 60
    assert len(rec["table"]) == 18 and "recall >=" in rec["rationale"]
    chosen = [
        r
        for r in rec["table"]
        if all(cfg.__getattribute__(k) == v for k, v in r["settings"].items())
    ]
    assert chosen and all(not math.isnan(r["recall"]) for r in rec["table"])
    assert "recommended" in capsys.readouterr().err
    assert main(["calibrate", "--sweep", "--out", str(tmp_path / "x.msgpack")]) == 2
    assert main(["calibrate", "--out", str(tmp_path / "b.json")]) == 2  # no HISTORY, no --sweep
