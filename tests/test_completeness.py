"""A desk is ok, partial or failed, never silently incomplete; every run
reconciles seen = analysed + quarantined (issue 11, items 1-3).

Each failure named in the issue has a test here that failed on the main of
before this change: a truncated feed exited 0 with the desk "ok"; an error
object was one quarantined record and "0 alerts"; a feed cut to a third of
its day passed as a quiet day.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec
import numpy as np
import pytest

import trade_surveillance_pipeline as legacy
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.ingest import FeedError, Quarantine, decode_feed, iter_feed
from surv_kernel.observability import MetricsRegistry
from surv_kernel.pipeline import BytesSource, run
from surv_kernel.pipeline.completeness import ConservationError, reconcile
from surv_kernel.pipeline.outcomes import DeskFailuresError
from test_cli import _env, _error_lines, _slug, cli

TRADERS, EPISODES = 24, 10
DATES = ("2024-03-11", "2024-03-12", "2024-03-13")  # history; the run is 2024-03-14


@pytest.fixture(scope="module")
def today():
    return generate_day(7, n_traders=TRADERS, n_episodes=EPISODES, population_seed=7)


@pytest.fixture(scope="module")
def feeds(today) -> dict[str, bytes]:
    return {_slug(d): data for d, data in today.feeds().items()}


def _write(d: Path, feeds: dict[str, bytes]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for desk, data in feeds.items():
        (d / f"{desk}.json").write_bytes(data)
    return d


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# -- truncated feeds ----------------------------------------------------------------------
def test_truncated_array_is_partial_exit_4_and_the_other_desks_are_published(feeds, tmp_path):
    cut = dict(feeds)
    victim = sorted(cut)[0]
    cut[victim] = cut[victim][: int(len(cut[victim]) * 0.6)]  # cut mid-transfer
    _write(tmp_path / "feeds", cut)
    r = cli("run", "feeds", "--out", "out", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    errors = _error_lines(r.stderr)
    assert f"desk {victim!r} is PARTIAL" in errors[0] and "truncated" in errors[0]
    assert "desks        6 (5 ok, 1 PARTIAL)" in r.stderr
    s = _summary(tmp_path / "out")
    assert s["status"] == "partial"
    assert [p["desk"] for p in s["desks_partial"]] == [victim]
    rec = {d["desk"]: d for d in s["reconciliation"]}
    assert rec[victim]["status"] == "partial" and rec[victim]["quarantined_by_reason"]
    assert all(d["status"] == "ok" for k, d in rec.items() if k != victim)
    for d in rec.values():
        assert d["seen"] == d["analysed"] + d["quarantined"]
        assert d["analysed"] == sum(c["analysed"] for c in d["by_asset_class"].values())
    assert sum(d["analysed"] for d in rec.values()) == s["trades"]
    # every alert is published, the partial desk's included (they are real)
    alerts = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == s["alerts"] == sum(d["alerts"] for d in rec.values()) > 0


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_ndjson_cut_mid_line_is_partial(feeds, chunk):
    rows = msgspec.json.decode(next(iter(feeds.values())))
    text = b"\n".join(msgspec.json.encode(r) for r in rows)
    cut = text[: len(text) - 25]  # inside the last record
    result = run([BytesSource("EQ", cut)], chunk_size=chunk)
    (desk,) = result.desks
    assert desk.status == "partial" and "truncated" in desk.reasons[0]
    assert desk.seen == len(rows) == desk.analysed + sum(desk.quarantined.values())
    assert not result.ok and result.partial == [desk]


def test_whole_feeds_are_ok(feeds):
    result = run([BytesSource(d, data) for d, data in feeds.items()])
    assert result.ok and {d.status for d in result.desks} == {"ok"}


# -- error answers --------------------------------------------------------------------------
ERROR_ANSWERS = [
    b'{"status": "error", "message": "upstream timeout"}',
    b'{"status": "error", "message": "upstream timeout"}\n',
    b'[{"error": "not authorised"}]',
    b"[1, 2, 3]",
]


@pytest.mark.parametrize("answer", ERROR_ANSWERS)
def test_error_answer_is_a_failed_feed_not_no_anomalies(answer):
    with pytest.raises(FeedError, match="no trade records"):
        decode_feed(answer, "EQ")
    for chunk in (1, 7, 1 << 20):
        with pytest.raises(FeedError, match="no trade records"):
            list(iter_feed(answer, chunk, desk="EQ"))
    result = run([BytesSource("EQ", answer)])
    assert [d.status for d in result.desks] == ["failed"]
    assert result.failures[0].kind == "bad_feed"


def test_one_bad_trade_is_still_quarantined_not_a_failed_feed():
    # a record with trade fields is a trade with a defect, not an error answer
    b, q = decode_feed(b'{"trade_id": "T1", "trader_id": "X"}\n', "EQ")
    assert len(b) == 0 and q.counts == {"missing_field": 1} and q.seen == 1


def test_error_answer_from_the_legacy_feed_raises(monkeypatch, feeds):
    good = next(iter(feeds.values()))

    def api_call(desk_id):
        if desk_id == "FI_LDN":
            return b'{"status": "error", "message": "database unavailable"}'
        return good

    monkeypatch.setattr(legacy, "_api_call", api_call)
    with pytest.raises(DeskFailuresError) as info:
        legacy.process_all_desks(["EQ_NY", "FI_LDN"])
    assert list(info.value.failures) == ["FI_LDN"]
    assert info.value.results[0] is not None and info.value.results[1] is None
    with pytest.raises(Exception, match="no trade records"):
        legacy.analyze_desk("FI_LDN")


def test_error_answer_on_the_command_line_exits_4(feeds, tmp_path):
    bad = dict(feeds)
    victim = sorted(bad)[-1]
    bad[victim] = b'{"status": "error", "message": "maintenance"}'
    _write(tmp_path / "feeds", bad)
    r = cli("run", "feeds", "--out", "out", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert "no trade records" in _error_lines(r.stderr)[0]
    assert _summary(tmp_path / "out")["status"] == "failed"


# -- implausibly short feeds ------------------------------------------------------------------
@pytest.fixture(scope="module")
def history_baselines(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("history")
    dirs = []
    for i, date in enumerate(DATES):
        sc = generate_day(i, n_traders=TRADERS, n_episodes=EPISODES, date=date, population_seed=7)
        dirs.append(str(_write(d / date, {_slug(k): v for k, v in sc.feeds().items()})))
    r = cli("calibrate", *dirs, "--out", str(d / "baselines.json"), cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "baselines.json"


def _thin(data: bytes, keep: float) -> bytes:
    rows = msgspec.json.decode(data)
    rng = np.random.default_rng(0)
    return msgspec.json.encode([r for r in rows if rng.random() < keep])


def test_a_feed_cut_to_a_third_is_partial_with_figures(feeds, history_baselines, tmp_path):
    short = dict(feeds)
    victim = max(short, key=lambda k: len(short[k]))
    short[victim] = _thin(short[victim], 0.3)
    _write(tmp_path / "feeds", short)
    r = cli("run", "feeds", "--baselines", str(history_baselines), "--out", "out", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert f"desk {victim!r} is PARTIAL" in _error_lines(r.stderr)[0]
    assert "implausibly short" in r.stderr and "against a normal" in r.stderr
    rec = {d["desk"]: d for d in _summary(tmp_path / "out")["reconciliation"]}
    v = rec[victim]["volume"]
    assert v["short"] and v["judged"] and v["ratio"] < 0.5 and v["records"] < v["expected_records"]
    # the check can be turned off, and it judges nothing without baselines
    r = cli(
        "run", "feeds", "--baselines", str(history_baselines), "--min-volume-ratio", "0",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cli("run", "feeds", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_whole_day_against_its_history_is_ok(feeds, history_baselines, tmp_path):
    _write(tmp_path / "feeds", feeds)
    r = cli("run", "feeds", "--baselines", str(history_baselines), "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = _summary(tmp_path / "out")
    assert s["status"] == "ok"
    assert all(d["volume"]["judged"] and not d["volume"]["short"] for d in s["reconciliation"])


def test_min_volume_ratio_from_the_environment_is_checked(feeds, history_baselines, tmp_path):
    _write(tmp_path / "feeds", feeds)
    env = _env(SURV_MIN_VOLUME_RATIO="2")
    r = cli("run", "feeds", "--baselines", str(history_baselines), cwd=tmp_path, env=env)
    assert r.returncode == 2 and "SURV_MIN_VOLUME_RATIO" not in r.stdout
    assert "minimum volume ratio must be in [0, 1]" in _error_lines(r.stderr)[0]


# -- conservation ------------------------------------------------------------------------------
def test_a_conservation_break_is_an_error_not_a_log_line(feeds):
    result = run([BytesSource(d, data) for d, data in feeds.items()])
    read = result.reads[0]
    read.quarantine.seen += 1  # one record seen that went nowhere
    with pytest.raises(ConservationError, match="lost or invented"):
        reconcile(result, min_ratio=0.0, home_desks=result.home_desks())
    read.quarantine.seen -= 1
    read.trades -= 1  # the batch holds a row no desk accounts for
    with pytest.raises(ConservationError, match="lost or invented"):
        reconcile(result, min_ratio=0.0, home_desks=result.home_desks())


def test_quarantine_seen_adds_up_across_extend():
    a, b = Quarantine(), Quarantine()
    a.seen, b.seen = 3, 4
    a.extend(b)
    assert a.seen == 7


def test_outcome_metrics(feeds, caplog):
    reg = MetricsRegistry()
    cut = {d: data for d, data in feeds.items()}
    victim = sorted(cut)[0]
    cut[victim] = cut[victim][:-40]
    with caplog.at_level(logging.ERROR, logger="surv_kernel.pipeline.run"):
        result = run([BytesSource(d, data) for d, data in cut.items()], registry=reg)
    assert reg.value("surv_desk_outcomes_total", desk=victim, status="partial") == 1
    for d in cut:
        if d != victim:
            assert reg.value("surv_desk_outcomes_total", desk=d, status="ok") == 1
    seen = {d.desk: d.seen for d in result.desks}
    assert all(reg.value("surv_records_seen_total", desk=d) == n for d, n in seen.items())
    assert any("PARTIAL" in rec.getMessage() for rec in caplog.records)


def test_a_desk_whose_detector_fell_silent_is_flagged(feeds, history_baselines, caplog):
    """No floor-passing episode at all where history has several a day: not
    partial (a quiet day is possible) but flagged, logged and counted."""
    from surv_kernel.model import Baselines, DetectionConfig

    baselines = Baselines.load(history_baselines)
    expected = {d: p.floor_episodes_per_day for d, p in baselines.desks.items()}
    assert max(expected.values()) >= 3  # the history has episodes to miss
    reg = MetricsRegistry()
    silent_config = DetectionConfig(threshold_multiplier=1e6)  # no floor is ever passed
    with caplog.at_level(logging.WARNING, logger="surv_kernel.pipeline.run"):
        result = run(
            [BytesSource(d, data) for d, data in feeds.items()],
            baselines=baselines,
            config=silent_config,
            registry=reg,
        )
    assert result.ok and not result.detection.suppressed and not result.detection.alerts
    flagged = {d.desk for d in result.desks if d.detector_silent}
    # every desk with a few episodes a day is flagged; none with less than one by then
    assert flagged >= {d for d, n in expected.items() if n >= 3}
    assert all(d.volume.expected_floor_episodes >= 1.5 for d in result.desks if d.detector_silent)
    assert all(reg.value("surv_detector_silent_total", desk=d) == 1 for d in flagged)
    assert any("no floor-passing episode" in r.getMessage() for r in caplog.records)
    # with the normal floor the same day has episodes on every such desk
    normal = run([BytesSource(d, data) for d, data in feeds.items()], baselines=baselines)
    assert not any(d.detector_silent for d in normal.desks)
