"""tests/quality_table.py keeps working: its cases, its scoring and its command line."""

from __future__ import annotations

import json
import math

import msgspec
import pytest

import quality_table as qt
from surv_kernel import DetectionConfig


def test_the_per_desk_path_never_sees_a_cross_desk_episode():
    # structural, whatever the model's settings: each desk alone stays under the floor
    case = qt.session_case(5, 150, 2, 0)
    cross = [i for i, k in enumerate(case.kinds) if k == "cross_desk"]
    assert cross
    out = {(o.mode, o.path): o for o in qt.score_case(case)}
    for mode in qt.MODES:
        per_desk = out[(mode, "per_desk")]
        assert set(cross) <= set(per_desk.result.missed)
        lost = [m for m in per_desk.misses if m.startswith("cross_desk")]
        assert len(lost) == len(cross)
        assert all(m.endswith("no desk passes the floor on its own") for m in lost)
        assert len(per_desk.misses) == len(per_desk.result.missed)


def test_rows_pool_the_seeds_and_the_command_line_reads_a_config(tmp_path, capsys, monkeypatch):
    seen = []
    real = qt.table
    monkeypatch.setattr(qt, "table", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    cfg = tmp_path / "tuned.json"
    cfg.write_text('{"z_level": 5.0, "ratio_level": 3.5}')
    saved = tmp_path / "rows.json"
    argv = ["--seeds", "0-1", "--traders", "120", "--generators", "session", "--history-days", "2"]
    assert qt.main([*argv, "--config", str(cfg), "--json", "--save", str(saved)]) == 0
    assert seen == [DetectionConfig(z_level=5.0, ratio_level=3.5)]
    rows = json.loads(capsys.readouterr().out)
    assert [(r["mode"], r["path"]) for r in rows] == [(m, p) for m in qt.MODES for p in qt.PATHS]
    for r in rows:
        assert r["seeds"] == [0, 1] and r["episodes"] == 56
        assert math.isclose(r["precision"], 1 - r["false_alerts"] / r["n_alerts"])
        assert math.isclose(r["recall"], r["detected"] / r["episodes"])
        assert sum(int(v.split("/")[1]) for v in r["recall_by_kind"].values()) == 56
        assert sum(r["miss_causes"].values()) == r["episodes"] - r["detected"]
        assert sum(r["false_alarm_causes"].values()) == r["false_alerts"]
    assert [r.precision for r in qt.load_rows(str(saved))] == [r["precision"] for r in rows]
    bad = tmp_path / "bad.json"
    bad.write_text('{"z_levl": 5.0}')
    with pytest.raises(msgspec.ValidationError):
        qt.main([*argv, "--config", str(bad)])
