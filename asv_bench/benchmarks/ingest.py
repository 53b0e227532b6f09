"""Ingest: feed bytes -> columns, against plain msgspec and the stdlib on the same bytes.

Data: a seeded synthetic desk feed of ``n`` trades in the feed schema (the
fields the desks' ``_api_call`` returns), as one JSON array: ~600 traders,
three asset classes, four currencies, lognormal notionals with cents, float
epoch-second timestamps with microseconds, ids like ``"EQ-NY-000123456"``.
``style="compact"`` is msgspec's encoding (no spaces); ``"spaced"`` is
``json.dumps``'s (``", "``, ``": "``), as the received ``_api_call`` writes.

What is timed (all on the same bytes, in one process):

* ``decode_feed``: bytes -> validated TradeBatch (int64 ns, float64 USD, int32
  codes, trade-id objects) + Quarantine; the issue's "bytes -> columns";
* ``msgspec_structs``: ``msgspec.json.Decoder(list[Plain]).decode`` into a
  plain ``msgspec.Struct`` of the schema - the baseline of the target
  ("bytes -> columns at >= 0.8x the rate of plain msgspec into Structs");
* ``msgspec_trade_structs``: the same into ``surv_kernel.schema.Trade``
  (``gc=False``), what ingest's fallback path decodes into;
* ``json_loads``: ``json.loads`` into dicts (what the received pipeline did).

Legacy dicts: ``columns_from_dicts`` on 1M trade dicts in shuffled order (the
objects scattered over the heap, as after real processing) against a naive
per-field list comprehension into NumPy columns (no validation at all).

Memory: peak RSS (``VmHWM`` of a fresh child process: imports, JIT and all;
not ``ru_maxrss``, which Linux carries over from the parent through fork and
exec) of streaming a 2M-trade feed file with ``iter_feed`` (decode, pack,
discard each chunk) vs reading it whole and ``decode_feed`` vs the received
``json.loads`` of the whole file. asv's ``peakmem_*`` below measure the same
calls inside the asv benchmark process.

Standalone, side by side in one run (prints the ratios):
    PYTHONPATH=src:python python asv_bench/benchmarks/ingest.py
    PYTHONPATH=src:python python asv_bench/benchmarks/ingest.py --n 1e6 --rounds 7 --style spaced
    PYTHONPATH=src:python python asv_bench/benchmarks/ingest.py --only rss --stream-n 2e6
through asv:
    cd asv_bench && asv run --python=same --quick -b ingest
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import msgspec
import numpy as np

try:
    import surv_kernel
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "src"))
    import surv_kernel
from surv_kernel import columns_from_dicts, decode_feed, iter_feed
from surv_kernel.schema import Trade

SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(surv_kernel.__file__)))
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Plain(msgspec.Struct):
    """The feed schema as a default msgspec Struct: the baseline."""

    trade_id: str
    asset_class: str
    notional: float
    currency: str
    trader_id: str
    timestamp: float
    surveillance_required: bool


def make_trades(n: int, seed: int = 0, first: int = 0) -> list[dict]:
    """``n`` trade dicts of one synthetic day (see the module docstring); ids
    are numbered from ``first``."""
    rng = np.random.default_rng(seed)
    desks = ["EQ-NY", "EQ-LN", "FI-NY", "FI-LN", "DV-NY", "DV-TK"]
    traders = [f"TR{i:04d}" for i in range(600)]
    assets = ["equity", "fixed_income", "derivative"]
    currencies = ["USD", "EUR", "GBP", "JPY"]
    ts = np.round(np.sort(T0 + 34_200 + rng.uniform(0, 23_400, n)), 6)
    notional = np.round(rng.lognormal(11.0, 1.6, n), 2)
    trader = rng.integers(0, len(traders), n)
    asset = rng.integers(0, 3, n)
    currency = rng.choice(4, n, p=[0.6, 0.2, 0.1, 0.1])
    flag = rng.random(n) < 0.3
    desk = rng.integers(0, len(desks), n)
    return [
        {
            "trade_id": f"{desks[desk[i]]}-{first + i:09d}",
            "asset_class": assets[asset[i]],
            "notional": float(notional[i]),
            "currency": currencies[currency[i]],
            "trader_id": traders[trader[i]],
            "timestamp": float(ts[i]),
            "surveillance_required": bool(flag[i]),
        }
        for i in range(n)
    ]


def make_feed(n: int, style: str = "compact", seed: int = 0, first: int = 0) -> bytes:
    trades = make_trades(n, seed, first)
    if style == "spaced":
        return json.dumps(trades).encode()
    return msgspec.json.encode(trades)


def write_feed(path: str, n: int, style: str = "compact", block: int = 250_000) -> None:
    """A JSON array of ``n`` trades written in blocks (bounded memory)."""
    with open(path, "wb") as f:
        f.write(b"[")
        for start in range(0, n, block):
            body = make_feed(min(block, n - start), style, seed=start, first=start)[1:-1]
            if start:
                f.write(b",")
            f.write(body)
        f.write(b"]")


def warm() -> None:
    """Compile (or load from cache) every kernel ingest uses."""
    small = make_feed(50)
    decode_feed(small)
    decode_feed(small.replace(b'"TR0', b'"T\\u0052'))  # the msgspec path too
    list(iter_feed(small, chunk_size=100))
    columns_from_dicts(make_trades(20))


# ---------------------------------------------------------------------------
# asv
# ---------------------------------------------------------------------------
_FEEDS: dict[tuple[int, str], bytes] = {}


def _feed(n: int, style: str) -> bytes:
    if (n, style) not in _FEEDS:
        _FEEDS[(n, style)] = make_feed(n, style)
    return _FEEDS[(n, style)]


class FeedBytesToColumns:
    """Same bytes, four decoders (1M trades as in the issue)."""

    params = ([100_000, 1_000_000], ["compact", "spaced"])
    param_names = ["n", "style"]
    timeout = 300

    def setup(self, n, style):
        warm()
        self.feed = _feed(n, style)
        self.plain = msgspec.json.Decoder(list[Plain])
        self.trade = msgspec.json.Decoder(list[Trade])
        decode_feed(self.feed)  # first-touch page faults out of the timing

    def time_decode_feed(self, n, style):
        decode_feed(self.feed)

    def time_msgspec_structs(self, n, style):
        self.plain.decode(self.feed)

    def time_msgspec_trade_structs(self, n, style):
        self.trade.decode(self.feed)

    def time_json_loads(self, n, style):
        json.loads(self.feed)


class DictsToColumns:
    """The legacy ``detect_anomalies`` input: trade dicts, shuffled in memory."""

    params = [1_000_000]
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        warm()
        self.trades = make_trades(n)
        random.Random(0).shuffle(self.trades)

    def time_columns_from_dicts(self, n):
        columns_from_dicts(self.trades)

    def time_naive_comprehensions(self, n):
        naive_columns(self.trades)


def naive_columns(trades: list[dict]) -> tuple[np.ndarray, ...]:
    """The obvious per-trade Python: one comprehension per column, dict
    interning, no validation, no FX, no duplicates."""
    traders: dict[str, int] = {}
    assets: dict[str, int] = {}
    return (
        (np.array([t["timestamp"] for t in trades]) * 1e9).astype(np.int64),
        np.array([t["notional"] for t in trades]),
        np.array([traders.setdefault(t["trader_id"], len(traders)) for t in trades], np.int32),
        np.array([assets.setdefault(t["asset_class"], len(assets)) for t in trades], np.int32),
        np.array([t["trade_id"] for t in trades], dtype=object),
    )


class StreamMemory:
    """Peak memory of a 2M-trade feed file: streamed vs whole (asv process)."""

    params = [2_000_000]
    param_names = ["n"]
    timeout = 600

    def setup_cache(self):
        path = os.path.join(tempfile.gettempdir(), "surv_kernel_ingest_2m.json")
        if not os.path.exists(path):
            write_feed(path, 2_000_000)
        return path

    def setup(self, path, n):
        warm()

    def peakmem_iter_feed(self, path, n):
        for _batch, _q in iter_feed(path):
            pass

    def peakmem_decode_feed_whole(self, path, n):
        with open(path, "rb") as f:
            decode_feed(f.read())

    def peakmem_json_loads_whole(self, path, n):
        with open(path, "rb") as f:
            json.loads(f.read())


# ---------------------------------------------------------------------------
# standalone
# ---------------------------------------------------------------------------
def _time(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. Other processes on a shared machine
    stretch the wall time; the CPU time of single-threaded code much less."""
    gc.collect()
    c = time.process_time()
    t = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t, time.process_time() - c
    del result
    return elapsed


