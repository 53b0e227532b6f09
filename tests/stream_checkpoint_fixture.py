"""The format-3 stream checkpoints in ``tests/data/`` and what a stream
restored from them must emit (``test_stream_checkpoint_compat.py``).

The ``.ckpt`` files were written by the code before the ``stream/`` package
split (main at 9a70c0f) by running this file as a script; the test restores
them with today's code, so a change that breaks format 3 fails there.

    PYTHONPATH=src:tests .venv/bin/python tests/stream_checkpoint_fixture.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec

from surv_kernel import dtypes
from surv_kernel.batch import Dictionaries
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.model import DetectionConfig, calibrate
from surv_kernel.stream import SurveillanceStream

DATA = Path(__file__).resolve().parent / "data"
#: (name, with calibrated baselines): one with given baselines, one warming up
CASES = (("stream_v3_baselines", True), ("stream_v3_warmup", False))
#: chunks pushed before the checkpoint
CUT = 49


def chunks() -> tuple[list[tuple[str, bytes]], object]:
    """A small day as NDJSON chunks per (20-minute slice, desk), and its baselines."""
    d = Dictionaries()
    hist = generate_day(21, n_traders=12, population_seed=5, date="2024-03-13", dictionaries=d)
    day = generate_day(22, n_traders=12, population_seed=5, date="2024-03-14", dictionaries=d)
    per_desk = {desk: msgspec.json.decode(data) for desk, data in day.feeds().items()}
    t_min = min(t["timestamp"] for ts in per_desk.values() for t in ts)
    t_max = max(t["timestamp"] for ts in per_desk.values() for t in ts)
    out, step = [], 20 * 60.0
    for k in range(int((t_max - t_min) // step) + 1):
        lo, hi = t_min + k * step, t_min + (k + 1) * step
        for desk, trades in sorted(per_desk.items()):
            part = [t for t in trades if lo <= t["timestamp"] < hi]
            if part:
                out.append((desk, b"\n".join(msgspec.json.encode(t) for t in part)))
    return out, calibrate(hist.batch, DetectionConfig())


def new_stream(with_baselines: bool, base) -> SurveillanceStream:
    return SurveillanceStream(
        DetectionConfig(),
        base if with_baselines else None,
        lateness_ns=60 * dtypes.NS_PER_SECOND,
        metrics=None,
        name="fixture",
    )


def digest(updates) -> str:
    """SHA-256 of everything the updates carry (events, suppressed, quarantine, watermark)."""
    h = hashlib.sha256()
    for u in updates:
        h.update(msgspec.json.encode([u.events, u.suppressed, u.watermark_ns, u.n_accepted]))
        h.update(msgspec.json.encode([list(u.quarantine), dict(u.quarantine.counts)]))
    return h.hexdigest()


def continue_after(stream: SurveillanceStream, parts) -> list:
    out = [stream.push_feed(data, desk=desk) for desk, data in parts]
    out.append(stream.flush())
    # a chunk delivered again after the restore: quarantined as duplicates
    out.append(stream.push_feed(parts[0][1], desk=parts[0][0]))
    return out


def main() -> None:
    DATA.mkdir(exist_ok=True)
    parts, base = chunks()
    expected = {}
    for name, with_baselines in CASES:
        s = new_stream(with_baselines, base)
        for desk, data in parts[:CUT]:
            s.push_feed(data, desk=desk)
        blob = s.checkpoint()
        (DATA / f"{name}.ckpt").write_bytes(blob)
        stats = s.stats()
        rest = continue_after(s, parts[CUT:])
        expected[name] = {
            "sha256_of_checkpoint": hashlib.sha256(blob).hexdigest(),
            "stats_at_checkpoint": stats,
            "continuation": digest(rest),
            "events_after": sum(len(u.events) for u in rest),
        }
    (DATA / "stream_v3_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
