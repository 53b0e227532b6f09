"""Backtest: the local engine vs Dask on a LocalCluster of 2 worker processes.

Data: synthetic history written once by
:func:`surv_kernel.evaluation.history.write_history` (the script behind
``python -m surv_kernel.evaluation.history ROOT --days N --traders T``):
business days of ``generate_day`` (one population of traders on six desks, a
new draw each day, injected abuse so there are alerts), one JSON feed per desk
per day, hive-style ``ROOT/date=YYYY-MM-DD/<desk>.json``. Baselines are
calibrated once on the first day and given (``--baselines``), so the figures
are detection's (read, shuffle, detect, write), not calibration's.

Each measurement is a fresh child process (so peak RSS is that run's):

- ``rows_per_s``: trades of the backtested days / wall seconds of
  :func:`~surv_kernel.pipeline.backtest.backtest` (cluster start-up and the
  workers' kernel warm-up excluded: they are paid once per backtest, not per
  day; ``startup_s`` reports them);
- ``peak_mb`` (client process) and ``worker_peak_mb`` (the largest
  ``VmHWM`` of the Dask workers, read on each worker after the run) next to
  ``worker_start_mb`` (their RSS after warm-up, before any day): a day is
  read and split on one worker and its pieces detected on both, so a
  worker's peak follows the day (the partition), not the history's length;
  measured at two history lengths to show it;
- ``read_rows_per_task_s`` / ``detect_rows_per_task_s``: rows per second of
  task time of the read-and-split tasks and of the per-partition detection
  tasks (from Dask's task stream): the per-worker throughput a paper
  estimate of a larger cluster starts from.

The Dask engine keeps ``workers + 1`` days in flight (one day reads on a
worker while another detects), so its rows/s is the cluster's, not one day's
latency.

The standalone runner interleaves the engines round by round (local, dask,
local, dask, ...) on the same history and reports the *median* of the rounds,
so a neighbour's load on this shared 2-core machine falls on both engines:

    PYTHONPATH=src python asv_bench/benchmarks/backtest.py --days 4,8 --traders 500 --rounds 3

through asv (the same child runs, one round):

    cd asv_bench && asv run --python=same --quick -b backtest
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import surv_kernel  # noqa: F401
except ImportError:  # standalone run from a checkout without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

START = dt.date(2024, 3, 1)
ENGINES = ("local", "dask")


def _vmhwm_mb() -> float:
    """Peak resident set of this process (Linux ``VmHWM``), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _vmrss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_history(root: Path, n_days: int, n_traders: int) -> Path:
    """History + baselines (calibrated on the first day) under ``root``."""
    from surv_kernel.evaluation.history import write_history
    from surv_kernel.model import DetectionConfig
    from surv_kernel.pipeline.backtest import calibrate_days

    days = write_history(root / "history", n_days + 1, start=START, n_traders=n_traders)
    calibrate_days([root / "history" / f"date={days[0]}"], DetectionConfig()).save(
        root / "baselines.json"
    )
    (root / "days.json").write_text(json.dumps([d.isoformat() for d in days]))
    return root


