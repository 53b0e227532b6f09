"""SurveillanceStream: sustained throughput, arrival-to-alert latency, memory over a day.

Data: a synthetic trading day generated batch by batch (never held whole):
5,000 traders x 3 asset classes on six desks (lognormal activity, per-book
typical half-hour volume lognormal around 30% of the static floor, so about
one book in ten crosses the floor routinely; a burst of 10x the book's level
about once per 30k trades, so there are alerts). Event time runs at the
average rate of a 10M-trade day over 8.5 hours (~327 trades/s), either
U-shaped (the open and the close at 2x the average, midday at half) or
flat; at a flat rate a 2M-trade day is a 1.7-hour day whose trailing
30-minute window holds as many trades as the 10M day's. Trades arrive up to
2 s after their timestamp, out of order (the stream's lateness allowance is
5 s). Baselines come from ``calibrate`` on a 3-hour history of the same
population (``SurveillanceStream(config, baselines)``: the exact mode).

Replay: batches are pushed as fast as the stream takes them; the input rate
of the latency figure (50k trades/s in batches of 5k, one batch every 0.1 s)
is simulated from the measured processing time of each push (a single
server queue: a batch starts when it has fully arrived and the previous one
is done), so the figures do not depend on sleeping accurately on a shared
machine:

- latency of a trade = (its batch's finish) - (its arrival), for every trade
  and for the trades that open an alert (the alert is in the update returned
  by the push that contains the trade);
- a batch waits when it has arrived before the previous push finished; the
  stream keeps up when no batch waits (every push < 0.1 s), so no backlog
  can build.

Memory: a child process replays a whole day and reports its peak RSS
(``VmHWM``: imports, JIT and the generator included), its RSS at each
quarter of the day, and the stream's peak state (held rows): flat-rate days
of 2M and 10M trades show that it does not grow with the day's length, the
U-shaped 10M day gives the realistic peak (the open).

Standalone (the figures of the closing note):
    PYTHONPATH=src python asv_bench/benchmarks/stream.py
    PYTHONPATH=src python asv_bench/benchmarks/stream.py --throughput 1000,10000,100000 \
        --latency-trades 10000000 --memory-flat 2000000,10000000 --memory-u 10000000
through asv:
    cd asv_bench && asv run --python=same --quick -b stream
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

try:
    import surv_kernel  # noqa: F401
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))
from surv_kernel.batch import Dictionaries, TradeBatch
from surv_kernel.model import Baselines, DetectionConfig, calibrate
from surv_kernel.stream import SurveillanceStream

NS = 1_000_000_000
ASSET_CLASSES = ("equity", "fixed_income", "derivative")
FLOORS = np.array([1e6, 5e6, 2e6])  # reference.ASSET_CLASS_FLOORS_USD, in ASSET_CLASSES order
#: event-time rate of a 10M-trade day over 8.5 hours
DAY_RATE = 10_000_000 / (8.5 * 3600)
U_SHAPE = 3.0  # intensity at the open/close = 1 + U_SHAPE times midday
ARRIVAL_JITTER_S = 2.0
LATENESS_NS = 5 * NS
DAY0 = 1_767_000_000 * NS


class Population:
    """Traders, desks and the books' typical volumes (seeded)."""

    def __init__(self, seed: int = 0, n_traders: int = 5000, n_desks: int = 6) -> None:
        rng = np.random.default_rng(seed)
        n_ac = len(ASSET_CLASSES)
        self.n_traders, self.n_ac = n_traders, n_ac
        self.desk_of_trader = rng.integers(0, n_desks, n_traders)
        activity = rng.lognormal(0.0, 1.0, n_traders)
        self.p_trader = activity / activity.sum()
        self.ac_cum = rng.dirichlet(np.full(n_ac, 0.7), n_traders).cumsum(axis=1)
        n_groups = n_traders * n_ac
        # typical half-hour volume per book ~ 30% of its static floor (x3)
        self.level = (
            3 * FLOORS[np.arange(n_groups) % n_ac] * rng.lognormal(np.log(0.3), 0.8, n_groups)
        )
        # expected trades per half hour per book at the day's rate
        share = self.p_trader[:, None] * np.diff(np.c_[np.zeros(n_traders), self.ac_cum], axis=1)
        per_window = np.maximum(share.ravel() * DAY_RATE * 1800, 1.0)
        self.size = self.level / per_window
        self.dictionaries = Dictionaries()
        d = self.dictionaries
        for i in range(n_traders):
            d.trader.code(f"TR{i:05d}")
        for name in ASSET_CLASSES:
            d.asset_class.code(name)
        for k in range(n_desks):
            d.desk.code(f"DESK{k}")
        d.currency.code("USD")


