"""Rolling window sums: surv_kernel vs polars vs DuckDB vs pandas on the same arrays.

The data is a synthetic trading day: ~600 traders x 5 asset classes (about
3,000 (trader, asset class) groups), each trader on one of six desks,
U-shaped intraday times, lognormal USD notionals. Three shapes of group
sizes (``shape``):

* ``lognormal`` (the default, the figures in the README): trader activity
  lognormal(0, 1), heavy-tailed but no trader above ~1.5% of the day;
* ``even``: every trader equally active (group sizes vary only by the
  trader's asset-class mix);
* ``zipf``: activity ~ 1 / rank**0.7, so the top traders hold ~5%, ~3%,
  ~2.5% ... of the day each (the skew that leaves one thread with a few huge
  groups when groups are scheduled whole).

Two timestamp resolutions (``stamps``): ``ms`` (millisecond times, so equal
timestamps occur inside groups) and ``ns`` (a nanosecond offset added: no
ties). Two arrivals:

* ``ordered``: six time-ordered desk feeds concatenated (the realistic case:
  every group is already time-ordered, the kernel skips its time sort);
* ``shuffled``: a random permutation (every group needs the time sort).

Window: 30 minutes, both ends inclusive, per group, results aligned with the
input rows. What each peer computes:

* polars ``pl.col("notional").rolling_sum_by("ts", window_size="30m",
  closed="both").over("group")``: the same definition (values agree to ~1e-13).
* DuckDB ``SUM(notional) OVER (PARTITION BY grp ORDER BY ts RANGE BETWEEN
  1800000000000 PRECEDING AND CURRENT ROW)`` on integer ns: the same
  definition (RANGE ... CURRENT ROW includes peers, i.e. equal timestamps);
  the result comes back in DuckDB's order, not re-aligned with the input,
  which favours DuckDB. Skipped at 10M in asv (6-18 s per call here).
* pandas ``groupby("grp").rolling("30min", on="ts", closed="both").sum()``:
  needs times monotonic inside each group, so shuffled input is sorted first
  (timed), and the result is re-aligned with the input (timed); its window
  ends at the row itself among equal timestamps, so values differ on ties.
  Skipped at 10M in asv.

Memory (by construction, not measured: RSS sampling cannot see what polars'
allocator or glibc reuse): rolling_window_sums allocates 36 bytes per row
(40 when some group needs the time sort), its two outputs included;
window_stats 56 bytes per row, 40 of them returned.

First-touch note: on this VM a fresh process pays ~1 s of page faults for the
first ~500 MB it ever touches, so every setup below runs the function once.

Standalone, side by side in one process (interleaved rounds, best and median):
    PYTHONPATH=src:python python asv_bench/benchmarks/windows.py
    PYTHONPATH=src:python python asv_bench/benchmarks/windows.py --sizes 1e6,1e7 --rounds 5 \
        --shapes even,zipf --stamps ms,ns --no-latency   # every shape, one table of ratios
    PYTHONPATH=src:python python asv_bench/benchmarks/windows.py --sizes 1e6 --peers polars,duckdb,pandas
    PYTHONPATH=src:python python asv_bench/benchmarks/windows.py --latency-only
through asv:
    cd asv_bench && asv run --python=same --quick -b windows
"""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np

try:
    import surv_kernel
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "src"))
    import surv_kernel
from surv_kernel import windows

NS_PER_MINUTE = 60 * 1_000_000_000
WINDOW_NS = 30 * NS_PER_MINUTE
SIZES = [1_000_000, 10_000_000]
ARRIVALS = ["ordered", "shuffled"]
SHAPES = ["lognormal", "even", "zipf"]
STAMPS = ["ms", "ns"]
ZIPF_S = 0.7  # exponent of the zipf shape (see the module docstring)
SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(surv_kernel.__file__)))

