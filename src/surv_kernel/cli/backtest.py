"""``surv-kernel backtest``: past days of a hive-partitioned history through
the detectors, on this host or on Dask (:mod:`surv_kernel.pipeline.backtest`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_FEED_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    fmt_s,
    load_baselines,
    make_out_dir,
    positive_int,
    subcommand,
)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    bt = subcommand(
        sub,
        "backtest",
        [pool, common],
        help="rerun the detectors over past days of history (no cases opened)",
        description="For each day of HISTORY (hive-style: HISTORY/date=YYYY-MM-DD/ holding "
        "that day's desk files, *.json/*.ndjson/*.jsonl or *.parquet) from --from to --to: "
        "take the given baselines or calibrate on the N previous history days, detect, and "
        "write alerts, suppressed episodes and a run record, all marked as a backtest, to "
        "OUT/date=YYYY-MM-DD/. The local and the Dask engine give the same alerts.",
    )
    bt.add_argument("history", metavar="HISTORY", help="history directory (date=YYYY-MM-DD/...)")
    bt.add_argument("--from", dest="start", type=_date, required=True, metavar="DATE")
    bt.add_argument("--to", dest="end", type=_date, required=True, metavar="DATE")
    bt.add_argument(
        "--config",
        metavar="FILE",
        help="detection settings as JSON (DetectionConfig fields; default: the model's)",
    )
    which = bt.add_mutually_exclusive_group()
    which.add_argument("--baselines", metavar="FILE", help="baselines for every day")
    which.add_argument(
        "--rolling-calibration",
        type=positive_int,
        metavar="N",
        help="calibrate each day on the N previous history days (days with fewer are skipped)",
    )
    bt.add_argument(
        "--engine",
        choices=("local", "dask"),
        default="local",
        help="local: this host; dask: a Dask cluster (the 'dask' extra)",
    )
    bt.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --engine dask: an existing cluster's scheduler (tcp://HOST:PORT); "
        "default a LocalCluster of --dask-workers processes",
    )
    bt.add_argument(
        "--dask-workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="worker processes of the LocalCluster (default 2)",
    )
    bt.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        metavar="N",
        help="partitions per day on Dask (default 2 x workers; the alerts do not depend on it)",
    )
    bt.add_argument("--out", required=True, metavar="DIR", help="output directory")
    bt.set_defaults(func=cmd_backtest)


def _config(path: str | None) -> Any:
    import msgspec

    from ..model import DetectionConfig

    if path is None:
        return DetectionConfig()
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=DetectionConfig)
    except FileNotFoundError:
        raise CliError(3, f"config file not found: {path}") from None
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise CliError(EXIT_USAGE, f"--config {path}: {exc}") from None


def cmd_backtest(args: argparse.Namespace) -> int:
    from ..pipeline import LocalEngine
    from ..pipeline.backtest import backtest

    if args.scheduler and args.engine != "dask":
        raise CliError(EXIT_USAGE, "--scheduler needs --engine dask")
    config = _config(args.config)
    baselines = load_baselines(args.baselines, config) if args.baselines else None
    if args.engine == "dask" and baselines is None and args.rolling_calibration is None:
        raise CliError(
            EXIT_USAGE,
            "--engine dask needs --baselines FILE or --rolling-calibration N (same-day "
            "baselines take peers from every group of the day at once; use --engine local)",
        )
    out = make_out_dir(args.out)
    if args.engine == "dask":
        from ..pipeline.distributed import DaskEngine

        engine: Any = DaskEngine(
            scheduler=args.scheduler, n_workers=args.dask_workers, partitions=args.partitions
        )
        print(
            f"dask         {engine.n_workers} worker(s); dashboard "
            f"{engine.dashboard_link or '(not available: install bokeh)'}",
            file=sys.stderr,
            flush=True,
        )
    else:
        engine = LocalEngine(max_workers=args.workers, deadline_s=args.desk_timeout)

    def on_day(d: Any) -> None:
        r = d.record
        if d.status == "skipped":
            print(f"{r['date']}   skipped: {r['reason']}", file=sys.stderr, flush=True)
            return
        if "trades" not in r:
            print(f"{r['date']}   failed: {r['reason']}", file=sys.stderr, flush=True)
            return
        failed = f", {len(r['failures'])} desk(s) failed" if r["failures"] else ""
        print(
            f"{r['date']}   {r['trades']:,} trades, {r['alerts']} alerts, "
            f"{r['suppressed']} suppressed{failed} ({fmt_s(r['seconds'])})",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = backtest(
            args.history,
            args.start,
            args.end,
            out,
            engine=engine,
            config=config,
            baselines=baselines,
            baselines_path=args.baselines,
            rolling=args.rolling_calibration,
            chunk_size=args.chunk_size,
            on_day=on_day,
        )
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    t = result.totals()
    print(
        f"backtest     {t['days']} day(s), {t['trades']:,} trades, {t['alerts']} alerts, "
        f"{t['suppressed']} suppressed on {engine.name} in {fmt_s(result.seconds)} -> {out}",
        file=sys.stderr,
    )
    if result.missing:
        print(
            f"missing      {len(result.missing)} business day(s) without a directory "
            f"(first {result.missing[0]}; see backtest.json)",
            file=sys.stderr,
        )
    if not result.ok:
        failed = [d.date.isoformat() for d in result.days if d.status == "failed"]
        raise CliError(
            EXIT_FEED_FAILED,
            f"{len(failed)} day(s) failed ({', '.join(failed[:5])}); see their run.json",
        )
    return EXIT_OK
