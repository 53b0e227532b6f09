"""The alert store: one big run written, the case queue queried.

The issue's targets, on SQLite (the embedded default) on this machine:

- ``StoreWrite.time_write_run``: a run of 10,000 alerts and 1,000,000
  suppressed episodes written in one transaction (run row, desks,
  quarantine, alerts upserted, a case row and a 'created' audit entry per
  alert, run-to-alert links, every suppressed episode): <= 5 s;
- ``StoreQuery.time_list_filtered``: ``alerts list`` with filters (status,
  desk, date range, min score) at that size: <= 200 ms.

Data: seeded synthetic alerts and suppressed episodes shaped like the
model's (the Explanation's sixteen fields, a 24-hex alert id, 20 peak trades
per alert), made once in ``setup`` so only the store is timed. The write is
timed into a fresh file each time (a replay upserting the same ids is
cheaper: no new cases). PostgreSQL is not timed here: it needs a server.

Standalone (prints the figures):
    PYTHONPATH=src python asv_bench/benchmarks/store.py [--alerts 10000] [--suppressed 1000000]
    PYTHONPATH=src python asv_bench/benchmarks/store.py --url postgresql://...   (an empty database)
through asv:
    cd asv_bench && asv run --python=same --quick -b store
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np

try:
    import surv_kernel  # noqa: F401
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from surv_kernel.model.alerts import Explanation, SuppressedEpisode
from surv_kernel.store import open_store
from surv_kernel.store.records import DeskRow, RunRecord

DESKS = ["London Equities", "London Derivatives", "NY Equities", "NY Rates", "Tokyo", "Multi"]
CLASSES = ["equity", "fixed_income", "derivative", "fx"]
DAY0_NS = 1_710_374_400 * 10**9  # 2024-03-14T00:00Z


def _expl(rng_val: float) -> Explanation:
    return Explanation(
        rng_val, 6e6, 2e6, 3.0, "own", "", 3.5e7, 1.2e7, 12, 1.8e7, "MAD", 1.7, 1.9, 6.0, 4.0, 90
    )


def make_record(n_alerts: int, n_suppressed: int, seed: int = 0) -> RunRecord:
    rng = np.random.default_rng(seed)
    traders = [f"TR{i:05d}" for i in range(5000)]
    alerts = []
    for i in range(n_alerts):
        t = traders[int(rng.integers(len(traders)))]
        ac = CLASSES[i % len(CLASSES)]
        # ten trading days, so a date range filter has something to cut
        start = DAY0_NS + int(i % 10) * 86_400 * 10**9 + int(rng.integers(8 * 3600)) * 10**9
        s = float(rng.lognormal(16, 1))
        e = _expl(s)
        alerts.append(
            {
                "alert_id": hashlib.sha256(f"{seed}|{i}".encode()).hexdigest()[:24],
                "trader_id": t,
                "asset_class": ac,
                "start_ns": start,
                "end_ns": start + 1800 * 10**9,
                "peak_ns": start + 900 * 10**9,
                "peak_window_sum_usd": s,
                "trades": [f"T{i}-{k}" for k in range(20)],
                "score": float(np.round(rng.uniform(50, 100), 1)),
                "window_minutes": 30.0,
                "policy": "robust",
                "explanation": {
                    **{f: getattr(e, f) for f in e.__struct_fields__},
                    "text": "x" * 200,
                },
                "typology": "volume_burst",
                "combined_notional": s,
                "desks": [DESKS[i % len(DESKS)]],
                "desk": DESKS[i % len(DESKS)],
            }
        )
    sums = rng.lognormal(15, 1, n_suppressed)
    starts = DAY0_NS + rng.integers(0, 8 * 3600 * 10**9, n_suppressed)
    suppressed = [
        SuppressedEpisode(
            traders[i % len(traders)],
            CLASSES[i % len(CLASSES)],
            int(starts[i]),
            int(starts[i]) + 600 * 10**9,
            int(starts[i]) + 300 * 10**9,
            float(sums[i]),
            37,
            "within baseline: z=1.7 < 6, ratio 1.9 < 4",
            _expl(float(sums[i])),
        )
        for i in range(n_suppressed)
    ]
    desks = [
        DeskRow(d, "ok", None, 100_010, 100_000, 10, n_alerts // len(DESKS), 1.0) for d in DESKS
    ]
    return RunRecord(
        kind="batch",
        config={"window_minutes": 30.0},
        summary={"alerts": n_alerts},
        alerts=alerts,
        suppressed=suppressed,
        desks=desks,
        quarantine=[(d, "bad_notional", 10) for d in DESKS],
        n_trades=600_000,
        n_quarantined=10 * len(DESKS),
        first_date="2024-03-14",
        last_date="2024-03-23",
    )


FILTERS = dict(
    status=["open"], desk="NY Rates", since="2024-03-16", until="2024-03-20", min_score=80
)


class StoreWrite:
    timeout = 300
    number = 1
    repeat = 3
    params = [(1_000_000,)]
    param_names = ["suppressed"]

    def setup(self, n_suppressed):
        self.rec = make_record(10_000, n_suppressed)
        self.dir = tempfile.mkdtemp()
        self.i = 0

    def teardown(self, n_suppressed):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_write_run(self, n_suppressed):
        self.i += 1
        with open_store(f"sqlite:///{self.dir}/s{self.i}.db") as s:
            s.record_run(self.rec, who="bench")


class StoreQuery:
    timeout = 300

    def setup(self):
        self.dir = tempfile.mkdtemp()
        self.url = f"sqlite:///{self.dir}/q.db"
        with open_store(self.url) as s:
            s.record_run(make_record(10_000, 1_000_000), who="bench")
        self.store = open_store(self.url, migrate=False)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_list_filtered(self):
        self.store.list_alerts(**FILTERS)

    def time_list_open_top_100(self):
        self.store.list_alerts(status=["open"], limit=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--suppressed", type=int, default=1_000_000)
    ap.add_argument(
        "--url",
        help="an EMPTY store to time instead of a temporary SQLite file, e.g. the PostgreSQL "
        "of .ci/postgres.sh (its rows are left there)",
    )
    args = ap.parse_args()
    t = time.perf_counter()
    rec = make_record(args.alerts, args.suppressed)
    print(
        f"made {args.alerts:,} alerts, {args.suppressed:,} suppressed in {time.perf_counter() - t:.1f} s"
    )
    d = tempfile.mkdtemp()
    try:
        url = args.url or f"sqlite:///{d}/s.db"
        t, cpu = time.perf_counter(), time.process_time()
        with open_store(url) as s:
            s.record_run(rec, who="bench")
        write_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
        size = sum(os.path.getsize(p) for p in glob.glob(f"{d}/s.db*"))  # 0 for --url
        # CPU seconds beside the wall clock: on a shared machine the wall
        # clock mostly measures the other tenants (see os.getloadavg())
        print(
            f"write run (one transaction): {write_s:.2f} s wall, {cpu_s:.2f} s CPU "
            f"(target <= 5 s), load average {os.getloadavg()[0]:.1f}"
            + ("" if args.url else f"; files {size / 1e6:.0f} MB")
        )
        with open_store(url, migrate=False) as s:
            for name, kw in (
                ("filtered", FILTERS),
                ("open top 100", dict(status=["open"], limit=100)),
            ):
                times = []
                for _ in range(7):
                    t = time.perf_counter()
                    n = len(s.list_alerts(**kw))
                    times.append(time.perf_counter() - t)
                print(
                    f"alerts list {name}: {n} rows, median {sorted(times)[3] * 1000:.1f} ms (target <= 200 ms)"
                )
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
