"""Synthetic history for backtests and their benchmark: business days of
:func:`~surv_kernel.evaluation.scenario.generate_day` (one population of
traders, a new draw each day) written hive-style, ``ROOT/date=YYYY-MM-DD/<desk>.json``.

    python -m surv_kernel.evaluation.history ROOT --days 20 [--start 2024-03-01]
        [--traders 120] [--activity 1.0] [--seed 0] [--format json|parquet]
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .scenario import generate_day

__all__ = ["business_days", "write_history"]


def business_days(start: dt.date, n: int) -> list[dt.date]:
    """The first ``n`` weekdays from ``start`` (inclusive)."""
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


def write_history(
    root: str | Path,
    n_days: int,
    *,
    start: dt.date = dt.date(2024, 3, 1),
    n_traders: int = 120,
    activity_scale: float = 1.0,
    seed: int = 0,
    format: str = "json",
) -> list[dt.date]:
    """Write ``n_days`` business days under ``root``; returns their dates.
    Day ``k`` is ``generate_day(seed * 10_000 + k, population_seed=seed)``."""
    if format not in ("json", "parquet"):
        raise ValueError(f"format must be 'json' or 'parquet', got {format!r}")
    root = Path(root)
    days = business_days(start, n_days)
    for k, day in enumerate(days):
        sc = generate_day(
            seed * 10_000 + k,
            n_traders=n_traders,
            activity_scale=activity_scale,
            population_seed=seed,
            date=day.isoformat(),
        )
        target = root / f"date={day.isoformat()}"
        target.mkdir(parents=True, exist_ok=True)
        for desk, feed in sc.feeds().items():
            if format == "json":
                (target / f"{desk}.json").write_bytes(feed)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                rows = msgspec.json.decode(feed)
                pq.write_table(pa.Table.from_pylist(rows), target / f"{desk}.parquet")
    return days


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m surv_kernel.evaluation.history")
    p.add_argument("root")
    p.add_argument("--days", type=int, default=20)
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 3, 1))
    p.add_argument("--traders", type=int, default=120)
    p.add_argument("--activity", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("json", "parquet"), default="json")
    a = p.parse_args(argv)
    days = write_history(
        a.root,
        a.days,
        start=a.start,
        n_traders=a.traders,
        activity_scale=a.activity,
        seed=a.seed,
        format=a.format,
    )
    print(f"{len(days)} days {days[0]}..{days[-1]} -> {a.root}")


if __name__ == "__main__":
    main()
