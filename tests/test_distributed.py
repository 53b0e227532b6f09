"""The Dask engine against the local engine, on a real LocalCluster.

The property (the one every engine must have, like the stream's "any split of
a day into batches == batch detection"): with the same baselines, any
partitioning of a day over worker processes gives exactly the local engine's
alerts (ids and content) and suppressed episodes.
"""

import datetime as dt
import json
import sys
import zlib

# not importorskip: the 'test' extra installs dask[distributed], and a
# missing engine must fail CI rather than skip its only check
import distributed
import msgspec
import numpy as np
import pytest

from batches import make_batch
from surv_kernel.cli import main
from surv_kernel.errors import ConfigError, SurveillanceError
from surv_kernel.evaluation.history import write_history
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.model import DetectionConfig, VolumeDetector, calibrate
from surv_kernel.pipeline import BytesSource, LocalEngine, merge_batches
from surv_kernel.pipeline.backtest import backtest
from surv_kernel.pipeline.distributed import (
    DaskEngine,
    group_partitions,
    kernel_cache_stats,
    split_by_group,
)
from surv_kernel.pipeline.run import alert_desks, home_desks

CHUNK = 1 << 20
MIN = 60 * 10**9


@pytest.fixture(scope="module")
def client():
    # real worker processes (spawned interpreters): what pickles, imports and
    # loads the Numba cache is exercised, not a thread pool in this process
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def engine(client):
    return DaskEngine(client=client)


def day(seed, date, n_traders=60, **knobs):
    return generate_day(seed, n_traders=n_traders, population_seed=7, date=date, **knobs)


def sources_of(scenario):
    return [BytesSource(desk, feed) for desk, feed in scenario.feeds().items()]


def history(*scenarios, keep=None):
    """Baselines history: the days' batches, optionally only some traders
    (the others are cold starts and take peer baselines)."""
    h = merge_batches([s.batch for s in scenarios])
    if keep is not None:
        traders = np.array(h.trader_ids(), object)
        h = h.take(np.flatnonzero(np.isin(traders, keep)))
    return h


def encoded(detection):
    # JSON bytes: NaN explanations compare equal (null), field by field
    return (
        msgspec.json.encode(detection.alerts),
        msgspec.json.encode(detection.suppressed),
        detection.n_trades,
        detection.n_floor_episodes,
    )


def local(sources, detectors, baselines):
    return LocalEngine(max_workers=1).execute(sources, detectors, baselines, chunk_size=CHUNK)


@pytest.fixture(scope="module")
def days():
    return [day(s, f"2024-03-{11 + s:02d}") for s in range(4)]


@pytest.fixture(scope="module")
def baselines(days):
    # the first day, half the traders: the rest are cold (peer baselines)
    traders = sorted({t for t in days[0].trader_id.tolist()})
    return calibrate(history(days[0], keep=traders[::2]))


def test_equal_to_local_for_every_partition_count(engine, days, baselines):
    detectors = [VolumeDetector()]
    for sc in days[1:3]:
        sources = sources_of(sc)
        want = local(sources, detectors, baselines)
        assert want.detection.alerts, "a day without alerts would prove little"
        assert want.detection.suppressed
        sources_used = {a.explanation.baseline_source for a in want.detection.alerts}
        sources_used |= {s.explanation.baseline_source for s in want.detection.suppressed}
        assert {"own", "peer:desk"} <= sources_used or {"own", "peer:asset_class"} <= sources_used
        for parts in range(1, 8):
            engine.partitions = parts
            got = engine.execute(sources, detectors, baselines, chunk_size=CHUNK)
            assert encoded(got.detection) == encoded(want.detection), parts
            assert [a.alert_id for a in got.detection.alerts] == [
                a.alert_id for a in want.detection.alerts
            ]
            assert [r.source.desk for r in got.reads] == [r.source.desk for r in want.reads]
            assert [dict(r.quarantine.counts) for r in got.reads] == [
                dict(r.quarantine.counts) for r in want.reads
            ]
    engine.partitions = None


@pytest.mark.parametrize(
    "config",
    [
        DetectionConfig(policy="static"),
        DetectionConfig(window_minutes=10.0, threshold_multiplier=2.0),
        DetectionConfig(z_level=3.0, ratio_level=2.0, min_windows=5),
    ],
    ids=["static", "10min", "loose"],
)
def test_equal_to_local_across_configs(engine, days, config):
    base = calibrate(history(days[0], days[1]), config)
    sources = sources_of(days[3])
    want = local(sources, [VolumeDetector(config)], base)
    assert want.detection.alerts
    for parts in (3, 5):
        engine.partitions = parts
        got = engine.execute(sources, [VolumeDetector(config)], base, chunk_size=CHUNK)
        assert encoded(got.detection) == encoded(want.detection)
    engine.partitions = None


