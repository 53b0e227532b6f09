"""Full detection (window sums + baselines + scoring + episodes + alerts) vs
polars' rolling sum alone, on the same trades.

Data: a synthetic day of ``n`` trades from 5,000 traders x 3 asset classes on
six desks, U-shaped intraday times at millisecond resolution, arriving as six
time-ordered desk feeds concatenated (the realistic arrival). Each (trader,
asset class) book has its own typical half-hour volume, lognormal around 30%
of the static floor (about one book in ten crosses the floor routinely, like
institutional traders), and lognormal trade sizes around it; a few hundred
bursts are injected so there are alerts to build. Trade ids are one shared
string (10M distinct Python strings would cost seconds and ~600 MB to make and
are not what is being measured; alert building only touches a few thousand).

* ``surv_kernel.detect(batch)``: the legacy path (baselines from the batch
  itself), the most work: window stats, thinned and trimmed baselines, the
  floor scan, peers, episodes, alerts and the suppression report.
* polars: ``pl.col("notional").rolling_sum_by("ts", window_size="30m",
  closed="both").over("group")`` only, on a prepared DataFrame (no ingest,
  no baselines, no alerts).

Standalone, side by side in one process (interleaved rounds):
    PYTHONPATH=src:python python asv_bench/benchmarks/detection.py
    PYTHONPATH=src:python python asv_bench/benchmarks/detection.py --sizes 1e6 --rounds 5
through asv:
    cd asv_bench && asv run --python=same --quick -b detection
"""

from __future__ import annotations

import os
import sys

import numpy as np

try:
    import surv_kernel  # noqa: F401
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))
from surv_kernel.batch import Dictionaries, TradeBatch

NS_PER_MINUTE = 60 * 1_000_000_000
SIZES = [1_000_000, 10_000_000]
ASSET_CLASSES = ("equity", "fixed_income", "derivative")
FLOORS = np.array([1e6, 5e6, 2e6])  # reference.ASSET_CLASS_FLOORS_USD, in ASSET_CLASSES order

_DATA: dict[int, TradeBatch] = {}


def make_batch(n: int, seed: int = 0, n_traders: int = 5000, n_desks: int = 6) -> TradeBatch:
    """A synthetic day of ``n`` trades as a TradeBatch; see the module docstring."""
    rng = np.random.default_rng(seed)
    n_ac = len(ASSET_CLASSES)
    desk_of_trader = rng.integers(0, n_desks, n_traders)
    activity = rng.lognormal(0.0, 1.0, n_traders)
    trader = rng.choice(n_traders, size=n, p=activity / activity.sum())
    cum = rng.dirichlet(np.full(n_ac, 0.7), n_traders).cumsum(axis=1)
    u = rng.random(n)
    ac = (u[:, None] > cum[trader, : n_ac - 1]).sum(axis=1)
    group = trader * n_ac + ac
    n_groups = n_traders * n_ac
    minutes = 510
    day0 = 1_767_000_000 * 1_000_000_000
    ms = (rng.beta(0.6, 0.6, n) * minutes * 60_000).astype(np.int64)
    ts = day0 + ms * 1_000_000
    # typical half-hour volume per book ~ 30% of its static floor (x3)
    level = 3 * FLOORS[np.arange(n_groups) % n_ac] * rng.lognormal(np.log(0.3), 0.8, n_groups)
    per_window = np.maximum(np.bincount(group, minlength=n_groups) / (minutes / 30), 1.0)
    size = level / per_window
    usd = size[group] * rng.lognormal(0.0, 0.6, n)
    # bursts: ~1 per 30k trades, 10x the book's level on one trade
    burst = rng.choice(n, size=max(n // 30_000, 1), replace=False)
    usd[burst] += 10 * level[group[burst]]
    order = np.lexsort((ts, desk_of_trader[trader]))  # six time-ordered desk feeds
    d = Dictionaries()
    for i in range(n_traders):
        d.trader.code(f"TR{i:05d}")
    for name in ASSET_CLASSES:
        d.asset_class.code(name)
    for k in range(n_desks):
        d.desk.code(f"DESK{k}")
    d.currency.code("USD")
    return TradeBatch(
        timestamp_ns=ts[order],
        notional_usd=usd[order],
        trader=trader[order],
        asset_class=ac[order],
        desk=desk_of_trader[trader][order],
        trade_id=np.full(n, "T", dtype=object),
        dictionaries=d,
    )


def batch(n: int) -> TradeBatch:
    if n not in _DATA:
        _DATA.clear()  # one data set in memory at a time
        _DATA[n] = make_batch(n)
    return _DATA[n]


def warm_up() -> None:
    """Compile (or load from the cache) every kernel detect uses."""
    from surv_kernel.model import detect

    detect(make_batch(20_000, seed=1, n_traders=50))


def detect_runner(b: TradeBatch):
    from surv_kernel.model import detect

    def run():
        return detect(b)

    return run


def polars_runner(b: TradeBatch):
    import polars as pl

    n_ac = len(b.dictionaries.asset_class)
    group = b.trader.astype(np.int64) * n_ac + b.asset_class
    df = pl.DataFrame(
        {
            "group": group,
            "ts": pl.Series(b.timestamp_ns).cast(pl.Datetime("ns")),
            "notional": b.notional_usd,
        }
    )
    expr = pl.col("notional").rolling_sum_by("ts", window_size="30m", closed="both").over("group")

    def run():
        return df.select(expr).to_series().to_numpy()

    return run


RUNNERS = {"detect": detect_runner, "polars": polars_runner}


class _Base:
    params = [SIZES]
    param_names = ["n_trades"]
    timeout = 900
    number = 1
    repeat = (1, 5, 60.0)
    runner = "detect"

    def setup(self, n):
        try:
            self.run = RUNNERS[self.runner](batch(n))
        except ImportError as exc:
            raise NotImplementedError(f"{self.runner} not installed: {exc}") from None
        warm_up()
        self.run()


class FullDetection(_Base):
    runner = "detect"

    def time_detect(self, n):
        self.run()

    def peakmem_detect(self, n):
        self.run()


class PolarsRollingSumOnly(_Base):
    runner = "polars"

    def time_polars_rolling_sum_by_over(self, n):
        self.run()


def _compare(n: int, rounds: int) -> None:
    import statistics
    import time

    b = batch(n)
    warm_up()
    runs = {}
    for name, make in RUNNERS.items():
        try:
            runs[name] = make(b)
        except ImportError as exc:
            print(f"  {name}: not installed ({exc})")
    det = runs["detect"]()
    print(
        f"  detect: {len(det.alerts)} alerts, {len(det.suppressed)} suppressed of "
        f"{det.n_floor_episodes} floor episodes"
    )
    for run in runs.values():
        run()  # warm caches / lazy initialisation
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved: background load hits both
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"  {name:8s} best {min(ts):7.3f} s  median {statistics.median(ts):7.3f} s")
    if "polars" in times:
        best = min(times["polars"]) / min(times["detect"])
        med = statistics.median(times["polars"]) / statistics.median(times["detect"])
        print(f"  polars rolling sum / full detect: best {best:.2f}x, median {med:.2f}x")


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="comma-separated row counts")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for size in args.sizes.split(","):
        n = int(float(size))
        print(f"{n:,} trades, six time-ordered desk feeds:")
        _compare(n, args.rounds)


if __name__ == "__main__":
    main()