def _u_inverse_cdf(u: float, n_grid: int = 4097) -> tuple[np.ndarray, np.ndarray]:
    """Grid of the CDF of the density 1 + u(2x-1)^2 on [0, 1], to invert by interp."""
    x = np.linspace(0.0, 1.0, n_grid)
    cdf = (x + u * ((2 * x - 1) ** 3 + 1) / 6) / (1 + u / 3)
    return cdf, x


def iter_day(
    pop: Population,
    n_trades: int,
    batch_size: int,
    seed: int = 1,
    start: int = 0,
    stop: int | None = None,
    day0_ns: int = DAY0,
    ids: bool = True,
    u_shape: float = U_SHAPE,
) -> Iterator[TradeBatch]:
    """Trades ``start:stop`` of an ``n_trades`` day, in arrival order, as
    batches of ``batch_size``; generated on the fly (O(batch) memory).
    Trade ``j`` arrives at the quantile ``(j + U) / n`` of the day's
    intensity ``1 + u_shape (2x - 1)^2`` (0: a flat rate) and carries a
    timestamp up to ``ARRIVAL_JITTER_S`` before its arrival."""
    stop = n_trades if stop is None else stop
    day_s = n_trades / DAY_RATE
    cdf, grid = _u_inverse_cdf(u_shape)
    d = pop.dictionaries
    usd_code = d.currency.code("USD")
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        rng = np.random.default_rng((seed, lo))
        k = hi - lo
        j = np.arange(lo, hi)
        arrival = np.interp((j + rng.random(k)) / n_trades, cdf, grid) * day_s
        ts = day0_ns + ((arrival - rng.random(k) * ARRIVAL_JITTER_S) * NS).astype(np.int64)
        trader = rng.choice(pop.n_traders, size=k, p=pop.p_trader)
        ac = (rng.random(k)[:, None] > pop.ac_cum[trader, : pop.n_ac - 1]).sum(axis=1)
        group = trader * pop.n_ac + ac
        usd = pop.size[group] * rng.lognormal(0.0, 0.6, k)
        burst = rng.random(k) < 1 / 30_000
        usd[burst] += 10 * pop.level[group[burst]]
        tid = np.char.add("T", j.astype(str)).astype(object) if ids else np.full(k, "T", object)
        yield TradeBatch(
            timestamp_ns=ts,
            notional_usd=usd,
            trader=trader.astype(np.int32),
            asset_class=ac.astype(np.int32),
            desk=pop.desk_of_trader[trader].astype(np.int32),
            currency=np.full(k, usd_code, np.int32),
            trade_id=tid,
            dictionaries=d,
        )


def history_baselines(pop: Population, hours: float = 3.0, seed: int = 99) -> Baselines:
    """``calibrate`` on ``hours`` of history at the day's rate (the day before)."""
    n = int(DAY_RATE * hours * 3600)
    parts = list(
        iter_day(pop, int(DAY_RATE * 8.5 * 3600), 1_000_000, seed, 0, n, DAY0 - 86_400 * NS, False)
    )
    return calibrate(TradeBatch.concat(parts), DetectionConfig())


def new_stream(baselines: Baselines, pop: Population) -> SurveillanceStream:
    return SurveillanceStream(
        DetectionConfig(),
        baselines,
        lateness_ns=LATENESS_NS,
        dictionaries=pop.dictionaries,
        metrics=None,
    )


