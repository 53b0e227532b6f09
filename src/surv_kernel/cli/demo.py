"""``surv-kernel demo``: a synthetic six-desk day through the full pipeline."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_MAX_CHARTS,
    EXIT_OK,
    config_from_args,
    failure_error,
    fmt_s,
    make_out_dir,
    nonnegative_int,
    positive_float,
    positive_int,
    store_option,
    store_url,
    subcommand,
    summary_lines,
)


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    demo = subcommand(
        sub,
        "demo",
        [model, pool, common],
        help="a synthetic six-desk trading day through the full pipeline, with a report",
        description="Generate a labelled six-desk day, write its feeds, run the pipeline on "
        "them, print the summary with precision/recall against the injected abuse, and write "
        "alerts, quarantine and report.html into --out.",
    )
    demo.add_argument("--out", default="out", metavar="DIR", help="output directory (default out)")
    demo.add_argument("--seed", type=nonnegative_int, default=0, help="scenario seed (default 0)")
    demo.add_argument(
        "--traders",
        type=positive_int,
        default=None,
        metavar="N",
        help="traders (default: the scenario generator's)",
    )
    demo.add_argument(
        "--episodes",
        type=nonnegative_int,
        default=None,
        metavar="N",
        help="injected abuse episodes (default: the scenario generator's)",
    )
    demo.add_argument(
        "--scale",
        type=positive_float,
        default=1.0,
        metavar="X",
        help="multiplies every trader's trade rate (default 1)",
    )
    demo.add_argument(
        "--max-charts",
        type=nonnegative_int,
        default=DEFAULT_MAX_CHARTS,
        metavar="N",
        help=f"chart at most the N highest-scoring alerts in the report (default {DEFAULT_MAX_CHARTS})",
    )
    store_option(demo)
    demo.set_defaults(func=cmd_demo)


def slug(name: str) -> str:
    """A desk name as a file stem."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..evaluation.scenario import generate_day
    from ..pipeline import FileSource, JsonLinesSink, LocalEngine, run
    from ..pipeline.publish import RunDirectory
    from ..pipeline.sinks import atomic_open
    from ..pipeline.sources import FEED_SUFFIXES

    config = config_from_args(args)
    out_dir = make_out_dir(args.out)
    feeds_dir = out_dir / "feeds"
    feeds_dir.mkdir(exist_ok=True)
    for stale in feeds_dir.iterdir():
        if stale.is_file() and stale.suffix in FEED_SUFFIXES:
            stale.unlink()
    t0 = time.perf_counter()
    knobs: dict[str, Any] = dict(
        activity_scale=args.scale,
        window_minutes=config.window_minutes,
        threshold_multiplier=config.threshold_multiplier,
    )
    # unset: the generator's own defaults (the README's "embedded default" day)
    if args.traders is not None:
        knobs["n_traders"] = args.traders
    if args.episodes is not None:
        knobs["n_episodes"] = args.episodes
    scenario = generate_day(args.seed, **knobs)
    sources = []
    for desk, data in scenario.feeds().items():
        path = feeds_dir / f"{slug(desk)}.json"
        path.write_bytes(data)
        sources.append(FileSource(path))
    rows = [
        {
            "kind": e.kind,
            "trader_id": e.trader_id,
            "asset_class": e.asset_class,
            "desk": e.desk,
            "start_ns": e.start_ns,
            "end_ns": e.end_ns,
            "trade_ids": sorted(e.trade_ids),
        }
        for e in scenario.episodes
    ]
    out = RunDirectory(out_dir)
    staging = out.begin()
    try:
        with atomic_open(staging / "labels.json") as f:
            f.write(json.dumps(rows, indent=1).encode() + b"\n")
        generate_s = time.perf_counter() - t0
        result = run(
            sources,
            config=config,
            engine=LocalEngine(max_workers=args.workers, deadline_s=args.desk_timeout),
            chunk_size=args.chunk_size,
            sinks=[
                JsonLinesSink(
                    staging / "alerts.jsonl",
                    quarantine=staging / "quarantine.jsonl",
                    suppressed=staging / "suppressed.jsonl",
                    shown_as=out.shown_as,
                )
            ],
        )
        summary = _evaluate_and_report(
            args, result, scenario, out, staging, feeds_dir, t0, generate_s
        )
        out.commit()
    except BaseException:
        out.abort()
        raise
    print(
        f"surv-kernel demo: a synthetic six-desk day (seed {args.seed}, {len(scenario.traders)} "
        f"traders, {len(scenario.episodes)} injected abuse episodes) through ingest -> detect "
        "-> report"
    )
    for line in summary_lines(summary):
        print(line)
    print(f"total        {fmt_s(summary['total_s'])}")
    if not result.ok:
        raise failure_error(result)
    return EXIT_OK


def _evaluate_and_report(
    args: argparse.Namespace,
    result: Any,
    scenario: Any,
    out: Any,
    staging: Path,
    feeds_dir: Path,
    t0: float,
    generate_s: float,
) -> dict[str, Any]:
    """Score the alerts against the day's labels, then write the report and
    summary.json with that evaluation in them; returns the summary."""
    import msgspec

    from ..evaluation.scenario import evaluate_alerts
    from ..pipeline import ReportSink, SummarySink, summary_dict

    t = time.perf_counter()
    ev = evaluate_alerts(result.detection.alerts, scenario)
    result.stages = {
        "generate": generate_s,
        **result.stages,
        "evaluate": time.perf_counter() - t,
    }
    result.outputs = {
        "feeds": str(feeds_dir),
        **result.outputs,
        "labels": out.shown_as(staging / "labels.json"),
    }
    extra: dict[str, Any] = {
        "scenario": {
            "seed": args.seed,
            "traders": len(scenario.traders),
            "episodes": len(scenario.episodes),
            "scale": args.scale,
        },
        "evaluation": msgspec.to_builtins(ev),
    }
    title = f"surv-kernel demo (seed {args.seed})"
    store_sink = None
    store = store_url(args, args.out)
    if store:
        from ..store import StoreSink

        # with the evaluation in the stored summary; before the report (which
        # reads the cases back) and summary.json (which names the run id)
        store_sink = StoreSink(store, who=args.user, extra=extra)
        result.outputs.update(store_sink.write(result))
    ReportSink(
        staging / "report.html",
        max_charts=args.max_charts,
        title=title,
        extra=extra,
        shown_as=out.shown_as,
        cases=store_sink,
    ).write(result)
    extra["total_s"] = time.perf_counter() - t0
    SummarySink(staging / "summary.json", extra=extra).write(result)
    return summary_dict(result, extra=extra)