def _report(times: dict[str, list[tuple[float, float]]], n: int | None = None) -> None:
    for name, ts in times.items():
        wall = [w for w, _ in ts]
        cpu = [c for _, c in ts]
        rate = f"  {n / min(wall) / 1e6:5.2f} M trades/s" if n else ""
        print(
            f"  {name:38s} wall best {min(wall):6.3f} s median {np.median(wall):6.3f} s | "
            f"cpu best {min(cpu):6.3f} s{rate}"
        )


def compare_bytes(n: int, style: str, rounds: int) -> None:
    feed = make_feed(n, style)
    plain = msgspec.json.Decoder(list[Plain])
    trade = msgspec.json.Decoder(list[Trade])
    runners = {
        "decode_feed (bytes -> columns)": lambda: decode_feed(feed),
        "msgspec -> Plain Structs": lambda: plain.decode(feed),
        "msgspec -> schema.Trade (gc=False)": lambda: trade.decode(feed),
    }
    for fn in runners.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for _ in range(rounds):  # interleaved rounds: load on the machine hits all alike
        for name, fn in runners.items():
            times[name].append(_time(fn))
    times["json.loads -> dicts"] = [_time(lambda: json.loads(feed))]
    print(f"\nbytes -> columns: {n:,} trades, {len(feed) / 1e6:.0f} MB ({style}), {rounds} rounds")
    _report(times, n)
    ours = times["decode_feed (bytes -> columns)"]
    for base in (
        "msgspec -> Plain Structs",
        "msgspec -> schema.Trade (gc=False)",
        "json.loads -> dicts",
    ):
        ratios = [min(t[k] for t in times[base]) / min(t[k] for t in ours) for k in (0, 1)]
        print(
            f"  rate of decode_feed / rate of {base:36s} = {ratios[0]:5.2f}x (wall, best)"
            f"  {ratios[1]:5.2f}x (cpu, best)"
        )