def warm_up_jit(baselines: Baselines, pop: Population) -> None:
    """Compile (or load) every kernel the stream uses, outside any timing."""
    s = new_stream(baselines, pop)
    for b in iter_day(pop, 2_000_000, 20_000, seed=5, stop=60_000, day0_ns=DAY0 - 3 * 86_400 * NS):
        s.push(b)
    s.flush()


# -- measurements ----------------------------------------------------------------------------


def replay(
    stream: SurveillanceStream, batches
) -> tuple[list[float], list[int], list[list[int]], int]:
    """Push every batch; per push: seconds, size, and the batch positions of
    the trades that opened an alert. Returns those and the alerts opened."""
    seconds, sizes, openers = [], [], []
    n_open = 0
    for b in batches:
        t0 = time.perf_counter()
        u = stream.push(b)
        seconds.append(time.perf_counter() - t0)
        sizes.append(len(b))
        pos = []
        if u.opened:
            # the trade that made the window breach: the opening alert's last trade
            index = {t: i for i, t in enumerate(b.trade_id.tolist())}
            for e in u.opened:
                last = [t for t in e.alert.trades if t in index]
                if last:
                    pos.append(max(index[t] for t in last))
        openers.append(pos)
        n_open += len(u.opened)
    return seconds, sizes, openers, n_open


def simulate_latency(seconds, sizes, openers, rate: float) -> dict[str, float]:
    """Arrival at ``rate`` trades/s; a batch is ready when its last trade has
    arrived; one server (Lindley recursion)."""
    finish = 0.0
    arrived = 0
    lat_all, lat_alert, wait = [], [], []
    for p, k, pos in zip(seconds, sizes, openers, strict=True):
        arrivals = (arrived + np.arange(k) + 1) / rate
        ready = arrivals[-1]
        wait.append(max(finish - ready, 0.0))  # queued behind the previous batch
        finish = max(ready, finish) + p
        lat_all.append(finish - arrivals)
        lat_alert += [finish - arrivals[i] for i in pos]
        arrived += k
    lat = np.concatenate(lat_all)
    out = {
        "p50_ms": 1e3 * float(np.percentile(lat, 50)),
        "p99_ms": 1e3 * float(np.percentile(lat, 99)),
        "max_ms": 1e3 * float(lat.max()),
        "max_push_ms": 1e3 * max(seconds),
        "p99_push_ms": 1e3 * float(np.percentile(seconds, 99)),
        "max_wait_ms": 1e3 * max(wait),
        "late_batches": int(sum(w > 0 for w in wait)),
        "interval_ms": 1e3 * sizes[0] / rate if sizes else 0.0,
        "n_batches": len(sizes),
        "n_alert_trades": len(lat_alert),
    }
    if lat_alert:
        out["alert_p50_ms"] = 1e3 * float(np.percentile(lat_alert, 50))
        out["alert_p99_ms"] = 1e3 * float(np.percentile(lat_alert, 99))
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM, which exec resets (ru_maxrss
    does not: a child reports at least the RSS of the parent that forked it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current RSS in MB (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_peak_memory(
    n_trades: int, batch_size: int, baselines_path: str, u_shape: float = U_SHAPE
) -> dict[str, Any]:
    """Run in a fresh process: replay a whole ``n_trades`` day; peak RSS
    (VmHWM), RSS at each quarter of the day, and the stream's peak state."""
    pop = Population()
    base = Baselines.load(baselines_path)
    warm_up_jit(base, pop)
    rss_ready = peak_rss_mb()
    s = new_stream(base, pop)
    peak_rows = peak_groups = 0
    alerts = 0
    quarters = []
    t0 = time.perf_counter()
    for b in iter_day(pop, n_trades, batch_size, u_shape=u_shape):
        u = s.push(b)
        alerts += len(u.opened)
        st = s.stats()
        peak_rows = max(peak_rows, st["rows_held"])
        peak_groups = max(peak_groups, st["groups"])
        if st["trades"] >= (len(quarters) + 1) * n_trades // 4:
            quarters.append(round(rss_mb()))
    alerts += len(s.flush().opened)
    wall = time.perf_counter() - t0
    return {
        "n_trades": n_trades,
        "u_shape": u_shape,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_day_mb": rss_ready,
        "rss_by_quarter_mb": quarters,
        "peak_rows_held": peak_rows,
        "peak_groups": peak_groups,
        "alerts": alerts,
        "seconds": wall,
        "trades_per_s": n_trades / wall,
    }


def peak_memory(
    n_trades: int, batch_size: int, baselines: Baselines, u_shape: float = U_SHAPE
) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "baselines.msgpack")
        baselines.save(path)
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); import stream as m; "
            "print(json.dumps(m.child_peak_memory(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], "
            "float(sys.argv[5]))))"
        )
        env = dict(os.environ)
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                os.path.dirname(os.path.abspath(__file__)),
                str(n_trades),
                str(batch_size),
                path,
                str(u_shape),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- asv -----------------------------------------------------------------------------------

