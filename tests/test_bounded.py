"""The bounded-memory engine gives today's run exactly: same alerts (ids,
trades, explanations), same suppressed episodes, same reconciliation, for
any slicing of the day, with and without baselines from history, with
quarantined and duplicate records and with a desk failing half way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from surv_kernel.batch import Dictionaries, TradeBatch
from surv_kernel.cli.demo import slug as _slug
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.ingest import TradeIdSet
from surv_kernel.model import calibrate
from surv_kernel.model.config import resolve_config
from surv_kernel.pipeline import BytesSource, FileSource, LocalEngine, run
from surv_kernel.pipeline.bounded import BoundedEngine, IdArena, RepeatedIdSet, encode_ids
from surv_kernel.pipeline.sources import Progress
from test_cli import cli

TRADERS, EPISODES = 40, 12
SEEDS = (0, 3, 7)  # each has alerts on an own, a desk-peer (and 3: a class-peer) baseline


def _write(d: Path, feeds: dict[str, bytes]) -> list[FileSource]:
    d.mkdir(parents=True, exist_ok=True)
    for desk, data in feeds.items():
        (d / f"{desk}.json").write_bytes(data)
    return [FileSource(p) for p in sorted(d.iterdir())]


def _feeds(seed: int) -> dict[str, bytes]:
    sc = generate_day(seed, n_traders=TRADERS, n_episodes=EPISODES, population_seed=seed)
    return {_slug(d): data for d, data in sc.feeds().items()}


def _history(seed: int):
    """Baselines from three earlier days of the same desks."""
    shared = Dictionaries()
    days = [
        generate_day(
            100 + i,
            n_traders=TRADERS,
            n_episodes=EPISODES,
            population_seed=seed,
            date=f"2024-03-1{i}",
            dictionaries=shared,
        ).batch
        for i in range(1, 4)
    ]
    return calibrate(TradeBatch.concat(days), resolve_config(None))


def _same(a, b) -> None:
    """Everything a run publishes is equal."""
    assert a.alert_dicts() == b.alert_dicts()
    assert [x.alert_id for x in a.detection.alerts] == [x.alert_id for x in b.detection.alerts]
    assert a.detection.suppressed == b.detection.suppressed
    assert a.detection.n_trades == b.detection.n_trades
    assert a.detection.n_floor_episodes == b.detection.n_floor_episodes
    assert [d.to_dict() for d in a.desks] == [d.to_dict() for d in b.desks]
    assert a.home_desks() == b.home_desks()
    assert a.quarantine_counts == b.quarantine_counts
    assert [f.desk for f in a.failures] == [f.desk for f in b.failures]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("with_baselines", [False, True], ids=["day", "history"])
def test_bounded_equals_the_day_in_memory_for_any_slicing(seed, with_baselines, tmp_path):
    sources = _write(tmp_path, _feeds(seed))
    baselines = _history(seed) if with_baselines else None
    want = run(sources, baselines=baselines)
    assert want.detection.alerts, "the day must have alerts for the test to mean anything"
    if not with_baselines:  # the day's own peers are exercised, not only own baselines
        sources_used = {a.explanation.baseline_source for a in want.detection.alerts}
        assert sources_used & {"peer:desk", "peer:asset_class"}
    # 1 row: every spill file its own slice; 1500: a few files per slice; 10**9: one slice
    for rows in (1, 1500, 10**9):
        got = run(sources, baselines=baselines, engine=BoundedEngine(rows_per_slice=rows))
        _same(want, got)
        # only the alerted groups' trades are kept, never the day
        assert len(got.batch) < len(want.batch)
        alerted = {(a.trader_id, a.asset_class) for a in want.detection.alerts}
        kept = set(zip(got.batch.trader_ids(), got.batch.asset_classes(), strict=True))
        assert kept == alerted


def _dirty(feeds: dict[str, bytes]) -> dict[str, bytes]:
    """Bad records, duplicates within a desk and across desks, a cut feed."""
    names = sorted(feeds)
    rows = {k: msgspec.json.decode(feeds[k]) for k in names}
    a, b, c = names[0], names[1], names[2]
    first_b = dict(rows[b][0])
    rows[a].insert(5, dict(rows[a][3]))  # duplicate within the desk
    rows[a].append(first_b)  # the same id on another desk: the later desk's copy is quarantined
    rows[b].insert(10, {**rows[b][9], "trade_id": "bad-1", "notional": -5.0})
    rows[b].insert(12, {**rows[b][11], "trade_id": "bad-2", "currency": "XXX"})
    rows[b].insert(14, {**rows[b][13], "trade_id": "bad-3", "asset_class": "unobtainium"})
    out = {k: msgspec.json.encode(v) for k, v in rows.items()}
    out[c] = out[c][: int(len(out[c]) * 0.7)]  # truncated mid-record: partial
    return out


@pytest.mark.parametrize("with_baselines", [False, True], ids=["day", "history"])
def test_bounded_equals_with_quarantine_duplicates_and_a_cut_feed(with_baselines, tmp_path):
    sources = _write(tmp_path, _dirty(_feeds(3)))
    baselines = _history(3) if with_baselines else None
    want = run(sources, baselines=baselines, engine=LocalEngine(max_workers=1))
    counts = want.quarantine_counts
    assert counts["duplicate_trade_id"] == 2 and counts["truncated"] >= 1
    assert sum(counts.values()) >= 6
    assert want.partial
    got = run(sources, baselines=baselines, engine=BoundedEngine(rows_per_slice=1000))
    _same(want, got)
    for d in got.desks:  # conservation, per desk
        assert d.seen == d.analysed + sum(d.quarantined.values())


@pytest.mark.parametrize("dedup", ["disk", "memory"])
def test_duplicate_verdicts_with_only_the_repeated_ids_in_memory(dedup, tmp_path):
    feeds = _dirty(_feeds(0))
    sources = _write(tmp_path, feeds)
    want = run(sources, engine=LocalEngine(max_workers=1))
    got = run(sources, engine=BoundedEngine(rows_per_slice=1000, dedup=dedup))
    _same(want, got)
    held = len(got.batch.dictionaries.trade_ids)
    if dedup == "disk":  # the two repeated ids (one in a desk, one across desks) only
        assert held == 2
    else:
        assert held == got.totals.n
    # sources that cannot be read twice keep ingest's set of every id
    in_memory = [BytesSource(s.desk, s.path.read_bytes()) for s in sources]
    got = run(in_memory, engine=BoundedEngine(rows_per_slice=1000, dedup=dedup))
    _same(want, got)
    assert len(got.batch.dictionaries.trade_ids) == got.totals.n


def test_repeated_id_set_marks_what_the_full_set_marks():
    rng = np.random.default_rng(5)
    pool = np.concatenate([rng.integers(2, 2**63, 300, dtype=np.uint64), [0, 1]]).astype(np.uint64)
    hashes = rng.choice(pool, 1000)  # many repeats, and 0 and 1 (one id to ingest's table)
    candidate = rng.random(1000) < 0.8
    uniq, counts = np.unique(np.where(hashes == 0, 1, hashes), return_counts=True)
    full, filtered = TradeIdSet(), RepeatedIdSet(uniq[counts > 1])
    for lo in range(0, 1000, 97):  # chunk by chunk, as ingest calls it
        h, c = hashes[lo : lo + 97], candidate[lo : lo + 97]
        assert np.array_equal(full.mark_duplicates(h, c), filtered.mark_duplicates(h, c))
    assert len(filtered) <= len(full)


class _Breaks:
    """A desk feed that fails after its first chunk (the connection dropped)."""

    def __init__(self, inner: FileSource) -> None:
        self.inner = inner
        self.desk = inner.desk
        self.size = inner.size

    @property
    def where(self) -> str:
        return self.inner.where

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Iterator:
        it = self.inner.batches(dictionaries, chunk_size=chunk_size)
        yield next(it)
        raise ConnectionError("feed connection reset")


def test_a_desk_failing_half_way_is_cut_back_out_of_the_spill(tmp_path):
    sources: list = _write(tmp_path, _feeds(0))
    sources[2] = _Breaks(sources[2])
    want = run(sources, engine=LocalEngine(max_workers=1), chunk_size=1 << 14)
    assert [f.desk for f in want.failures] == [sources[2].desk]
    got = run(sources, engine=BoundedEngine(rows_per_slice=2000), chunk_size=1 << 14)
    _same(want, got)
    assert got.totals.n == sum(r.trades for r in got.reads)  # no row of the failed desk left


def test_slicing_never_splits_a_group_and_any_chunking_gives_the_same_alerts(tmp_path):
    sources = _write(tmp_path, _feeds(7))
    want = run(sources)
    for chunk in (1 << 12, 1 << 16):
        _same(want, run(sources, engine=BoundedEngine(rows_per_slice=800), chunk_size=chunk))


def test_the_volume_detector_only():
    class Other:
        name = "other"

    with pytest.raises(Exception, match="volume detector alone"):
        BoundedEngine().execute([], [Other()], None, chunk_size=1 << 20)  # type: ignore[list-item]


@pytest.mark.parametrize(
    "ids",
    [
        [],
        ["T1"],
        ["T1", "", "trade-é€", "x" * 300],
        ["a\nb", "c", "d\n"],  # the join separator inside ids: encoded one by one
    ],
)
def test_trade_id_arena_round_trips(ids):
    lengths, arena = encode_ids(np.array(ids, dtype=object))
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    a = IdArena(np.frombuffer(arena, np.uint8), offsets)
    assert len(a) == len(ids)
    assert [a[i] for i in range(len(ids))] == ids
    assert a[np.arange(len(ids))].tolist() == ids
    if ids:
        assert a[-1] == ids[-1]
        mask = np.zeros(len(ids), bool)
        mask[0] = True
        assert a[mask].tolist() == ids[:1]


def test_cli_run_memory_bounded_publishes_the_same_files(tmp_path):
    feeds = _dirty(_feeds(0))
    d = tmp_path / "feeds"
    _write(d, feeds)
    r1 = cli("run", "feeds", "--out", "day", cwd=tmp_path)
    r2 = cli("run", "feeds", "--out", "bounded", "--memory", "bounded", cwd=tmp_path)
    assert r1.returncode == r2.returncode == 4, (r1.stderr, r2.stderr)  # the cut feed: partial
    for name in ("alerts.jsonl", "suppressed.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "day" / name).read_bytes() == (tmp_path / "bounded" / name).read_bytes()
    assert (tmp_path / "day" / "alerts.jsonl").read_bytes().count(b"\n") > 0
