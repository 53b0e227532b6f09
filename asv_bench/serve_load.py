"""Load generator for ``surv-kernel serve``: trade-append -> alert latency.

Not an asv benchmark class (asv times functions in its own process; this
measures a second, long-running process): run it directly::

    .venv/bin/python asv_bench/serve_load.py --rate 5000 --desks 6 --seconds 60

It calibrates baselines on a synthetic hour, starts ``surv-kernel serve`` on
a temporary directory, and appends NDJSON lines to DESKS desk files at RATE
trades per second in 10 ms ticks, each trade timestamped with the wall clock
at the moment it is written. Every ~2 s one trader bursts (trades far above
its normal), which opens an alert and then updates it. The generator tails
the service's ``--out`` file and takes, for every ``open`` and ``update``
event, ``seen - alert.end_ns`` (the trade that opened or grew the alert was
appended at ``end_ns``; ``seen`` is when the event line was readable in the
output file): the trade-append -> alert-visible latency. It also reports the
service's own histogram (publish time), trades pushed vs appended (backlog),
and the service's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec
import numpy as np


def history(n_traders: int, rate: float, seconds: float, seed: int, t0: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    ts = np.sort(t0 + rng.random(n) * seconds)
    trader = rng.integers(0, n_traders, n)
    usd = np.exp(rng.normal(4.0, 0.8, n))  # ~55 USD median: see main()
    return [
        {
            "trade_id": f"H{i}",
            "asset_class": "equity",
            "notional": float(usd[i]),
            "currency": "USD",
            "trader_id": f"T{trader[i]}",
            "timestamp": float(ts[i]),
            "surveillance_required": True,
        }
        for i in range(n)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000.0, help="trades per second, all desks")
    ap.add_argument("--desks", type=int, default=6)
    ap.add_argument("--traders", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--checkpoint-every", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from surv_kernel.ingest import decode_feed
    from surv_kernel.model import DetectionConfig, calibrate

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    feeds, state, out = tmp / "feeds", tmp / "state", tmp / "events.jsonl"
    feeds.mkdir()
    # Normal trades are small (~55 USD: a trader's 30-min window stays under
    # the 3M USD equity floor even at 5k trades/s), so alerts come from the
    # bursts and the alert rate does not depend on the load; the history
    # (10 min at 500/s) gives the peers' baselines.
    hist = history(args.traders, 500.0, 600.0, 1, time.time() - 2 * 3600)
    batch, _ = decode_feed(b"\n".join(msgspec.json.encode(t) for t in hist), "H")
    calibrate(batch, DetectionConfig()).save(tmp / "baselines.json")
    for k in range(args.desks):
        (feeds / f"D{k}.ndjson").touch()
    cmd = [
        sys.executable, "-m", "surv_kernel", "serve", "--feeds", str(feeds), "--state",
        str(state), "--out", str(out), "--baselines", str(tmp / "baselines.json"),
        "--metrics-port", "0", "--lateness", "30",
        "--checkpoint-every", str(args.checkpoint_every),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=open(tmp / "stderr.txt", "wb"))  # noqa: SIM115
    while not (state / "endpoint").exists():
        if proc.poll() is not None:
            print((tmp / "stderr.txt").read_text(), file=sys.stderr)
            return 1
        time.sleep(0.05)
    url = (state / "endpoint").read_text().strip()

    rng = np.random.default_rng(2)
    files = [open(feeds / f"D{k}.ndjson", "ab", buffering=0) for k in range(args.desks)]  # noqa: SIM115
    enc = msgspec.json.Encoder()
    tick = 0.01
    per_tick = args.rate * tick
    seq = 0
    carry = 0.0
    latencies: list[float] = []
    out_pos = 0
    out_f = None
    burst_trader, burst_left = None, 0
    t_start = time.time()
    next_tick = t_start
    appended = 0
    while time.time() - t_start < args.seconds:
        carry += per_tick
        n = int(carry)
        carry -= n
        now = time.time()
        lines: list[list[bytes]] = [[] for _ in files]
        if burst_left == 0 and rng.random() < tick / 2.0:
            burst_trader, burst_left = f"T{rng.integers(0, args.traders)}", 20
        for i in range(n):
            seq += 1
            trader = f"T{rng.integers(0, args.traders)}"
            usd = float(np.exp(rng.normal(4.0, 0.8)))
            if burst_left and i == 0:
                trader, usd = burst_trader, 2.5e6
                burst_left -= 1
            desk = seq % len(files)
            rec = {
                "trade_id": f"L{seq}",
                "asset_class": "equity",
                "notional": usd,
                "currency": "USD",
                "trader_id": trader,
                "timestamp": now,
                "surveillance_required": True,
            }
            lines[desk].append(enc.encode(rec) + b"\n")
        for f, ls in zip(files, lines, strict=True):
            if ls:
                f.write(b"".join(ls))
        appended += n
        # tail the service's output
        if out_f is None and out.exists():
            out_f = open(out, "rb")  # noqa: SIM115
        if out_f is not None:
            out_f.seek(out_pos)
            data = out_f.read()
            cut = data.rfind(b"\n") + 1
            out_pos += cut
            seen = time.time()
            for line in data[:cut].splitlines():
                e = json.loads(line)
                if e["status"] in ("open", "update"):
                    latencies.append(seen - e["alert"]["end_ns"] / 1e9)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.time()))
    elapsed = time.time() - t_start
    time.sleep(2.0)  # let the service drain
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        metrics_text = r.read().decode()
    with urllib.request.urlopen(url + "/health.json", timeout=10) as r:
        health = json.loads(r.read())
    rss = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{proc.pid}/status").read_text())
    proc.terminate()
    code = proc.wait(timeout=30)
    pushed = sum(
        float(m.group(1))
        for m in re.finditer(
            r'^surv_service_trades_total\{desk="[^"]+"\} (\S+)', metrics_text, re.M
        )
    )
    lat = np.array(latencies)
    print(f"appended {appended:,} trades in {elapsed:.1f} s ({appended / elapsed:,.0f}/s) "
          f"across {args.desks} desk files; service pushed {pushed:,.0f}")  # fmt: skip
    if len(lat):
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        print(f"trade-append -> alert event visible: n={len(lat)} p50 {p50 * 1e3:.0f} ms, "
              f"p95 {p95 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {lat.max() * 1e3:.0f} ms")  # fmt: skip
    print(f"service: alert latency p50 {health['alert_latency_p50_s']} s p95 "
          f"{health['alert_latency_p95_s']} s (histogram buckets); events {health['events']}; "
          f"bytes unread at end {sum(d['bytes_behind'] for d in health['desks'].values())}")  # fmt: skip
    print(f"service: cycle p95 {health['cycle_p95_s']} s max {health['cycle_max_s']} s; "
          f"checkpoint p95 {health['checkpoint_p95_s']} s max {health['checkpoint_max_s']} s "
          f"(loop paused at most {health['checkpoint_pause_max_s']} s); "
          f"stream rows held {health['stream_rows_held']:,}")  # fmt: skip
    print(f"service peak RSS {int(rss.group(1)) / 1024:.0f} MB; SIGTERM exit {code}")
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        f.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