def test_two_detectors_merge_like_run_detectors(engine, days, baselines):
    # two typologies with the same name: alerts can share (start, trader, class, id),
    # and the merge must keep the detectors' order for them as run_detectors does
    detectors = [VolumeDetector(), VolumeDetector(DetectionConfig(z_level=4.0))]
    sources = sources_of(days[2])
    want = local(sources, detectors, baselines)
    engine.partitions = 4
    got = engine.execute(sources, detectors, baselines, chunk_size=CHUNK)
    engine.partitions = None
    assert encoded(got.detection) == encoded(want.detection)


def test_alert_desks_come_back_without_the_day(engine, days, baselines):
    sources = sources_of(days[1])
    want = local(sources, [VolumeDetector()], baselines)
    got = engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    alerts = got.detection.alerts
    assert alert_desks(got.batch, alerts) == alert_desks(want.batch, alerts)
    assert home_desks(got.batch, alerts) == home_desks(want.batch, alerts)
    # only the alerts' trades came back, not the partitions' rows
    assert len(got.batch) == len({t for a in alerts for t in a.trades}) < len(want.batch) / 2
    assert got.detection.n_trades == len(want.batch)


def test_cross_desk_duplicate_ids_like_local(engine, days, baselines):
    # the same trade delivered by two desks: the later desk's copy is
    # quarantined, in source order, exactly as the local engine does
    feeds = days[1].feeds()
    first, second = list(feeds)[:2]
    rows = msgspec.json.decode(feeds[first])
    dup = msgspec.json.decode(feeds[second]) + rows[:5]
    sources = [BytesSource(first, feeds[first]), BytesSource(second, msgspec.json.encode(dup))]
    want = local(sources, [VolumeDetector()], baselines)
    assert want.reads[1].quarantine.counts["duplicate_trade_id"] == 5
    got = engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    assert encoded(got.detection) == encoded(want.detection)
    assert got.reads[1].quarantine.counts == want.reads[1].quarantine.counts


def test_failed_desk_is_named_and_the_rest_analysed(engine, days, baselines):
    sources = sources_of(days[1])
    sources[1] = BytesSource(sources[1].desk, b"{not json")
    want = local(sources, [VolumeDetector()], baselines)
    got = engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    assert [f.desk for f in got.failures] == [f.desk for f in want.failures] == [sources[1].desk]
    assert got.failures[0].kind == want.failures[0].kind
    assert encoded(got.detection) == encoded(want.detection)


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [("t1", "TR1", "equity", "D1", 10 * MIN, 5e6)],
        # one group whose burst alerts: every partition but one is empty
        [(f"b{i}", "TR1", "equity", "D1", (100 + i) * MIN // 10, 2e6) for i in range(40)],
    ],
    ids=["empty", "one-trade", "one-group"],
)
def test_tiny_days(engine, rows, baselines):
    dicts = [
        {
            "trade_id": tid,
            "trader_id": trader,
            "asset_class": ac,
            "notional": usd,
            "currency": "USD",
            "timestamp": ts / 1e9 + 1.71e9,
            "surveillance_required": False,
        }
        for tid, trader, ac, _, ts, usd in rows
    ]
    sources = [BytesSource("D1", msgspec.json.encode(dicts))]
    want = local(sources, [VolumeDetector()], baselines)
    for parts in (1, 7):
        engine.partitions = parts
        got = engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
        assert encoded(got.detection) == encoded(want.detection)
        assert got.detection.n_trades == len(rows)
    engine.partitions = None
    if len(rows) == 40:
        assert len(want.detection.alerts) == 1


def test_workers_load_kernels_from_the_cache_and_never_compile_per_task(
    engine, client, days, baselines
):
    sources = sources_of(days[1])
    engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    before = client.run(kernel_cache_stats)
    assert len(before) == 2
    for stats in before.values():
        # loaded from the cache `make install` warmed, none compiled in a worker
        assert sum(h for _, h, _ in stats.values()) > 0, "kernels were not loaded from the cache"
        assert sum(m for _, _, m in stats.values()) == 0, stats
    for parts in (2, 6):
        engine.partitions = parts
        engine.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    engine.partitions = None
    # more tasks, same signatures, no new loads, no compilation
    assert client.run(kernel_cache_stats) == before


