"""Frames in: Parquet, Arrow, polars and CSV -> TradeBatch, against the JSON path.

Data: ``ingest.make_trades`` (the ingest benchmark's synthetic day), as the
compact JSON array ``decode_feed`` reads, an Arrow table, a polars frame, a
CSV file and a Parquet file of ``row_group`` rows per row group.

Timed in one process, on the same trades: ``decode_feed`` (bytes -> batch),
``iter_parquet`` over the file (decode every row group, validate, concat),
``read_frame`` of the Arrow table and of the polars frame (validation only:
the data is already columnar), ``iter_csv`` of the CSV file.

Memory: ``VmHWM`` (peak RSS) of a fresh child process streaming a
multi-row-group Parquet file with ``iter_parquet`` (each chunk dropped
after use), next to the same process after imports and warm-up only, the
file's size and one row group's decoded Arrow size.

Standalone:
    PYTHONPATH=src:python python asv_bench/benchmarks/frames.py --n 1e6 --rounds 5
    PYTHONPATH=src:python python asv_bench/benchmarks/frames.py --only rss --stream-n 4e6
through asv:
    cd asv_bench && asv run --python=same --quick -b frames
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

import surv_kernel
from surv_kernel import Dictionaries, TradeBatch, decode_feed, detect, detect_frame
from surv_kernel.frames import iter_csv, iter_parquet, read_frame

try:
    from .ingest import make_trades, warm
except ImportError:  # run as a script
    from ingest import make_trades, warm  # type: ignore[no-redef]

SRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(surv_kernel.__file__)))
ROW_GROUP = 128 * 1024


def make_table(n: int, seed: int = 0, first: int = 0) -> pa.Table:
    return pa.Table.from_pylist(make_trades(n, seed, first))


def _concat(chunks) -> int:  # type: ignore[no-untyped-def]
    batches = [b for b, _ in chunks if len(b)]
    return len(TradeBatch.concat(batches))


def warm_frames(tmp: str) -> None:
    warm()
    table = make_table(50)
    path = os.path.join(tmp, "warm.parquet")
    pq.write_table(table, path, row_group_size=20)
    _concat(iter_parquet(path))
    read_frame(table)


# ---------------------------------------------------------------------------
# asv
# ---------------------------------------------------------------------------
class FramesToColumns:
    params = [[1_000_000]]
    param_names = ["n"]
    timeout = 600

    def setup(self, n):
        self.tmp = tempfile.TemporaryDirectory()
        warm_frames(self.tmp.name)
        trades = make_trades(n)
        self.feed = msgspec.json.encode(trades)
        self.table = pa.Table.from_pylist(trades)
        self.parquet = os.path.join(self.tmp.name, "feed.parquet")
        pq.write_table(self.table, self.parquet, row_group_size=ROW_GROUP)
        self.csv = os.path.join(self.tmp.name, "feed.csv")
        pacsv.write_csv(self.table, self.csv)
        import polars as pl

        self.polars = pl.from_arrow(self.table)

    def teardown(self, n):
        self.tmp.cleanup()

    def time_decode_feed_json(self, n):
        decode_feed(self.feed)

    def time_iter_parquet(self, n):
        _concat(iter_parquet(self.parquet, dictionaries=Dictionaries()))

    def time_read_arrow_table(self, n):
        read_frame(self.table)

    def time_read_polars(self, n):
        read_frame(self.polars)

    def time_iter_csv(self, n):
        _concat(iter_csv(self.csv, dictionaries=Dictionaries()))


class DetectFrame:
    """The issue's yardstick: a polars frame -> alerts frame in one call
    against ``detect`` on the same trades already in a TradeBatch."""

    params = [[1_000_000]]
    param_names = ["n"]
    timeout = 600

    def setup(self, n):
        import polars as pl

        with tempfile.TemporaryDirectory() as tmp:
            warm_frames(tmp)
        self.polars = pl.from_arrow(make_table(n))
        self.batch, _ = read_frame(self.polars)
        detect(self.batch)

    def time_detect_batch(self, n):
        detect(self.batch)

    def time_detect_frame_polars(self, n):
        detect_frame(self.polars)


# ---------------------------------------------------------------------------
# standalone: side by side, and the memory of a fresh process
# ---------------------------------------------------------------------------
def _best(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def compare_speed(n: int, rounds: int) -> None:
    bench = FramesToColumns()
    bench.setup(n)
    try:
        cases = {
            "decode_feed (JSON bytes)": lambda: bench.time_decode_feed_json(n),
            "iter_parquet (file, row groups)": lambda: bench.time_iter_parquet(n),
            "read_frame (Arrow table)": lambda: bench.time_read_arrow_table(n),
            "read_frame (polars)": lambda: bench.time_read_polars(n),
            "iter_csv (file)": lambda: bench.time_iter_csv(n),
        }
        times = {k: _best(fn, rounds) for k, fn in cases.items()}
    finally:
        bench.teardown(n)
    frames = DetectFrame()
    frames.setup(n)
    t_batch = _best(lambda: frames.time_detect_batch(n), rounds)
    t_frame = _best(lambda: frames.time_detect_frame_polars(n), rounds)
    json_t = times["decode_feed (JSON bytes)"]
    print(f"\n{n:,} trades -> TradeBatch, best of {rounds}:")
    for label, t in times.items():
        print(f"  {label:34s} {t:7.3f} s  {n / t / 1e6:6.2f} M rows/s  {json_t / t:5.2f}x JSON")
    print(
        f"  detect(TradeBatch) {t_batch:.3f} s; detect_frame(polars) {t_frame:.3f} s "
        f"= {t_frame / t_batch:.2f}x"
    )


_CHILD = r"""
import sys
sys.path.insert(0, {src!r})
import os, tempfile, time
from surv_kernel.frames import iter_parquet
sys.path.insert(0, {bench!r})
from frames import warm_frames


