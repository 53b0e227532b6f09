"""Golden outputs: hashes of everything the pipeline produces on fixed days.

A behaviour-preserving change (a refactor, a faster kernel) must leave every
hash here unchanged; a change that means to alter outputs updates
``golden_hashes.json`` in the same commit and says why. What is hashed, each
as canonical msgspec JSON:

- ``scenario/<mix>/<seed>``: ``detect`` on the package's labelled day (6 seeds
  x every trader mix): alerts, suppressed episodes, counts; plus ``detect``
  with baselines calibrated on another day of the same desks;
- ``alt/<seed>``: ``detect`` on the independent generator's day (with desks);
- ``stream/<seed>``: every event (status, id, alert), suppressed episode and
  quarantine record of ``SurveillanceStream`` pushed the day in batches;
- ``ingest/<seed>``: columns and quarantine of a corrupted feed decoded
  whole and streamed at three chunk sizes (all must agree, then hashed);
- ``legacy/<seed>``: ``detect_anomalies`` on the day's dicts;
- ``cli/<seed>``: ``surv-kernel run`` outputs (alerts, suppressed,
  quarantine, the summary without timings).

Run ``PYTHONPATH=src:python:tests python tests/golden.py`` to compare (exit 1
on any difference), ``--write`` to record. ``tests/test_golden.py`` runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np

HERE = Path(__file__).resolve().parent
HASHES = HERE / "golden_hashes.json"
SEEDS = range(6)


def _h(obj) -> str:
    return hashlib.sha256(msgspec.json.encode(obj, enc_hook=_enc)).hexdigest()[:20]


def _enc(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)


def _detection(det) -> dict:
    return {
        "alerts": msgspec.to_builtins(det.alerts),
        "suppressed": msgspec.to_builtins(det.suppressed),
        "n_trades": det.n_trades,
        "n_floor_episodes": det.n_floor_episodes,
    }


def _batch(b) -> dict:
    d = b.dictionaries
    return {
        "ts": b.timestamp_ns,
        "usd": b.notional_usd,
        "notional": b.notional,
        "trader": d.trader.decode(b.trader),
        "asset_class": d.asset_class.decode(b.asset_class),
        "currency": d.currency.decode(b.currency),
        "desk": d.desk.decode(b.desk),
        "flag": b.surveillance_required,
        "ids": b.trade_id.tolist(),
    }


def scenario_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from surv_kernel.evaluation.scenario import MIXES, generate_day
    from surv_kernel.model import calibrate, detect

    for mix, weights in MIXES.items():
        for seed in SEEDS:

            def run(seed=seed, weights=weights):
                day = generate_day(seed, trader_mix=weights)
                hist = generate_day(
                    seed + 1000, trader_mix=weights, population_seed=seed, date="2024-03-13"
                )
                same = generate_day(seed, trader_mix=weights)
                base = calibrate(hist.batch)
                return {
                    "day": _detection(detect(day.batch)),
                    "calibrated": _detection(detect(same.batch, baselines=base)),
                }

            yield f"scenario/{mix}/{seed}", run


def alt_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from alt_scenarios import generate_alt_day
    from surv_kernel.model import detect

    for seed in SEEDS:
        yield f"alt/{seed}", lambda seed=seed: _detection(detect(generate_alt_day(seed).batch()))


def stream_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from surv_kernel.evaluation.scenario import generate_day
    from surv_kernel.model import calibrate
    from surv_kernel.observability import MetricsRegistry
    from surv_kernel.stream import SurveillanceStream

    for seed in SEEDS[:3]:

        def run(seed=seed):
            day = generate_day(seed)
            base = calibrate(generate_day(seed + 1000, population_seed=seed).batch)
            b = day.batch
            order = np.argsort(b.timestamp_ns, kind="stable")
            out = []
            for baselines in (base, None):
                s = SurveillanceStream(baselines=baselines, metrics=MetricsRegistry())
                for i in range(0, len(order), 997):
                    out.append(_update(s.push(b.take(order[i : i + 997]))))
                out.append(_update(s.flush()))
            return out

        yield f"stream/{seed}", run


def _update(u) -> dict:
    return {
        "events": [[e.status, e.episode_id, msgspec.to_builtins(e.alert)] for e in u.events],
        "suppressed": msgspec.to_builtins(u.suppressed),
        "quarantine": msgspec.to_builtins(list(u.quarantine)),
        "n": u.n_accepted,
    }


def _corrupt_feed(seed: int) -> bytes:
    from surv_kernel.evaluation.scenario import generate_day

    rng = np.random.default_rng(seed)
    trades = generate_day(seed, n_traders=40).trades()[:3000]
    lines = [json.dumps(t) for t in trades]
    bad = [
        '{"trade_id": "X1", "notional": "12"}',
        "not json at all",
        '{"trade_id": "", "asset_class": "equity", "notional": 5, "currency": "USD", '
        '"trader_id": "T", "timestamp": 1710400000, "surveillance_required": false}',
        '{"trade_id": "X2", "asset_class": "equity", "notional": -5, "currency": "USD", '
        '"trader_id": "T", "timestamp": 1710400000, "surveillance_required": false}',
        '{"trade_id": "X3", "asset_class": "crypto", "notional": 5, "currency": "USD", '
        '"trader_id": "T", "timestamp": 1710400000, "surveillance_required": false}',
        '{"trade_id": "X4", "asset_class": "equity", "notional": 5, "currency": "XXX", '
        '"trader_id": "T", "timestamp": 1710400000, "surveillance_required": false}',
        '{"trade_id": "X5", "asset_class": "equity", "notional": 5, "currency": "USD", '
        '"trader_id": "T", "timestamp": 1710400000000, "surveillance_required": false}',
        '{"trade_id": "X\\u00e9", "asset_class": "equity", "notional": 5, "currency": "EUR", '
        '"trader_id": "T", "timestamp": 1710400000, "surveillance_required": true, "x": [1]}',
    ]
    for i in rng.choice(len(lines), 60, replace=False):
        lines[i] = bad[int(rng.integers(len(bad)))]
    for i in rng.choice(len(lines), 20, replace=False):
        lines.insert(int(i), lines[int(rng.integers(len(lines)))])  # duplicates
    return ("\n".join(lines) + "\n").encode()


def ingest_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from surv_kernel.batch import TradeBatch
    from surv_kernel.ingest import Quarantine, decode_feed, iter_feed

    for seed in SEEDS[:3]:

        def run(seed=seed):
            feed = _corrupt_feed(seed)
            b, q = decode_feed(feed, desk="D")
            whole = {"batch": _batch(b), "q": msgspec.to_builtins(list(q)), "c": dict(q.counts)}
            for size in (4096, 65536, 1 << 20):
                parts, qq = [], Quarantine()
                for pb, pq in iter_feed(feed, size, desk="D"):
                    parts.append(pb)
                    qq.extend(pq)
                got = {
                    "batch": _batch(TradeBatch.concat(parts)),
                    "q": msgspec.to_builtins(list(qq)),
                    "c": dict(qq.counts),
                }
                if _h(got) != _h(whole):
                    raise AssertionError(f"iter_feed({size}) differs from decode_feed")
            array = ("[" + ",".join(feed.decode().splitlines()) + "]").encode()
            b2, q2 = decode_feed(array, desk="D")
            return {"ndjson": whole, "array": [_batch(b2), msgspec.to_builtins(list(q2))]}

        yield f"ingest/{seed}", run


def legacy_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from surv_kernel.evaluation.scenario import generate_day
    from trade_surveillance_pipeline import detect_anomalies

    for seed in SEEDS[:3]:
        yield (
            f"legacy/{seed}",
            lambda seed=seed: detect_anomalies(generate_day(seed).trades()),
        )


def cli_cases() -> Iterator[tuple[str, Callable[[], object]]]:
    from surv_kernel.evaluation.scenario import generate_day

    for seed in SEEDS[:2]:

        def run(seed=seed):
            with tempfile.TemporaryDirectory() as tmp:
                feeds = Path(tmp, "feeds")
                feeds.mkdir()
                for desk, data in generate_day(seed).feeds().items():
                    (feeds / f"{desk}.json").write_bytes(data)
                (feeds / "BAD.ndjson").write_bytes(_corrupt_feed(seed))
                out = Path(tmp, "out")
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
                proc = subprocess.run(
                    [sys.executable, "-m", "surv_kernel", "run", str(feeds), "--out", str(out)],
                    capture_output=True,
                    env=env,
                    check=False,
                )
                if proc.returncode != 0:
                    raise AssertionError(proc.stderr.decode())
                summary = json.loads((out / "summary.json").read_text())
                for key in ("stages_s", "lag_s", "trade_to_alert_lag_s", "outputs"):
                    summary.pop(key, None)
                return {
                    name: (out / name).read_bytes().decode()
                    for name in ("alerts.jsonl", "suppressed.jsonl", "quarantine.jsonl")
                } | {"summary": summary}

        yield f"cli/{seed}", run


ALL = (scenario_cases, alt_cases, stream_cases, ingest_cases, legacy_cases, cli_cases)


def compute(select: Callable[[str], bool] = lambda _: True) -> dict[str, str]:
    out = {}
    for cases in ALL:
        for name, run in cases():
            if select(name):
                out[name] = _h(run())
    return out


def main(argv: list[str]) -> int:
    import logging

    logging.disable(logging.WARNING)  # quarantine summaries of the corrupted feeds
    got = compute()
    if "--write" in argv:
        HASHES.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(got)} hashes to {HASHES}")
        return 0
    want = json.loads(HASHES.read_text())
    bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    for k in bad:
        print(f"DIFFERS {k}: recorded {want.get(k)} now {got.get(k)}")
    print(f"{len(got) - len(bad)} of {len(want)} golden outputs unchanged")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
