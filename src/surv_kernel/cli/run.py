"""``surv-kernel run``: desk feeds (files or directories) -> alerts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_MAX_CHARTS,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Progress,
    config_from_args,
    failure_error,
    load_baselines,
    nonnegative_int,
    store_option,
    store_url,
    subcommand,
    summary_lines,
)


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    run = subcommand(
        sub,
        "run",
        [model, pool, common],
        help="desk feeds (files or directories) -> alerts as JSON lines",
        description="Analyse desk feeds: files or directories of *.json / *.ndjson / *.jsonl "
        "(JSON array or NDJSON), *.parquet or *.csv (a header row naming the schema fields; "
        "needs pyarrow), a hive-partitioned Parquet directory (DIR/desk=NAME/...), or - for "
        "standard input; the desk name is the file stem (or the desk= value, or 'stdin'). "
        "Alerts go to stdout (or DIR/alerts.jsonl with --out; see --format), quarantined "
        "records to their own file, the summary to stderr.",
    )
    run.add_argument(
        "feeds", nargs="+", metavar="FEED", help="feed file, directory of feeds, or - (stdin)"
    )
    run.add_argument(
        "--format",
        choices=("jsonl", "csv", "parquet"),
        default="jsonl",
        help="format of the alerts, suppressed and quarantine outputs (default jsonl; csv and "
        "parquet need pyarrow, and write a list cell as its JSON text in csv)",
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        help="write alerts.jsonl, quarantine.jsonl and summary.json here instead of stdout",
    )
    run.add_argument(
        "--quarantine",
        metavar="FILE",
        help="quarantined records as JSON lines (default DIR/quarantine.jsonl with --out, "
        "else ./quarantine.jsonl)",
    )
    run.add_argument("--baselines", metavar="FILE", help="baselines from 'surv-kernel calibrate'")
    run.add_argument(
        "--min-volume-ratio",
        type=float,
        metavar="R",
        help="with --baselines: a desk below R times its normal records or notional for the "
        "part of the day covered is PARTIAL (default SURV_MIN_VOLUME_RATIO or 0.5; 0: off)",
    )
    run.add_argument(
        "--report",
        metavar="FILE",
        help="also write the HTML report here (with --out, 'DIR/report.html' is a good place)",
    )
    run.add_argument(
        "--max-charts",
        type=nonnegative_int,
        default=DEFAULT_MAX_CHARTS,
        metavar="N",
        help=f"chart at most the N highest-scoring alerts in the report (default {DEFAULT_MAX_CHARTS})",
    )
    run.add_argument(
        "--memory",
        choices=("day", "bounded"),
        default="day",
        help="day: read every desk into one in-memory day, then detect (peak memory follows "
        "the day, ~420 bytes per trade); bounded: spill the day to disk by trader and detect "
        "slice by slice, same alerts, peak memory set by the slice, not the day "
        "(SURV_BOUNDED_SLICE_ROWS rows per slice, spill files in SURV_SPILL_DIR or the temp "
        "directory; desks read one after another, no per-desk deadline)",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on stderr (auto: when stderr is a terminal and reading takes "
        "more than a second)",
    )
    store_option(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..pipeline import (
        JsonLinesSink,
        LocalEngine,
        ReportSink,
        SummarySink,
        resolve_feeds,
        run,
        summary_dict,
    )
    from ..pipeline.bounded import BoundedEngine
    from ..pipeline.publish import RunDirectory

    sources = resolve_feeds(args.feeds)
    config = config_from_args(args)
    baselines = load_baselines(args.baselines, config) if args.baselines else None
    out = RunDirectory(args.out) if args.out else None
    staging = out.begin() if out is not None else None
    shown_as = out.shown_as if out is not None else str
    ext = args.format
    if args.quarantine:
        quarantine_path = Path(args.quarantine)
    else:
        quarantine_path = (staging or Path(".")) / f"quarantine.{ext}"
    progress = Progress(sum(s.size or 0 for s in sources), len(sources), args.progress)
    alerts_out = staging / f"alerts.{ext}" if staging is not None else sys.stdout.buffer
    suppressed_out = staging / f"suppressed.{ext}" if staging is not None else None
    if ext == "jsonl":
        first: Any = JsonLinesSink(
            alerts_out, quarantine=quarantine_path, suppressed=suppressed_out, shown_as=shown_as
        )
    else:
        try:
            from ..frames.sinks import FrameSink
        except ImportError as exc:
            raise CliError(
                EXIT_USAGE,
                f"--format {ext} needs pyarrow ({exc}): pip install 'surv_kernel[arrow]'",
            ) from None
        first = FrameSink(
            alerts_out,
            fmt=ext,
            quarantine=quarantine_path,
            suppressed=suppressed_out,
            shown_as=shown_as,
        )
    sinks: list[Any] = [first]
    store_sink = None
    store = store_url(args, args.out)
    if store:
        from ..store import StoreSink

        # after the files are staged, before the report (which reads the
        # cases back) and summary.json (which names the run id): a store
        # that cannot be written fails the run, unpublished
        store_sink = StoreSink(store, who=args.user)
        sinks.append(store_sink)
    if args.report:
        report = Path(args.report)
        if (
            out is not None
            and staging is not None
            and report.parent.resolve() == out.root.resolve()
        ):
            report = staging / report.name  # DIR/report.html: part of the published set
        sinks.append(
            ReportSink(
                report,
                max_charts=args.max_charts,
                title="surv-kernel run",
                shown_as=shown_as,
                cases=store_sink,
            )
        )
    if staging is not None:
        sinks.append(SummarySink(staging / "summary.json"))
    if args.memory == "bounded":
        engine: Any = BoundedEngine()
    else:
        engine = LocalEngine(max_workers=args.workers, deadline_s=args.desk_timeout)
    try:
        result = run(
            sources,
            config=config,
            baselines=baselines,
            baselines_path=args.baselines,
            engine=engine,
            chunk_size=args.chunk_size,
            progress=progress,
            sinks=sinks,
            min_volume_ratio=args.min_volume_ratio,
        )
        if out is not None:
            if result.reads:
                out.commit()
            else:  # nothing analysed: an empty set must not replace a good one
                out.abort()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        progress.close()
    if result.reads or not result.failures:
        # (when every desk failed there is nothing to summarise: the error
        # line below says it all)
        for line in summary_lines(summary_dict(result)):
            print(line, file=sys.stderr)
        sys.stderr.flush()
    if not result.ok:
        raise failure_error(result)
    return EXIT_OK
