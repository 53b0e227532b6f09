"""``surv-kernel serve``: the always-on intraday service (:mod:`surv_kernel.service`).

Signals: SIGTERM (systemd's stop) and SIGINT finish the current cycle,
commit the output, write a final checkpoint and exit 0 (SIGTERM) or 130
(SIGINT); the usual time is well under a second. kill -9 loses nothing
either: the next start resumes from the last checkpoint (see
:mod:`surv_kernel.service.loop` for why no alert event is lost or repeated).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    config_from_args,
    load_baselines,
    nonnegative_int,
    positive_float,
    subcommand,
)

log = logging.getLogger(__name__)

#: Written into --state once the endpoint listens: its URL (with
#: --metrics-port 0, the port the system picked).
ENDPOINT_FILE = "endpoint"
#: Written into --state at start: the process id (for `kill -TERM`).
PID_FILE = "serve.pid"


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    p = subcommand(
        sub,
        "serve",
        [model, common],
        help="the always-on intraday service: tail desk files, alerts within seconds",
        description="Tail one growing NDJSON file per desk (FEEDS/DESK.ndjson), detect with "
        "the streaming model, write alert events (open/update/closed, with alert_id and "
        "revision) as JSON lines, checkpoint into --state, serve /metrics and /health. A "
        "restart after a crash resumes from the last checkpoint with no lost and no "
        "duplicate alert event (with --out).",
    )
    p.add_argument("--feeds", metavar="DIR", help="directory of DESK.ndjson files")
    p.add_argument(
        "--poll-desks",
        metavar="DESK,...",
        help="instead of --feeds: call the desk feed (--poll-call) for these desks every "
        "--interval seconds, with retries and a deadline, spooling new records to "
        "STATE/polled/DESK.ndjson, which the service tails",
    )
    p.add_argument(
        "--poll-call",
        default="trade_surveillance_pipeline:_api_call",
        metavar="MODULE:FUNC",
        help="the desk feed call for --poll-desks: FUNC(desk_id) returns the desk's feed as a "
        "JSON array (default %(default)s, the received desk API)",
    )
    p.add_argument(
        "--interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="--poll-desks: seconds between polls of each desk (default 5)",
    )
    p.add_argument(
        "--poll-deadline",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="--poll-desks: one desk call (with its retries) gives up after S seconds "
        "(default 30); the desk then gets no new lines and goes SILENT after --silence-after",
    )
    p.add_argument(
        "--state", required=True, metavar="DIR", help="checkpoints go here (created if missing)"
    )
    p.add_argument(
        "--baselines",
        metavar="FILE",
        help="calibrated baselines ('surv-kernel calibrate'); without them the stream warms up "
        "its own from the day (no batch equivalence)",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="append alert events to FILE (fsynced at every checkpoint; exactly once across "
        "crashes); default stdout (at least once across crashes)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds between checkpoints (default 10); also bounds the work replayed after a "
        "crash",
    )
    p.add_argument(
        "--lateness",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="how far (event time) a desk may run behind the newest trade of any desk and "
        "still be on time (default 60)",
    )
    p.add_argument(
        "--silence-after",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="a desk with no new lines for this long is SILENT and /health DEGRADED (default 300)",
    )
    p.add_argument(
        "--metrics-port",
        type=nonnegative_int,
        default=9464,
        metavar="PORT",
        help="serve /metrics and /health on 127.0.0.1:PORT (default 9464; 0 picks a free port, "
        f"written to STATE/{ENDPOINT_FILE})",
    )
    p.add_argument(
        "--poll-interval",
        type=positive_float,
        default=0.05,
        metavar="S",
        help="seconds to wait when no desk has new lines (default 0.05)",
    )
    p.add_argument(
        "--heartbeat-after",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="after this many quiet seconds, move event time on at wall speed to close "
        "episodes (default 2)",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="also upsert every event into this alert store (sqlite:///path.db or "
        "postgresql://...), committed before each checkpoint; work it with 'surv-kernel alerts'",
    )
    p.add_argument("--user", metavar="NAME", help="who runs it, in the store (default: $USER)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..observability import metrics
    from ..service import JsonLinesFileSink, Service, ServiceConfig, StdoutSink
    from ..service.http import start_endpoint

    detection = config_from_args(args)
    baselines = load_baselines(args.baselines, detection) if args.baselines else None
    if (args.feeds is None) == (args.poll_desks is None):
        raise CliError(
            EXIT_USAGE,
            "give --feeds DIR (desk files to tail) or --poll-desks DESK,... (desk feeds to "
            "call), one of the two",
        )
    poller = None
    feeds = args.feeds
    if args.poll_desks is not None:
        from ..service.poll import DeskPoller, load_call

        desks = [d.strip() for d in args.poll_desks.split(",") if d.strip()]
        if not desks or any(not d.replace("_", "").replace("-", "").isalnum() for d in desks):
            raise CliError(
                EXIT_USAGE, f"--poll-desks {args.poll_desks!r}: desk ids, comma-separated"
            )
        feeds = str(Path(args.state) / "polled")
        poller = DeskPoller(
            desks, load_call(args.poll_call), Path(feeds), interval_s=args.interval,
            deadline_s=args.poll_deadline,
            registry=metrics,
        )  # fmt: skip
    cfg = ServiceConfig(
        feeds=feeds,
        state=args.state,
        lateness_s=args.lateness,
        checkpoint_every_s=args.checkpoint_every,
        silence_after_s=args.silence_after,
        poll_interval_s=args.poll_interval,
        heartbeat_after_s=args.heartbeat_after,
    )
    state = Path(args.state)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot create --state {args.state}: {exc.strerror}") from None
    # The endpoint lives for the whole process: it answers STARTING while the
    # state is restored, before the service object exists.
    holder: dict[str, Any] = {}

    def health() -> dict[str, Any]:
        svc = holder.get("service")
        return svc.health_snapshot() if svc is not None else {"status": "STARTING", "desks": {}}

    try:
        server = start_endpoint(args.metrics_port, health, metrics)
    except OSError as exc:
        raise CliError(
            EXIT_USAGE,
            f"cannot listen on 127.0.0.1:{args.metrics_port}: {exc.strerror or exc}; pick "
            "another --metrics-port (0: any free port)",
        ) from None
    # renamed into place: a script waiting for the file never reads half of it
    for name, text in ((PID_FILE, f"{os.getpid()}\n"), (ENDPOINT_FILE, f"{server.url}\n")):  # type: ignore[attr-defined]
        (state / f"{name}.tmp").write_text(text)
        os.replace(state / f"{name}.tmp", state / name)
    print(f"surv-kernel serve: /metrics and /health on {server.url}", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        # only a flag: the loop finishes its cycle and checkpoints (a handler
        # raising mid-write could tear the output or the state file)
        received.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    sink = JsonLinesFileSink(args.out) if args.out else StdoutSink()
    if args.store:
        from ..store import StoreEventSink

        sink = StoreEventSink(args.store, sink, who=args.user)
    try:
        service = Service(cfg, sink, detection, baselines, metrics=metrics)
        holder["service"] = service
        if poller is not None:
            poller.start()
        try:
            service.run(stop)
        finally:
            if poller is not None:
                poller.stop()
            service.close()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.shutdown()
        server.server_close()
    if received and received[0] == signal.SIGINT:
        return EXIT_INTERRUPTED
    return EXIT_OK