_DATA: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def make_trades(
    n,
    seed=0,
    arrival="ordered",
    n_traders=600,
    n_asset_classes=5,
    n_desks=6,
    shape="lognormal",
    stamps="ms",
):
    """``(group_codes int32, timestamps_ns int64, notional_usd float64)`` of a
    synthetic day of ``n`` trades; see the module docstring."""
    rng = np.random.default_rng(seed)
    desk_of_trader = rng.integers(0, n_desks, n_traders)
    # drawn for every shape so the other columns are the same across shapes
    activity = rng.lognormal(0.0, 1.0, n_traders)
    if shape == "even":
        activity = np.ones(n_traders)
    elif shape == "zipf":
        activity = 1.0 / np.arange(1, n_traders + 1) ** ZIPF_S
    elif shape != "lognormal":
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    activity /= activity.sum()
    trader = rng.choice(n_traders, size=n, p=activity)
    # each trader favours a few asset classes
    cum = rng.dirichlet(np.full(n_asset_classes, 0.5), n_traders).cumsum(axis=1)
    u = rng.random(n)
    asset_class = np.zeros(n, dtype=np.int64)
    for k in range(n_asset_classes - 1):
        asset_class += u > cum[trader, k]
    group = (trader * n_asset_classes + asset_class).astype(np.int32)
    day0 = 1_767_000_000 * 1_000_000_000
    minutes = 510  # 08:00-16:30, busier at the open and the close
    ms = (rng.beta(0.6, 0.6, n) * minutes * 60_000).astype(np.int64)
    ts = day0 + ms * 1_000_000
    notional = rng.lognormal(13.0, 1.5, n)
    if stamps == "ns":  # a sub-millisecond offset: no equal timestamps in practice
        ts = ts + rng.integers(0, 1_000_000, n)
    elif stamps != "ms":
        raise ValueError(f"stamps must be one of {STAMPS}, got {stamps!r}")
    if arrival == "ordered":
        order = np.lexsort((ts, desk_of_trader[trader]))
    elif arrival == "shuffled":
        order = rng.permutation(n)
    else:
        raise ValueError(f"arrival must be 'ordered' or 'shuffled', got {arrival!r}")
    return group[order], ts[order], notional[order]


def trades(n, arrival, shape="lognormal", stamps="ms"):
    key = (n, arrival, shape, stamps)
    if key not in _DATA:
        _DATA.clear()  # keep one data set in memory at a time
        _DATA[key] = make_trades(n, 0, arrival, shape=shape, stamps=stamps)
    return _DATA[key]


def warm_kernels():
    """Compile (or load from cache) every kernel outside the timings."""
    windows.precompile()


# --------------------------------------------------------------------------
# the implementations, each a callable on the same arrays
# --------------------------------------------------------------------------


def surv_kernel_runner(g, t, x):
    def run():
        return windows.rolling_window_sums(g, t, x, WINDOW_NS)[0]

    return run


def polars_runner(g, t, x):
    import polars as pl

    df = pl.DataFrame({"group": g, "ts": pl.Series(t).cast(pl.Datetime("ns")), "notional": x})
    expr = pl.col("notional").rolling_sum_by("ts", window_size="30m", closed="both").over("group")

    def run():
        return df.select(expr).to_series().to_numpy()

    return run


def duckdb_runner(g, t, x):
    import duckdb
    import pandas as pd

    con = duckdb.connect()
    con.register("trades", pd.DataFrame({"grp": g, "ts": t, "notional": x}))
    query = (
        "SELECT SUM(notional) OVER (PARTITION BY grp ORDER BY ts "
        f"RANGE BETWEEN {WINDOW_NS} PRECEDING AND CURRENT ROW) AS s FROM trades"
    )

    def run():
        return con.execute(query).fetchnumpy()["s"]

    return run


def pandas_runner(g, t, x):
    import pandas as pd

    df = pd.DataFrame({"grp": g, "ts": t.view("datetime64[ns]"), "notional": x})
    # pandas needs the times monotonic inside each group
    needs_sort = bool((np.diff(t) < 0).any())

    def run():
        frame = df.sort_values(["grp", "ts"], kind="stable") if needs_sort else df
        rolled = frame.groupby("grp").rolling("30min", on="ts", closed="both")["notional"].sum()
        # rows come back grouped, input order within a group: re-align
        out = np.empty(len(frame))
        out[frame.index.to_numpy()[np.argsort(frame["grp"].to_numpy(), kind="stable")]] = (
            rolled.to_numpy()
        )
        return out

    return run


RUNNERS = {
    "surv_kernel": surv_kernel_runner,
    "polars": polars_runner,
    "duckdb": duckdb_runner,
    "pandas": pandas_runner,
}


# --------------------------------------------------------------------------
# asv
# --------------------------------------------------------------------------