def compare_dicts(n: int, rounds: int) -> None:
    trades = make_trades(n)
    random.Random(0).shuffle(trades)
    runners = {
        "columns_from_dicts": lambda: columns_from_dicts(trades),
        "naive comprehensions": lambda: naive_columns(trades),
    }
    for fn in runners.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            times[name].append(_time(fn))
    print(f"\nlegacy dicts -> columns: {n:,} shuffled dicts, {rounds} rounds")
    print("  (columns_from_dicts parses on a second thread: its cpu time counts both)")
    _report(times)


_CHILD = """
import sys, time
sys.path.insert(0, {src!r})
mode, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
from surv_kernel import decode_feed, iter_feed
import json
t = time.perf_counter()
if mode == "iter_feed":
    n = q = 0
    for batch, quarantine in iter_feed(path, chunk_size=chunk):
        n += len(batch); q += quarantine.total
elif mode == "decode_feed":
    with open(path, "rb") as f:
        batch, quarantine = decode_feed(f.read())
    n, q = len(batch), quarantine.total
elif mode == "json.loads":
    with open(path, "rb") as f:
        n, q = len(json.loads(f.read())), 0
else:
    n = q = 0  # imports only
# VmHWM: the peak RSS of this address space. (ru_maxrss would not do: Linux
# carries it across exec, so a child reports its parent's peak at fork.)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(n, q, time.perf_counter() - t, hwm / 1024)
"""


def child_peak_rss(mode: str, path: str, chunk: int = 8 << 20) -> tuple[int, int, float, float]:
    """(trades, quarantined, seconds, peak RSS MB) of ``mode`` in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(src=SRC_DIR), mode, path, str(chunk)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1]), float(out[2]), float(out[3])


def compare_rss(n: int, chunks: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "feed.json")
        write_feed(path, n)
        size = os.path.getsize(path)
        print(f"\npeak RSS of a fresh process, {n:,}-trade feed file ({size / 1e6:.0f} MB):")
        rows = [("imports only (baseline)", "imports", 0)]
        rows += [(f"iter_feed, chunk_size={c >> 10} KiB", "iter_feed", c) for c in chunks]
        rows += [
            ("read whole + decode_feed", "decode_feed", 0),
            ("read whole + json.loads (received)", "json.loads", 0),
        ]
        for label, mode, chunk in rows:
            trades, quarantined, seconds, rss = child_peak_rss(mode, path, chunk or 8 << 20)
            print(
                f"  {label:40s} {rss:8.1f} MB  {seconds:6.2f} s  ({trades:,} trades, {quarantined} quarantined)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--style", choices=["compact", "spaced"], default="compact")
    parser.add_argument("--stream-n", type=float, default=2e6)
    parser.add_argument("--chunks", default="1024,8192", help="iter_feed chunk sizes in KiB")
    parser.add_argument("--only", choices=["bytes", "dicts", "rss"])
    args = parser.parse_args()
    warm()
    if args.only in (None, "bytes"):
        compare_bytes(int(args.n), args.style, args.rounds)
    if args.only in (None, "dicts"):
        compare_dicts(int(args.n), args.rounds)
    if args.only in (None, "rss"):
        compare_rss(int(args.stream_n), [int(c) << 10 for c in args.chunks.split(",")])


if __name__ == "__main__":
    main()
