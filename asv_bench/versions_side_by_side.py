"""Decode and detect time of one build against another, side by side.

Interleave fresh processes of two builds (one via PYTHONPATH, one installed)
so both see the same machine load, e.g. for a refactor that must not slow
anything down::

    for i in 1 2 3; do
        PYTHONPATH=/path/to/old/src python asv_bench/versions_side_by_side.py
        python asv_bench/versions_side_by_side.py
    done

Each run prints one JSON line: trades, the best of three decode and detect
times of a 2,000-trader six-desk scenario day (``decode_feed`` per desk into
one Dictionaries, then ``detect``), and the alert count (must agree).
"""

from __future__ import annotations

import json
import logging
import time

from surv_kernel.batch import Dictionaries, TradeBatch
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.ingest import decode_feed
from surv_kernel.model import detect


def main() -> None:
    logging.disable(logging.WARNING)
    feeds = generate_day(3, n_traders=2000, n_episodes=24).feeds()
    t_decode, t_detect = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        d = Dictionaries()
        batch = TradeBatch.concat([decode_feed(f, k, dictionaries=d)[0] for k, f in feeds.items()])
        t1 = time.perf_counter()
        det = detect(batch)
        t_decode.append(t1 - t0)
        t_detect.append(time.perf_counter() - t1)
    print(
        json.dumps(
            {
                "trades": len(batch),
                "decode_s": min(t_decode),
                "detect_s": min(t_detect),
                "alerts": len(det.alerts),
            }
        )
    )


if __name__ == "__main__":
    main()