def child(engine_name: str, root: Path, n_days: int) -> dict[str, Any]:
    """One measured backtest of days 1..n_days (day 0 made the baselines)."""
    from surv_kernel.model import Baselines
    from surv_kernel.pipeline import LocalEngine
    from surv_kernel.pipeline.backtest import backtest

    days = [dt.date.fromisoformat(d) for d in json.loads((root / "days.json").read_text())]
    baselines = Baselines.load(root / "baselines.json")
    t0 = time.perf_counter()
    task_stream = None
    if engine_name == "dask":
        import distributed

        from surv_kernel.pipeline.distributed import DaskEngine

        engine: Any = DaskEngine(n_workers=2)
        start_mb = engine.client.run(_vmrss_mb)
        task_stream = distributed.get_task_stream(engine.client)
    else:
        from surv_kernel.legacy.desks import warm_up

        warm_up()  # the host's kernels, as DaskEngine warms its workers
        engine = LocalEngine()
        start_mb = {"local": _vmrss_mb()}
    startup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        if task_stream is not None:
            task_stream.__enter__()
        t1 = time.perf_counter()
        res = backtest(
            root / "history",
            days[1],
            days[n_days],
            out,
            engine=engine,
            baselines=baselines,
            baselines_path=str(root / "baselines.json"),
        )
        seconds = time.perf_counter() - t1
    totals = res.totals()
    row: dict[str, Any] = {
        "engine": engine_name,
        "days": n_days,
        "trades": totals["trades"],
        "alerts": totals["alerts"],
        "seconds": seconds,
        "rows_per_s": totals["trades"] / seconds,
        "startup_s": startup,
        "peak_mb": _vmhwm_mb(),
        "worker_start_mb": max(start_mb.values()),
    }
    if engine_name == "dask":
        row["worker_peak_mb"] = max(engine.client.run(_vmhwm_mb).values())
        task_stream.__exit__(None, None, None)

        def busy(name: str) -> tuple[int, float]:
            tasks = [t for t in task_stream.data if name in str(t.get("key", ""))]
            return len(tasks), sum(
                s["stop"] - s["start"]
                for t in tasks
                for s in t["startstops"]
                if s["action"] == "compute"
            )

        n_detect, detect_s = busy("detect_partition")
        _, read_s = busy("_read_and_split")
        row["detect_tasks"] = n_detect
        row["detect_rows_per_task_s"] = totals["trades"] / detect_s if detect_s else float("nan")
        row["read_rows_per_task_s"] = totals["trades"] / read_s if read_s else float("nan")
        engine.close()
    else:
        row["worker_peak_mb"] = row["peak_mb"]  # the local engine's one process
    return row


def run_child(engine_name: str, root: Path, n_days: int) -> dict[str, Any]:
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
    cmd = [sys.executable, __file__, "--child", engine_name, str(root), str(n_days)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- asv -----------------------------------------------------------------------------


class Backtest:
    """Local engine vs Dask LocalCluster (2 workers); one child run per figure."""

    params = (list(ENGINES), [4, 8])
    param_names = ["engine", "days"]
    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self) -> str:
        # asv runs setup_cache in a temporary directory it removes afterwards
        root = Path("backtest_history").resolve()
        make_history(root, 8, 500)
        return str(root)

    def setup(self, root: str, engine: str, days: int) -> None:
        self.row = run_child(engine, Path(root), days)

    def track_rows_per_second(self, root: str, engine: str, days: int) -> float:
        return self.row["rows_per_s"]

    track_rows_per_second.unit = "rows/s"

    def track_worker_peak_mb(self, root: str, engine: str, days: int) -> float:
        return self.row["worker_peak_mb"]

    track_worker_peak_mb.unit = "MB"

    def track_client_peak_mb(self, root: str, engine: str, days: int) -> float:
        return self.row["peak_mb"]

    track_client_peak_mb.unit = "MB"


# -- standalone ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--days", default="4,8", help="history lengths (days), comma-separated")
    p.add_argument("--traders", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", nargs=3, metavar=("ENGINE", "ROOT", "DAYS"))
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], Path(a.child[1]), int(a.child[2]))))
        return
    lengths = [int(x) for x in a.days.split(",")]
    with tempfile.TemporaryDirectory(prefix="surv_backtest_bench_") as tmp:
        root = make_history(Path(tmp), max(lengths), a.traders)
        rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in range(a.rounds):
            for n in lengths:
                for engine in ENGINES:  # interleaved: local, dask, local, dask, ...
                    row = run_child(engine, root, n)
                    rows.setdefault((engine, n), []).append(row)
                    print(f"round {r}: {json.dumps(row)}", file=sys.stderr, flush=True)
    keys = ("rows_per_s", "seconds", "peak_mb", "worker_start_mb", "worker_peak_mb", "startup_s")
    print(f"{'engine':7} {'days':>4} {'trades':>9} " + " ".join(f"{k:>16}" for k in keys))
    for (engine, n), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        med = {k: statistics.median(x[k] for x in rs) for k in keys}
        print(
            f"{engine:7} {n:>4} {rs[0]['trades']:>9,} "
            + " ".join(f"{med[k]:>16,.1f}" for k in keys)
        )
        if engine == "dask":
            det = statistics.median(x["detect_rows_per_task_s"] for x in rs)
            read = statistics.median(x["read_rows_per_task_s"] for x in rs)
            print(
                f"{'':7} {'':>4} per worker-second of task time (medians): read+split "
                f"{read:,.0f} rows/s, detect {det:,.0f} rows/s"
            )


if __name__ == "__main__":
    main()