def test_partitions_follow_names_not_codes():
    rows = [
        ("a", "TR1", "equity", "D1", 1, 1.0),
        ("b", "TR2", "FX", "D1", 2, 1.0),
        ("c", "TR1", "FX", "D1", 3, 1.0),
    ]
    forward, backward = make_batch(rows), make_batch(rows[::-1])
    for p in (1, 2, 3, 5, 7):
        f, b = group_partitions(forward, p), group_partitions(backward, p)
        assert f.tolist() == b.tolist()[::-1]
        expected = [zlib.crc32(f"{t}\x1f{ac}".encode()) % p for _, t, ac, *_ in rows]
        assert f.tolist() == expected
    pieces = split_by_group(forward, 3)
    assert sorted(t for p in pieces for t in p.trade_id) == ["a", "b", "c"]
    # every piece keeps the input order of its rows
    for p in pieces:
        assert list(p.trade_id) == sorted(p.trade_id)


def test_same_day_baselines_are_refused(engine, days):
    with pytest.raises(ConfigError, match="needs baselines"):
        engine.execute(sources_of(days[1]), [VolumeDetector()], None, chunk_size=CHUNK)


def test_without_the_extra_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(ConfigError, match=r"surv_kernel\[dask\]") as info:
        DaskEngine()
    assert isinstance(info.value, SurveillanceError)


def test_existing_cluster_by_address(client, days, baselines):
    address = client.scheduler.address
    sources = sources_of(days[1])
    want = local(sources, [VolumeDetector()], baselines)
    with DaskEngine(scheduler=address, partitions=3) as eng:
        assert eng.n_workers == 2
        got = eng.execute(sources, [VolumeDetector()], baselines, chunk_size=CHUNK)
    assert encoded(got.detection) == encoded(want.detection)
    # closing the engine closed its own client only: the cluster still serves
    assert client.submit(sum, [1, 2]).result() == 3


def test_unreachable_scheduler_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        DaskEngine(scheduler="tcp://127.0.0.1:9", connect_timeout_s=1)


# -- the backtest: >= 20 days of generated history, both engines -----------------------


@pytest.fixture(scope="module")
def long_history(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    days = write_history(root, 22, start=dt.date(2024, 3, 1), n_traders=30)
    return root, days


def day_outputs(out, days):
    files = {}
    for day in days:
        d = out / f"date={day}"
        run = json.loads((d / "run.json").read_text())
        run.pop("seconds"), run.pop("engine")
        files[str(day)] = (
            run,
            (d / "alerts.jsonl").read_bytes() if (d / "alerts.jsonl").exists() else None,
            (d / "suppressed.jsonl").read_bytes() if (d / "suppressed.jsonl").exists() else None,
        )
    return files


def test_backtest_20_days_dask_equals_local(engine, long_history, tmp_path):
    root, days = long_history
    want = backtest(root, days[0], days[-1], tmp_path / "local", rolling=3)
    assert [d.status for d in want.days].count("ok") == 19
    assert want.totals()["alerts"] > 100
    engine.partitions = 5
    got = backtest(root, days[0], days[-1], tmp_path / "dask", engine=engine, rolling=3)
    engine.partitions = None
    assert got.totals() == want.totals()
    assert day_outputs(tmp_path / "dask", days) == day_outputs(tmp_path / "local", days)


def test_backtest_cli_on_an_existing_cluster(client, long_history, tmp_path, capsys):
    root, days = long_history
    argv = ["backtest", str(root), "--from", str(days[0]), "--to", str(days[6])]
    argv += ["--rolling-calibration", "2"]
    assert main([*argv, "--out", str(tmp_path / "l")]) == 0
    capsys.readouterr()
    code = main(
        [
            *argv,
            "--engine",
            "dask",
            "--scheduler",
            client.scheduler.address,
            "--out",
            str(tmp_path / "d"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dashboard http" in err and "on dask" in err
    assert day_outputs(tmp_path / "d", days[:7]) == day_outputs(tmp_path / "l", days[:7])


def test_backtest_failed_calibration_day_on_dask_like_local(engine, tmp_path):
    # on Dask the calibration is a future the day's tasks wait for: its
    # DataError must fail that day only, as the local engine's does
    root = tmp_path / "h"
    days = write_history(root, 5, start=dt.date(2024, 3, 1), n_traders=20)
    (root / f"date={days[1]}" / "NY Rates.json").write_text("<html>502</html>")
    want = backtest(root, days[0], days[-1], tmp_path / "l", rolling=1)
    got = backtest(root, days[0], days[-1], tmp_path / "d", engine=engine, rolling=1)
    statuses = [d.status for d in want.days]
    assert statuses == ["skipped", "failed", "failed", "ok", "ok"]
    assert [d.status for d in got.days] == statuses
    assert [d.record.get("reason") for d in got.days] == [d.record.get("reason") for d in want.days]
    assert day_outputs(tmp_path / "d", days) == day_outputs(tmp_path / "l", days)
