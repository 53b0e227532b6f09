"""Peak memory of ``surv-kernel run`` against the day's size: ``--memory day``
(every desk in one in-memory day) vs ``--memory bounded`` (spilled to disk,
detected in slices; see ``surv_kernel.pipeline.bounded``).

A day is the scenario generator's six-desk day (``generate_day(0,
n_traders=N, n_episodes=48)``, ~185 trades per trader) written to disk as one
NDJSON feed per desk. Each figure is one fresh ``python -m surv_kernel run DAY
--out OUT`` process that reads its own ``VmHWM`` from ``/proc/self/status`` at
exit (imports and JIT included; a forked child's ``ru_maxrss`` would inherit
its parent's peak, so it is not used). Rounds interleave the two modes; the
runner prints medians and checks that every round's ``alerts.jsonl`` is the
same bytes.

Standalone (writes the days under DIR, reuses them when present):
    PYTHONPATH=src:python python asv_bench/benchmarks/run_memory.py --dir /tmp/days \\
        --traders 4000,10600,26500,53000 --rounds 3
through asv (a 0.75M-trade day; the larger ones take minutes each):
    cd asv_bench && asv run --python=same --quick -b run_memory
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import numpy as np

# runs `surv-kernel ARGS` in this process and writes "VmHWM_MB seconds" to PEAK_OUT at exit
_CHILD = """
import atexit, os, runpy, sys, time
t0 = time.perf_counter()
def report():
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_OUT"], "w") as out:
        out.write(f"{hwm / 1024:.1f} {time.perf_counter() - t0:.3f}\\n")
atexit.register(report)
sys.argv = ["surv-kernel", *sys.argv[1:]]
runpy.run_module("surv_kernel", run_name="__main__")
"""

MODES = ("day", "bounded")


def write_day(out: Path, n_traders: int, seed: int = 0) -> int:
    """The scenario day as one NDJSON file per desk under ``out``; its trades."""
    from surv_kernel.cli.demo import slug
    from surv_kernel.evaluation.scenario import generate_day

    sc = generate_day(seed, n_traders=n_traders, n_episodes=48)
    out.mkdir(parents=True, exist_ok=True)
    enc = msgspec.json.Encoder()
    seconds = sc.timestamp_ns / 1e9
    for name in dict.fromkeys(sc.desk.tolist()):
        rows = np.flatnonzero(sc.desk == name)
        with open(out / f"{slug(name)}.ndjson", "wb") as f:
            for s in range(0, len(rows), 100_000):  # bounded generator-side memory per write
                r = rows[s : s + 100_000]
                cols = zip(
                    sc.trade_id[r].tolist(),
                    sc.asset_class[r].tolist(),
                    sc.notional[r].tolist(),
                    sc.currency[r].tolist(),
                    sc.trader_id[r].tolist(),
                    seconds[r].tolist(),
                    sc.surveillance_required[r].tolist(),
                    strict=True,
                )
                keys = (
                    "trade_id",
                    "asset_class",
                    "notional",
                    "currency",
                    "trader_id",
                    "timestamp",
                    "surveillance_required",
                )
                f.write(enc.encode_lines([dict(zip(keys, c, strict=True)) for c in cols]))
    return len(sc)


def measure(day: Path, mode: str) -> tuple[float, float, bytes]:
    """(VmHWM MB, seconds, alerts.jsonl bytes) of one fresh run process."""
    with tempfile.TemporaryDirectory() as tmp:
        out, peak = Path(tmp) / "out", Path(tmp) / "peak"
        cmd = [sys.executable, "-c", _CHILD, "run", str(day), "--out", str(out)]
        cmd += ["--progress", "never", "--memory", mode]
        env = {**os.environ, "PEAK_OUT": str(peak)}
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if p.returncode not in (0, 4):  # 4: a desk partial is still a measured run
            raise RuntimeError(f"run failed ({p.returncode}): {p.stderr[-2000:]}")
        mb, seconds = map(float, peak.read_text().split())
        return mb, seconds, (out / "alerts.jsonl").read_bytes()


class RunPeakMemory:
    """``track_*``: VmHWM (MB) of one fresh ``surv-kernel run`` per mode."""

    params = (["day", "bounded"],)
    param_names = ["memory"]
    timeout = 600
    unit = "MB"

    def setup_cache(self) -> str:
        d = Path(tempfile.mkdtemp(prefix="surv-run-memory-")) / "d4000"
        write_day(d, 4000)
        return str(d)

    def track_peak_vmhwm_mb(self, day: str, mode: str) -> float:
        return measure(Path(day), mode)[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "surv-run-memory"))
    ap.add_argument("--traders", default="4000,10600", help="comma-separated day sizes")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    for n_traders in [int(x) for x in args.traders.split(",")]:
        day = Path(args.dir) / f"d{n_traders}"
        if not day.exists():
            write_day(day, n_traders)
        n = sum(p.read_bytes().count(b"\n") for p in day.iterdir())  # NDJSON: one per line
        got: dict[str, list[tuple[float, float, bytes]]] = {m: [] for m in MODES}
        for _ in range(args.rounds):  # interleaved: day, bounded, day, bounded, ...
            for mode in MODES:
                got[mode].append(measure(day, mode))
        first = got["day"][0][2]
        same = all(r[2] == first for rs in got.values() for r in rs)
        parts = [f"{n:>11,} trades ({n_traders:,} traders), alerts identical: {same}"]
        for mode, rs in got.items():
            mb = [r[0] for r in rs]
            s = [r[1] for r in rs]
            parts.append(
                f"{mode}: VmHWM median {statistics.median(mb):,.0f} MB "
                f"[{min(mb):,.0f}-{max(mb):,.0f}], {statistics.median(s):.1f} s"
            )
        print(" | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