class _Base:
    params = (SIZES, ARRIVALS, SHAPES, STAMPS)
    param_names = ["n_trades", "arrival", "shape", "stamps"]
    timeout = 900
    number = 1
    repeat = (1, 5, 60.0)
    runner = "surv_kernel"
    max_n = 10**12

    def setup(self, n, arrival, shape, stamps):
        if n > self.max_n:
            raise NotImplementedError(f"{self.runner} skipped above {self.max_n} rows (too slow)")
        try:
            self.run = RUNNERS[self.runner](*trades(n, arrival, shape, stamps))
        except ImportError as exc:
            raise NotImplementedError(f"{self.runner} not installed: {exc}") from None
        warm_kernels()
        self.run()  # warm caches, lazy initialisation, first-touch page faults


class RollingWindowSums(_Base):
    runner = "surv_kernel"

    def time_rolling_window_sums(self, n, arrival, shape, stamps):
        self.run()


class PolarsRollingSumBy(_Base):
    runner = "polars"

    def time_polars_rolling_sum_by_over(self, n, arrival, shape, stamps):
        self.run()


class DuckDBWindowRange(_Base):
    runner = "duckdb"
    max_n = 1_000_000

    def time_duckdb_sum_over_range(self, n, arrival, shape, stamps):
        self.run()


class PandasGroupbyRolling(_Base):
    runner = "pandas"
    max_n = 1_000_000

    def time_pandas_groupby_rolling(self, n, arrival, shape, stamps):
        self.run()


class WindowStatsAndMedian:
    """The model's path: window_stats (sorted order, bounds) + median/MAD."""

    params = ([10_000_000], ["ordered"])
    param_names = ["n_trades", "arrival"]
    timeout = 900
    number = 1
    repeat = (1, 5, 60.0)

    def setup(self, n, arrival):
        self.g, self.t, self.x = trades(n, arrival)
        warm_kernels()
        self.stats = windows.window_stats(self.g, self.t, self.x, WINDOW_NS)
        # once more, discarded: a fresh process pays ~1 s of first-touch page
        # faults (this VM) for memory it has never used; keep that out too
        windows.window_stats(self.g, self.t, self.x, WINDOW_NS)

    def time_window_stats(self, n, arrival):
        windows.window_stats(self.g, self.t, self.x, WINDOW_NS)

    def time_group_median_mad(self, n, arrival):
        windows.group_median_mad(self.stats.sums, self.stats.group_offsets)


# -- first-call latency in a fresh process: import + JIT (or cache load) -----

_FIRST_CALL = """
from surv_kernel.windows import rolling_window_sums, window_stats, group_median_mad
rolling_window_sums(_g, _t, _x, 2)
_s = window_stats(_g, _t, _x, 2)
group_median_mad(_s.sums, _s.group_offsets)
"""


_ARRAYS = (
    "_g = np.array([0, 0, 1, 1], np.int32); _t = np.array([1, 2, 5, 3], np.int64); _x = np.ones(4)"
)


def _latency_setup(cache: str) -> str:
    """Untimed setup of the fresh process: arrays (numpy import is not ours),
    and a Numba cache directory that is either brand new (``cold``) or
    primed by another fresh process (``warm``). No backslash escapes: asv
    pastes this into a triple-quoted string."""
    lines = [
        "import os as _os, subprocess as _subprocess, sys as _sys, tempfile as _tempfile",
        f"_sys.path.insert(0, {SRC_DIR!r})",
        f"_os.environ['PYTHONPATH'] = {SRC_DIR!r} + _os.pathsep + _os.environ.get('PYTHONPATH', '')",
        "import numpy as np",
        _ARRAYS,
        "_dir = _tempfile.mkdtemp(prefix='surv-numba-cache-')",
    ]
    if cache == "warm":
        prime = "; ".join(["import numpy as np", _ARRAYS, *_FIRST_CALL.strip().splitlines()])
        lines.append(
            f"_subprocess.run([_sys.executable, '-c', {prime!r}], "
            "env=dict(_os.environ, NUMBA_CACHE_DIR=_dir), check=True)"
        )
    lines.append("_os.environ['NUMBA_CACHE_DIR'] = _dir")
    return "\n".join(lines) + "\n"


class FirstCallLatency:
    """Fresh process: import surv_kernel.windows + first calls of the three
    entry points. ``cold``: empty Numba cache (compiles every kernel);
    ``warm``: cache written by an earlier process (loads machine code)."""

    params = [["cold", "warm"]]
    param_names = ["numba_cache"]
    number = 1
    repeat = (1, 3, 120.0)
    timeout = 600

    def timeraw_first_call(self, cache):
        return _FIRST_CALL, _latency_setup(cache)


# --------------------------------------------------------------------------
# standalone: side-by-side ratios in one run
# --------------------------------------------------------------------------