def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

mode, path = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as tmp:
    warm_frames(tmp)
base = hwm()
n = q = 0
t = time.perf_counter()
import pyarrow as pa
from surv_kernel import Dictionaries
d = Dictionaries()
if mode == "iter_parquet":
    for batch, quarantine in iter_parquet(path, dictionaries=d):
        n += len(batch)
        q += quarantine.total
        del batch, quarantine
ids = d.trade_ids.nbytes if d.trade_ids is not None else 0
print(n, q, time.perf_counter() - t, base / 1024, hwm() / 1024, ids / 2**20,
      pa.default_memory_pool().max_memory() / 2**20, pa.default_memory_pool().backend_name)
"""


def child_peak(mode: str, path: str) -> tuple[Any, ...]:
    """(trades, quarantined, seconds, MB after warm-up, peak MB, MB of the run's
    trade-id set, Arrow pool's peak MB, Arrow pool) in a fresh process."""
    code = _CHILD.format(src=SRC_DIR, bench=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code, mode, path], check=True, capture_output=True, text=True
    ).stdout.split()
    return (int(out[0]), int(out[1]), *map(float, out[2:7]), out[7])


def compare_rss(n: int, row_group: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "history.parquet")
        block = 500_000
        writer = None
        group_bytes = 0
        for start in range(0, n, block):
            table = make_table(min(block, n - start), seed=start, first=start)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
                group_bytes = table.slice(0, row_group).nbytes
            writer.write_table(table, row_group_size=row_group)
        assert writer is not None
        writer.close()
        meta = pq.ParquetFile(path).metadata
        size = os.path.getsize(path)
        print(
            f"\nParquet file: {n:,} trades, {meta.num_row_groups} row groups of {row_group:,} "
            f"rows, {size / 1e6:.0f} MB on disk; one row group decoded (Arrow) "
            f"{group_bytes / 1e6:.1f} MB"
        )
        trades, quarantined, seconds, base, peak, ids, pool, backend = child_peak(
            "iter_parquet", path
        )
        # the run's trade-id set grows with the trades read (it is how a
        # duplicate in the last row group is caught), so it is detection
        # state, not reading; what remains is what follows the row group
        reading = peak - base - ids
        print(
            f"  iter_parquet in a fresh process: {seconds:.2f} s ({trades:,} trades, "
            f"{quarantined} quarantined); VmHWM {base:.0f} MB after imports + warm-up, "
            f"{peak:.0f} MB peak; the run's trade-id set {ids:.0f} MB; the rest "
            f"+{reading:.0f} MB = {reading * 2**20 / group_bytes:.1f}x one decoded row group, "
            f"{reading * 2**20 / size:.2f}x the file (Arrow {backend} pool peak {pool:.0f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream-n", type=float, default=4e6)
    parser.add_argument("--row-group", type=int, default=ROW_GROUP)
    parser.add_argument("--only", choices=("speed", "rss"))
    args = parser.parse_args()
    if args.only in (None, "speed"):
        compare_speed(int(args.n), args.rounds)
    if args.only in (None, "rss"):
        compare_rss(int(args.stream_n), args.row_group)


if __name__ == "__main__":
    main()
