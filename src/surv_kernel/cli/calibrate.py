"""``surv-kernel calibrate``: baselines from history feeds, for ``run --baselines``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .common import (
    EXIT_BAD_DATA,
    EXIT_FEED_FAILED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_USAGE,
    CliError,
    config_from_args,
    fmt_s,
    subcommand,
)


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    cal = subcommand(
        sub,
        "calibrate",
        [model, pool, common],
        help="baselines from history feeds, for 'run --baselines'",
        description="Compute per-(trader, asset class) and peer baselines from history feeds "
        "(one or more past days; files or directories of JSON, NDJSON, Parquet or CSV, a "
        "hive-partitioned Parquet directory, or - for stdin) and save them (.json or .msgpack).",
    )
    cal.add_argument("history", nargs="*", metavar="HISTORY", help="history feed file or directory")
    cal.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="baselines file to write (.json or .msgpack); with --sweep the recommended "
        "config (.json)",
    )
    sw = cal.add_argument_group("threshold sweep (instead of baselines)")
    sw.add_argument(
        "--sweep",
        action="store_true",
        help="detect on labelled days for a grid of thresholds (z_level x ratio_level x "
        "reliability_samples), print precision, recall and alerts per 1,000 trader-days "
        "for each, and write the most precise setting with recall >= --min-recall to --out",
    )
    sw.add_argument(
        "--sweep-seeds",
        default="0-3",
        metavar="A-B",
        help="labelled days: the package's generator, these seeds (default 0-3)",
    )
    sw.add_argument(
        "--sweep-traders", type=int, default=300, metavar="N", help="traders per day (300)"
    )
    sw.add_argument(
        "--min-recall", type=float, default=0.95, metavar="R", help="recall to keep (0.95)"
    )
    cal.set_defaults(func=cmd_calibrate)


def _seeds(text: str) -> list[int]:
    try:
        if "-" in text:
            a, b = (int(x) for x in text.split("-", 1))
            seeds = list(range(a, b + 1))
        else:
            seeds = [int(x) for x in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise CliError(EXIT_USAGE, f"--sweep-seeds: want A-B or a,b,c (>= 0), got {text!r}")
    return seeds


def cmd_sweep(args: argparse.Namespace) -> int:
    """``calibrate --sweep``: the threshold table and the recommended config."""
    import json
    from pathlib import Path

    from ..evaluation.scenario import generate_day
    from ..evaluation.sweep import DEFAULT_GRID, recommendation, sweep

    if args.history:
        raise CliError(EXIT_USAGE, "--sweep uses labelled generated days; give no HISTORY")
    if not args.out.lower().endswith(".json"):
        raise CliError(EXIT_USAGE, f"--out: the recommended config is JSON, got {args.out!r}")
    if args.sweep_traders < 10:
        raise CliError(EXIT_USAGE, f"--sweep-traders must be >= 10, got {args.sweep_traders}")
    if not 0.0 < args.min_recall <= 1.0:
        raise CliError(EXIT_USAGE, f"--min-recall must be in (0, 1], got {args.min_recall}")
    seeds = _seeds(args.sweep_seeds)
    config = config_from_args(args)
    t0 = time.perf_counter()
    days = []
    for seed in seeds:
        day = generate_day(seed, n_traders=args.sweep_traders, window_minutes=config.window_minutes)
        days.append((day.batch, day))
    rows = sweep(days, config, DEFAULT_GRID)
    data = {
        "generator": "surv_kernel.evaluation.scenario.generate_day",
        "seeds": seeds,
        "traders": args.sweep_traders,
        "days": len(days),
        "trader_days": int(sum(len(set(b.trader.tolist())) for b, _ in days)),
        "episodes": rows[0].episodes,
    }
    rec = recommendation(rows, config, data, args.min_recall)
    try:
        Path(args.out).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise CliError(EXIT_OUTPUT, f"cannot write {args.out}: {exc.strerror or exc}") from None
    names = list(DEFAULT_GRID)
    print(
        "  ".join(f"{n:>19s}" for n in names) + "   prec recall alerts   FA FA/1k", file=sys.stderr
    )
    for r in rows:
        print(
            "  ".join(f"{r.settings[n]:19g}" for n in names)
            + f"  {r.precision:5.3f}  {r.recall:5.3f} {r.alerts:6d} {r.false_alerts:4d} "
            f"{r.false_alerts_per_1000_trader_days:5.2f}",
            file=sys.stderr,
        )
    print(f"recommended  {rec['rationale']} -> {args.out}", file=sys.stderr)
    print(f"time         {fmt_s(time.perf_counter() - t0)}", file=sys.stderr)
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..model import Baselines, calibrate
    from ..pipeline import LocalEngine, merge_desks, resolve_feeds

    if args.sweep:
        return cmd_sweep(args)
    if not args.history:
        raise CliError(EXIT_USAGE, "give HISTORY feed files or directories (or --sweep)")
    sources = resolve_feeds(args.history, what="history", unique_desks=False)
    config = config_from_args(args)
    try:
        Baselines.format_of(args.out)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--out: {exc}") from None
    t0 = time.perf_counter()
    engine = LocalEngine(max_workers=args.workers, deadline_s=args.desk_timeout)
    reads, failures, _ = engine.read(sources, chunk_size=args.chunk_size, shared=False)
    if failures:
        first = failures[0].line()
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise CliError(
            EXIT_FEED_FAILED,
            f"{first}{more}; no baselines written: calibrating on part of the history would "
            "shift every baseline without a word",
        )
    history = merge_desks(reads)
    n_quarantined = sum(r.quarantine.total for r in reads)
    if len(history) == 0:
        raise CliError(
            EXIT_BAD_DATA,
            f"the history has no usable trades ({n_quarantined:,} record(s) quarantined); "
            "no baselines written",
        )
    t1 = time.perf_counter()
    baselines = calibrate(history, config)
    t2 = time.perf_counter()
    try:
        baselines.save(args.out)
    except OSError as exc:
        raise CliError(EXIT_OUTPUT, f"cannot write {args.out}: {exc.strerror or exc}") from None
    n_groups = sum(len(v) for v in baselines.groups.values())
    own = sum(
        1
        for books in baselines.groups.values()
        for st in books.values()
        if st.n >= config.min_windows
    )
    print(
        f"baselines    {n_groups:,} (trader, asset class) groups, {own:,} with >= "
        f"{config.min_windows} windows (the rest fall back to peers); "
        f"{sum(len(v) for v in baselines.desk_peers.values())} desk peer and "
        f"{len(baselines.class_peers)} asset-class peer baselines -> {args.out}",
        file=sys.stderr,
    )
    print(
        f"history      {len(history):,} trades from {len(sources)} file(s), "
        f"{n_quarantined:,} quarantined; window {config.window_minutes:g} min",
        file=sys.stderr,
    )
    print(f"time         read {fmt_s(t1 - t0)} | calibrate {fmt_s(t2 - t1)}", file=sys.stderr)
    return EXIT_OK