def _time(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, all threads)."""
    import gc
    import time

    # let the previous contender's worker threads go idle (rayon threads spin
    # for a while after a polars call) and its garbage be freed
    gc.collect()
    time.sleep(0.3)
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _compare(n, arrival, peers, rounds, shape="lognormal", stamps="ms") -> dict[str, float]:
    """Interleaved rounds of every contender on one data set; prints best and
    median and returns ``{peer: median wall / surv_kernel's median wall}``."""
    import statistics

    g, t, x = trades(n, arrival, shape, stamps)
    sizes = np.bincount(g)
    print(
        f"  largest group {sizes.max() / n:.1%} of the rows, "
        f"rows sharing a timestamp with an earlier row (any group): {n - len(np.unique(t)):,}"
    )
    warm_kernels()
    names = ["surv_kernel", *peers]
    runs = {}
    for name in names:
        try:
            runs[name] = RUNNERS[name](g, t, x)
        except ImportError as exc:
            print(f"  {name}: not installed ({exc})")
    ours = runs["surv_kernel"]()
    if "polars" in runs:
        ref = runs["polars"]()
        rel = np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300))
        print(f"  check: max relative difference vs polars {rel:.1e}")
    walls = {name: [] for name in runs}
    cpus = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved: background load hits every contender
        for name, run in runs.items():
            wall, cpu = _time(run)
            walls[name].append(wall)
            cpus[name].append(cpu)
    best_ours = min(walls["surv_kernel"])
    med_ours = statistics.median(walls["surv_kernel"])
    cpu_ours = min(cpus["surv_kernel"])
    ratios = {}
    for name in runs:
        best = min(walls[name])
        med = statistics.median(walls[name])
        cpu = min(cpus[name])
        line = f"  {name:12s} wall best {best:7.3f} s  median {med:7.3f} s  cpu best {cpu:7.3f} s"
        if name != "surv_kernel":
            line += (
                f"   ratio {name}/surv_kernel: wall best {best / best_ours:5.2f}x,"
                f" wall median {med / med_ours:5.2f}x, cpu {cpu / cpu_ours:5.2f}x"
            )
            ratios[name] = med / med_ours
        print(line)
    return ratios


def _latency(repeats) -> None:
    import subprocess
    import time

    for cache in ("cold", "warm"):
        code = (
            _latency_setup(cache)
            + textwrap.dedent(
                """
            import time as _time
            _t0 = _time.perf_counter()
            """
            )
            + _FIRST_CALL
            + "\nprint(_time.perf_counter() - _t0)\n"
        )
        inner, outer = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            outer.append(time.perf_counter() - t0)
            inner.append(float(out.stdout.strip().splitlines()[-1]))
        print(
            f"  {cache} Numba cache: import + first calls {min(inner):.3f} s best "
            f"(of {repeats}; whole process incl. interpreter, numpy and setup {min(outer):.3f} s)"
        )


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="comma-separated row counts")
    parser.add_argument("--arrivals", default="ordered,shuffled")
    parser.add_argument("--shapes", default="lognormal", help=f"comma-separated: {SHAPES}")
    parser.add_argument("--stamps", default="ms", help=f"comma-separated: {STAMPS}")
    parser.add_argument("--peers", default="polars", help="polars,duckdb,pandas")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="surv_kernel threads")
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        windows.set_num_threads(args.threads)
    print(f"surv_kernel threads: {windows.get_num_threads()}, cpus: {os.cpu_count()}")
    if not args.latency_only:
        peers = [p for p in args.peers.split(",") if p]
        for size in args.sizes.split(","):
            n = int(float(size))
            table = []
            for arrival in args.arrivals.split(","):
                for shape in args.shapes.split(","):
                    for stamps in args.stamps.split(","):
                        print(f"n={n:,} arrival={arrival} shape={shape} stamps={stamps} window=30m")
                        r = _compare(n, arrival, peers, args.rounds, shape, stamps)
                        table.append((arrival, shape, stamps, r))
            if len(table) > 1 and peers:
                print(f"n={n:,}: median wall of each peer / surv_kernel's ({args.rounds} rounds)")
                for arrival, shape, stamps, r in table:
                    cells = "  ".join(f"{k} {v:5.2f}x" for k, v in r.items())
                    print(f"  {arrival:8s} {shape:9s} {stamps:2s}  {cells}")
    if not args.no_latency:
        print("first-call latency (fresh process):")
        _latency(args.latency_repeats)


if __name__ == "__main__":
    main()