_CACHE: dict[str, object] = {}


def _setup_common() -> tuple[Population, Baselines]:
    if "pop" not in _CACHE:
        pop = Population()
        base = history_baselines(pop)
        warm_up_jit(base, pop)
        _CACHE["pop"], _CACHE["base"] = pop, base
    return _CACHE["pop"], _CACHE["base"]  # type: ignore[return-value]


#: the steady-state slice: trades of a 10M day after its first window
STEADY_FROM, STEADY_TRADES = 700_000, 500_000


class StreamThroughput:
    """Pushing 500k trades into a stream already holding a full window
    (10M-trade day rate), at several batch sizes."""

    params = [1_000, 10_000, 100_000]
    param_names = ["batch_size"]
    number = 1
    repeat = 3
    timeout = 600

    def setup(self, batch_size: int) -> None:
        pop, base = _setup_common()
        self.stream = new_stream(base, pop)
        for b in iter_day(pop, 10_000_000, 50_000, stop=STEADY_FROM):
            self.stream.push(b)
        self.batches = list(
            iter_day(
                pop, 10_000_000, batch_size, start=STEADY_FROM, stop=STEADY_FROM + STEADY_TRADES
            )
        )

    def time_push_500k(self, batch_size: int) -> None:
        for b in self.batches:
            self.stream.push(b)


class StreamLatency:
    """Arrival at 50k trades/s in batches of 5k, from the open of a 10M-trade
    day: per-trade latency to its push's result (ms), simulated from the
    measured push times."""

    number = 1
    repeat = 1
    timeout = 900
    unit = "ms"

    def setup_cache(self) -> dict[str, float]:
        pop, base = _setup_common()
        s = new_stream(base, pop)
        seconds, sizes, openers, _ = replay(s, iter_day(pop, 10_000_000, 5_000, stop=1_000_000))
        return simulate_latency(seconds, sizes, openers, 50_000.0)

    def track_p50_ms(self, r: dict[str, float]) -> float:
        return r["p50_ms"]

    def track_p99_ms(self, r: dict[str, float]) -> float:
        return r["p99_ms"]

    def track_max_push_ms(self, r: dict[str, float]) -> float:
        return r["max_push_ms"]


class StreamMemory:
    """Peak RSS (MB) of a child process replaying a whole flat-rate day in
    5k batches: 2M trades (1.7 h) vs 10M (8.5 h) at the same rate."""

    params = [2_000_000, 10_000_000]
    param_names = ["n_trades"]
    number = 1
    repeat = 1
    timeout = 1800
    unit = "MB"

    def setup(self, n_trades: int) -> None:
        _, self.base = _setup_common()

    def track_peak_rss_mb(self, n_trades: int) -> float:
        return peak_memory(n_trades, 5_000, self.base, u_shape=0.0)["peak_rss_mb"]


