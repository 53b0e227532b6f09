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
    cal.add_argument("history", nargs="+", metavar="HISTORY", help="history feed file or directory")
    cal.add_argument(
        "--out", required=True, metavar="FILE", help="baselines file to write (.json or .msgpack)"
    )
    cal.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..model import Baselines, calibrate
    from ..pipeline import LocalEngine, merge_desks, resolve_feeds

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