# -- standalone ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--throughput", default="1000,10000,100000", help="batch sizes ('' to skip)")
    p.add_argument("--latency-trades", type=float, default=1e7, help="0 to skip")
    p.add_argument("--rate", type=float, default=50_000.0, help="arrival rate, trades/s")
    p.add_argument("--latency-batch", type=int, default=5_000)
    p.add_argument(
        "--memory-flat", default="2000000,10000000", help="flat-rate day sizes ('' to skip)"
    )
    p.add_argument("--memory-u", default="10000000", help="U-shaped day sizes ('' to skip)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    pop = Population()
    base = history_baselines(pop)
    warm_up_jit(base, pop)
    print(f"setup (population, 3h history calibrate, JIT): {time.perf_counter() - t0:.1f} s")

    if args.throughput:
        print(
            f"\nthroughput: {STEADY_TRADES:,} trades of a 10M day pushed after its first "
            f"{STEADY_FROM:,} (the open: all still held)"
        )
        for bs in (int(x) for x in args.throughput.split(",")):
            s = new_stream(base, pop)
            for b in iter_day(pop, 10_000_000, 50_000, stop=STEADY_FROM):
                s.push(b)
            held = s.stats()["rows_held"]
            batches = list(
                iter_day(pop, 10_000_000, bs, start=STEADY_FROM, stop=STEADY_FROM + STEADY_TRADES)
            )
            tp = time.perf_counter()
            cpu = time.process_time()
            for b in batches:
                s.push(b)
            wall = time.perf_counter() - tp
            cpu = time.process_time() - cpu
            print(
                f"  batch {bs:>7,}: {STEADY_TRADES / wall:>10,.0f} trades/s  "
                f"({1e3 * wall / len(batches):7.2f} ms/push, CPU/wall {cpu / wall:.2f}, "
                f"rows held at start {held:,})"
            )

    if args.latency_trades:
        n = int(args.latency_trades)
        s = new_stream(base, pop)
        seconds, sizes, openers, n_open = replay(
            s, iter_day(pop, 10_000_000, args.latency_batch, stop=n)
        )
        r = simulate_latency(seconds, sizes, openers, args.rate)
        print(
            f"\nlatency: {'the whole' if n >= 10_000_000 else f'the first {n:,} trades of a'} "
            f"10M-trade day, arriving at "
            f"{args.rate:,.0f}/s in batches of {args.latency_batch:,} "
            f"(one every {args.latency_batch / args.rate:.2f} s)"
        )
        print(
            f"  every trade: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
        )
        if "alert_p99_ms" in r:
            print(
                f"  alert-opening trades ({r['n_alert_trades']}): p50 {r['alert_p50_ms']:.0f} ms, "
                f"p99 {r['alert_p99_ms']:.0f} ms ({n_open} alerts opened)"
            )
        print(
            f"  push time p99 {r['p99_push_ms']:.1f} ms, max {r['max_push_ms']:.1f} ms "
            f"(interval {r['interval_ms']:.0f} ms); batches that had to wait for the previous "
            f"one: {r['late_batches']} of {r['n_batches']}, longest wait {r['max_wait_ms']:.1f} ms"
        )

    runs = [(x, 0.0) for x in args.memory_flat.split(",") if x] + [
        (x, U_SHAPE) for x in args.memory_u.split(",") if x
    ]
    if runs:
        print(
            f"\nmemory: a whole day replayed in batches of 5,000 in a child process "
            f"({DAY_RATE:.0f} trades/s of event time on average)"
        )
        for x, u in runs:
            n = int(float(x))
            r = peak_memory(n, 5_000, base, u)
            shape = "flat rate" if u == 0 else f"U-shaped (open {3 * (1 + u) / (3 + u):.1f}x avg)"
            print(
                f"  {n:>11,} trades ({n / DAY_RATE / 3600:.1f} h, {shape}): peak RSS "
                f"{r['peak_rss_mb']:.0f} MB (before the day {r['rss_before_day_mb']:.0f} MB; RSS at "
                f"each quarter {r['rss_by_quarter_mb']} MB), peak rows held "
                f"{r['peak_rows_held']:,}, {r['alerts']} alerts, {r['trades_per_s']:,.0f} trades/s"
            )


if __name__ == "__main__":
    main()
