"""The ``surv-kernel`` command (also ``python -m surv_kernel``).

Subcommands::

    surv-kernel demo --out out                 a synthetic six-desk day, end to end, with a report
    surv-kernel run FEED... [--out DIR]        desk feeds (files or directories) -> alerts
    surv-kernel calibrate HISTORY... --out baselines.json
    surv-kernel run FEED... --baselines baselines.json
    surv-kernel evaluate [--seeds 0 1 2]       received rule vs model on labelled days

``run`` takes files or directories of desk feeds (``*.json``, ``*.ndjson``,
``*.jsonl``; a JSON array or one JSON object per line). The desk name is the
file stem. Each desk is read by ``surv_kernel.ingest.iter_feed`` in chunks of
``--chunk-size`` records (memory follows the chunk and the columns, never a
list of dicts) on the bounded desk pool of :mod:`surv_kernel.desks`, one
worker per desk up to ``--workers``. The desks' columns are then merged into
one batch and :func:`surv_kernel.model.detect` runs once over the day: a
trader's window is judged across every desk that booked it (a trader cannot
split a burst over two desks to stay under the floor) and the model's peer
baselines see every desk. A desk that fails (not JSON, unreadable) is named,
the other desks are still analysed and their alerts written, and the exit
status is 4.

Output of ``run``: alerts as JSON lines (one ``Alert.to_dict()`` per line plus
``desks``, the desks that booked the peak window's trades) on stdout, or in
``DIR/alerts.jsonl`` with ``--out DIR``; the quarantined records in their own
JSON-lines file (``DIR/quarantine.jsonl``, or ``--quarantine FILE``, default
``./quarantine.jsonl`` without ``--out``); the summary on stderr (and
``DIR/summary.json``). A progress line is drawn on stderr only when stderr is
a terminal and the input takes more than a second to read
(``--progress always|never`` overrides; ``SURV_PROGRESS_AFTER_S`` sets the
second).

"lag" in the summaries is the time from opening the first feed to the last
alert written: for feeds delivered as files, the pipeline's share of the
trade-to-alert delay the audit measured (45-60 min). When the trades are
recent (the newest within a day of now) the trade-to-alert lag itself is
reported too and observed in ``surv_alert_lag_seconds``; a replayed old day
would only measure the age of the data, so it is not.

Logging: by default the command prints only its summary and error lines.
``--log-format json`` (structured, one object per line) or ``--log-level``
turn on the package's logs on stderr; ``--debug`` turns them on at DEBUG and
shows tracebacks. ``--metrics FILE`` writes the run's metrics in the
Prometheus text format.

Exit status (also in ``surv-kernel --help``):

====  =====================================================================
0     success
1     internal error (a bug: rerun with --debug for the traceback)
2     usage: unknown option, bad option value, conflicting arguments
3     input not found: missing file or directory, directory without feed
      files, unreadable file
4     a desk feed failed (not JSON, unreadable, timed out); every other
      desk was analysed and its alerts written; the failed desks are named
5     a data file other than a feed is unusable: a baselines file that is
      not baselines or was made with another window, a history without
      usable trades
130   interrupted (Ctrl-C)
141   stdout was closed early (e.g. ``| head``): the output is incomplete
====  =====================================================================

Every error is one line on stderr, ``surv-kernel: error: ...``, saying what
to do about it; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

PROG = "surv-kernel"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_INPUT = 3
EXIT_FEED_FAILED = 4
EXIT_BAD_DATA = 5
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: rerun with --debug for the traceback)",
    EXIT_USAGE: "usage: unknown option, bad option value, conflicting arguments",
    EXIT_NO_INPUT: "input not found: missing file or directory, directory without feed files, "
    "unreadable file",
    EXIT_FEED_FAILED: "a desk feed failed (not JSON, unreadable, timed out); the other desks' "
    "alerts were still written and the failed desks are named",
    EXIT_BAD_DATA: "a baselines or history file is unusable",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout was closed early (e.g. '| head'): the output is incomplete",
}

#: File suffixes taken from a directory of desk feeds.
FEED_SUFFIXES = (".json", ".ndjson", ".jsonl")

DEFAULT_CHUNK_BYTES = 8 << 20  # = surv_kernel.ingest.DEFAULT_CHUNK_BYTES
DEFAULT_MAX_CHARTS = 50

log = logging.getLogger(__name__)


class CliError(Exception):
    """An error a person can act on: printed as one line, exit status ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- argument parsing ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to get help) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _whole_number_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number_at_least(1)
_nonnegative_int = _whole_number_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _byte_size(text: str) -> int:
    """``65536``, ``64k``, ``8M``, ``1G`` (binary multiples)."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    digits = t[:-1] if scale > 1 else t
    try:
        value = int(float(digits) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 512k or 8M, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def _seed_list(text: str) -> list[int]:
    """``3`` or ``0-4`` or ``1,5,9`` (seeds are >= 0)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
            raise argparse.ArgumentTypeError(f"expected seeds >= 0 like 0-4 or 1,5,9, got {text!r}")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return out


def _exit_code_epilog() -> str:
    import textwrap

    rows = "\n".join(
        textwrap.fill(f"  {code:>3}  {text}", width=79, subsequent_indent=" " * 7)
        for code, text in EXIT_CODES.items()
    )
    return f"exit status:\n{rows}"


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the exit-status table as laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit status:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("logging and diagnostics")
    g.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="turn on the package's logs on stderr in this format (json: one object per line, "
        "at INFO unless --log-level says otherwise)",
    )
    g.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="turn on the package's logs on stderr at this level",
    )
    g.add_argument(
        "--metrics", metavar="FILE", help="write the run's metrics here (Prometheus text format)"
    )
    g.add_argument("--debug", action="store_true", help="DEBUG logs and full tracebacks on errors")

    model = argparse.ArgumentParser(add_help=False)
    m = model.add_argument_group("detection")
    m.add_argument(
        "--window-minutes",
        type=_positive_float,
        default=30.0,
        metavar="MIN",
        help="rolling window length in minutes (default 30)",
    )
    m.add_argument(
        "--threshold-multiplier",
        type=_positive_float,
        default=3.0,
        metavar="X",
        help="static floor = asset-class floor x this (default 3)",
    )
    m.add_argument(
        "--policy",
        choices=("robust", "static"),
        default="robust",
        help="robust: floor AND deviation from the trader's baseline (default); "
        "static: every floor-passing episode",
    )

    pool = argparse.ArgumentParser(add_help=False)
    p = pool.add_argument_group("reading feeds")
    p.add_argument(
        "--chunk-size",
        type=_byte_size,
        default=DEFAULT_CHUNK_BYTES,
        metavar="BYTES",
        help="bytes of feed read and decoded at a time, e.g. 512k, 8M (default 8M); memory "
        "per desk in flight follows it",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="desks read at the same time (default: SURV_MAX_WORKERS or min(desks, cores + 4))",
    )
    p.add_argument(
        "--desk-timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="seconds one desk may take (default: SURV_DESK_DEADLINE_S or 120)",
    )

    parser = _Parser(
        prog=PROG,
        description="Trade surveillance: desk feeds in, explained alerts out.",
        epilog=_exit_code_epilog(),
        formatter_class=_Formatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        parents=[model, pool, common],
        help="a synthetic six-desk trading day through the full pipeline, with a report",
        description="Generate a labelled six-desk day, write its feeds, run the pipeline on "
        "them, print the summary with precision/recall against the injected abuse, and write "
        "alerts, quarantine and report.html into --out.",
        epilog=_exit_code_epilog(),
        formatter_class=_Formatter,
    )
    demo.add_argument("--out", default="out", metavar="DIR", help="output directory (default out)")
    demo.add_argument("--seed", type=_nonnegative_int, default=0, help="scenario seed (default 0)")
    demo.add_argument(
        "--traders",
        type=_positive_int,
        default=None,
        metavar="N",
        help="traders (default: the scenario generator's)",
    )
    demo.add_argument(
        "--episodes",
        type=_nonnegative_int,
        default=None,
        metavar="N",
        help="injected abuse episodes (default: the scenario generator's)",
    )
    demo.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="multiplies every trader's trade rate (default 1)",
    )
    demo.add_argument(
        "--max-charts",
        type=_nonnegative_int,
        default=DEFAULT_MAX_CHARTS,
        metavar="N",
        help=f"chart at most the N highest-scoring alerts in the report (default {DEFAULT_MAX_CHARTS})",
    )
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser(
        "run",
        parents=[model, pool, common],
        help="desk feeds (files or directories) -> alerts as JSON lines",
        description="Analyse desk feeds: files or directories of *.json / *.ndjson / *.jsonl "
        "(JSON array or NDJSON); the desk name is the file stem. Alerts go to stdout as JSON "
        "lines (or DIR/alerts.jsonl with --out), quarantined records to their own file, the "
        "summary to stderr.",
        epilog=_exit_code_epilog(),
        formatter_class=_Formatter,
    )
    run.add_argument("feeds", nargs="+", metavar="FEED", help="feed file or directory of feeds")
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
        "--report",
        metavar="FILE",
        help="also write the HTML report here (with --out, 'DIR/report.html' is a good place)",
    )
    run.add_argument(
        "--max-charts",
        type=_nonnegative_int,
        default=DEFAULT_MAX_CHARTS,
        metavar="N",
        help=f"chart at most the N highest-scoring alerts in the report (default {DEFAULT_MAX_CHARTS})",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on stderr (auto: when stderr is a terminal and reading takes "
        "more than a second)",
    )
    run.set_defaults(func=cmd_run)

    cal = sub.add_parser(
        "calibrate",
        parents=[model, pool, common],
        help="baselines from history feeds, for 'run --baselines'",
        description="Compute per-(trader, asset class) and peer baselines from history feeds "
        "(one or more past days; files or directories) and save them (.json or .msgpack).",
        epilog=_exit_code_epilog(),
        formatter_class=_Formatter,
    )
    cal.add_argument("history", nargs="+", metavar="HISTORY", help="history feed file or directory")
    cal.add_argument(
        "--out", required=True, metavar="FILE", help="baselines file to write (.json or .msgpack)"
    )
    cal.set_defaults(func=cmd_calibrate)

    ev = sub.add_parser(
        "evaluate",
        parents=[model, common],
        help="received rule vs model on labelled synthetic days, as a table",
        description="Generate labelled days (one per seed) and score the received pair rule "
        "and the model against the injected abuse: precision, recall, alerts per detected "
        "episode.",
        epilog=_exit_code_epilog(),
        formatter_class=_Formatter,
    )
    ev.add_argument(
        "--seeds",
        type=_seed_list,
        default=[0, 1, 2, 3, 4],
        metavar="SEEDS",
        help="seeds like 0-4 or 1,5,9 (default 0-4)",
    )
    ev.add_argument(
        "--mix",
        default="default",
        metavar="NAME",
        help="trader mix: default, institutional-heavy, retail-heavy, sparse-heavy (default: default)",
    )
    ev.add_argument(
        "--traders",
        type=_positive_int,
        default=None,
        metavar="N",
        help="traders per day (default: the scenario generator's)",
    )
    ev.add_argument(
        "--no-received",
        action="store_true",
        help="skip the received pair rule (it is O(pairs) and slow on big days)",
    )
    ev.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    ev.set_defaults(func=cmd_evaluate)
    return parser


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        _configure_logging(args)
        code = args.func(args)
    except SystemExit as exc:  # argparse --help / usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except CliError as exc:
        if debug:
            log.debug("error", exc_info=True)
        _error(exc.message)
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): the output is
        # incomplete; point stdout at /dev/null so the interpreter's final
        # flush does not fail a second time
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc} "
            f"(this is a bug; rerun with --debug for the traceback)"
        )
        return EXIT_INTERNAL
    finally:
        _write_metrics_file()
    return code


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


_METRICS_PATH: list[str] = []


def _write_metrics_file() -> None:
    """Write --metrics at the very end, also after a failure (a failed run's
    counters are the ones an operator wants)."""
    if not _METRICS_PATH:
        return
    path = _METRICS_PATH.pop()
    from .observability import metrics

    try:
        Path(path).write_text(metrics.render_prometheus(), encoding="utf-8")
    except OSError as exc:
        _error(f"cannot write metrics file {path}: {exc.strerror or exc}")


class _NoTracebacks(logging.Filter):
    """Drop exception tracebacks from log records (shown only with --debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _configure_logging(args: argparse.Namespace) -> None:
    from .observability import configure_logging

    if getattr(args, "metrics", None):
        _METRICS_PATH[:] = [args.metrics]
    pkg = logging.getLogger("surv_kernel")
    level = args.log_level
    if args.debug:
        level = "debug"
    elif level is None and args.log_format == "json":
        level = "info"
    if level is None:
        # logs off: the summary and the error line say what happened; without
        # this, logging's last-resort handler would print desk failures (with
        # tracebacks) a second time
        pkg.handlers[:] = [h for h in pkg.handlers if not getattr(h, "_surv_kernel_cli", False)]
        null = logging.NullHandler()
        null._surv_kernel_cli = True  # type: ignore[attr-defined]
        pkg.addHandler(null)
        pkg.propagate = False
        pkg.setLevel(logging.CRITICAL + 1)
        return
    handler = configure_logging(level.upper(), json_format=args.log_format == "json")
    if not args.debug:
        handler.addFilter(_NoTracebacks())
    pkg.propagate = False


# -- feeds --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeedSource:
    """One desk feed file; ``desk`` is the file stem."""

    desk: str
    path: Path
    size: int


def resolve_feeds(
    paths: Sequence[str], what: str = "feed", *, unique_desks: bool = True
) -> list[FeedSource]:
    """Files as given, directories expanded to their feed files (sorted by name).

    Raises :class:`CliError` (exit 3) for a missing path, a directory without
    feed files or an unreadable file, and (exit 2) for two feeds with the
    same desk name when ``unique_desks`` (a run reads one feed per desk; a
    history may hold several days of each desk).
    """
    out: list[FeedSource] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in FEED_SUFFIXES
            )
            if not files:
                suffixes = ", ".join(f"*{s}" for s in FEED_SUFFIXES)
                raise CliError(EXIT_NO_INPUT, f"no {what} files ({suffixes}) in directory {raw}")
        elif p.exists():
            if not p.is_file():
                raise CliError(EXIT_NO_INPUT, f"{what} {raw} is not a regular file")
            files = [p]
        else:
            raise CliError(EXIT_NO_INPUT, f"{what} file not found: {raw}")
        for f in files:
            if not os.access(f, os.R_OK):
                raise CliError(EXIT_NO_INPUT, f"cannot read {what} file {f}: permission denied")
            out.append(FeedSource(f.stem, f, f.stat().st_size))
    seen: dict[str, Path] = {}
    for src in out if unique_desks else ():
        if src.desk in seen:
            raise CliError(
                EXIT_USAGE,
                f"desk {src.desk!r} given twice ({seen[src.desk]} and {src.path}): the desk name "
                "is the file stem, so rename one of them",
            )
        seen[src.desk] = src.path
    return out


class Progress:
    """A one-line progress display on a terminal (bytes read over all desks).

    Drawn only when enabled (``always``, or ``auto`` on a terminal) and, for
    ``auto``, once the run has taken ``after_s`` seconds: short runs stay
    quiet. Thread-safe: desk workers report their file positions.
    """

    def __init__(
        self, total_bytes: int, n_desks: int, mode: str, stream: IO[str] | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = mode == "always" or (mode == "auto" and is_tty)
        try:
            default_after = 0.0 if mode == "always" else 1.0
            self.after_s = float(os.environ.get("SURV_PROGRESS_AFTER_S", default_after))
        except ValueError:
            self.after_s = 1.0
        self.total = max(total_bytes, 1)
        self.n_desks = n_desks
        self.pos: dict[str, int] = {}
        self.trades = 0
        self.desks_done = 0
        self.t0 = time.monotonic()
        self.last = -1.0
        self.drawn = False
        self.lock = threading.Lock()

    def update(self, desk: str, position: int, trades: int = 0, done: bool = False) -> None:
        if not self.enabled:
            return
        with self.lock:
            self.pos[desk] = position
            self.trades += trades
            self.desks_done += int(done)
            now = time.monotonic()
            if now - self.t0 < self.after_s or (now - self.last < 0.1 and not done):
                return
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        done = sum(self.pos.values())
        frac = min(done / self.total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (
            f"\r[{bar}] {frac:4.0%}  {done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB  "
            f"{self.trades:,} trades  {self.desks_done}/{self.n_desks} desks  "
            f"{now - self.t0:.0f}s"
        )
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def reset(self) -> None:
        with self.lock:
            self.pos.clear()
            self.trades = 0
            self.desks_done = 0

    def close(self) -> None:
        if self.drawn:
            with self.lock:
                self.stream.write("\r" + " " * 79 + "\r")
                self.stream.flush()


@dataclasses.dataclass
class DeskRead:
    """What reading one desk feed produced."""

    source: FeedSource
    batch: Any  # TradeBatch (None once merged into the run's batch)
    quarantine: Any  # surv_kernel.ingest.Quarantine: kept records + exact counts
    seconds: float


def read_desk(
    source: FeedSource,
    *,
    chunk_size: int,
    dictionaries: Any,
    progress: Progress | None = None,
) -> DeskRead:
    """Stream one desk feed into columns with ``iter_feed`` (``chunk_size``
    bytes at a time).

    A desk is all or nothing: if its feed fails half way, nothing of it is
    analysed (a partly read desk would pass for a quiet afternoon).
    """
    from .batch import TradeBatch
    from .ingest import Quarantine, iter_feed

    desk = source.desk
    batches = []
    quarantine = Quarantine()
    t0 = time.perf_counter()
    with open(source.path, "rb") as f:
        for batch, q in iter_feed(f, chunk_size, desk=desk, dictionaries=dictionaries):
            if len(batch):
                batches.append(batch)
            quarantine.extend(q)
            if progress is not None:
                progress.update(desk, f.tell(), len(batch))
    merged = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
    if progress is not None:
        progress.update(desk, source.size, 0, done=True)
    return DeskRead(source, merged, quarantine, time.perf_counter() - t0)


def merge_desks(reads: Sequence[DeskRead]) -> Any:
    """One TradeBatch from desk batches that have *different* Dictionaries
    (history files read independently): every row re-coded into one shared
    :class:`~surv_kernel.batch.Dictionaries`, in the order given."""
    import numpy as np

    from . import dtypes
    from .batch import Dictionaries, TradeBatch

    shared = Dictionaries()
    parts = []
    for read in reads:
        b = read.batch
        recoded = {}
        for name in ("trader", "asset_class", "currency", "desk"):
            local = getattr(b.dictionaries, name)
            target = getattr(shared, name)
            mapping = np.fromiter(
                (target.code(v) for v in local.values), dtype=dtypes.CODE, count=len(local)
            )
            codes = getattr(b, name)
            recoded[name] = mapping[codes] if len(codes) else codes
        parts.append(
            TradeBatch(
                timestamp_ns=b.timestamp_ns,
                notional_usd=b.notional_usd,
                notional=b.notional,
                surveillance_required=b.surveillance_required,
                trade_id=b.trade_id,
                dictionaries=shared,
                **recoded,
            )
        )
    return TradeBatch.concat(parts) if parts else TradeBatch.empty(shared)


@dataclasses.dataclass
class DeskFailure:
    desk: str
    path: Path
    kind: str  # desks.DeskOutcome.kind: bad_feed, timeout, error, ...
    error: BaseException

    def line(self) -> str:
        head = f"desk {self.desk!r} ({self.path})"
        if isinstance(self.error, OSError):
            return f"{head}: cannot read it: {self.error.strerror or _one_line(self.error)}"
        what = {
            "bad_feed": "not a readable feed",
            "timeout": "timed out",
            "feed_unavailable": "unavailable",
        }.get(self.kind)
        if what is None:
            # not the feed's fault: a bug, say so rather than blame the data
            return (
                f"{head}: internal error {type(self.error).__name__}: {_one_line(self.error)} "
                "(a bug; rerun with --debug for the traceback)"
            )
        return f"{head}: {what}: {_one_line(self.error)}"


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def read_desks(
    sources: Sequence[FeedSource],
    *,
    chunk_size: int,
    workers: int | None,
    deadline_s: float | None,
    progress: Progress | None,
    shared: bool = True,
) -> tuple[list[DeskRead], list[DeskFailure], Any]:
    """Read every desk on the bounded desk pool.

    Returns the healthy reads in the order of ``sources``, the failures, and
    the run's Dictionaries. With ``shared`` (a run: one feed per desk) every
    desk ingests into one Dictionaries, so ingest quarantines a trade id seen
    on another desk as ``duplicate_trade_id``. Which copy counts as "first"
    would then depend on thread timing, so when any duplicate turns up the
    desks are read again one at a time in the order given: the result never
    depends on the threads. Without ``shared`` (history: several days per
    desk, ids may repeat across days) each file has its own Dictionaries and
    the batches are re-coded by :func:`merge_desks`.
    """
    from .batch import Dictionaries
    from .desks import process_all_desks
    from .observability import MetricsRegistry, metrics

    # the pool's ids (and metric labels) are the desk names, or the paths when
    # a desk has several files (history days)
    unique = len({s.desk for s in sources}) == len(sources)
    by_id = {(s.desk if unique else str(s.path)): s for s in sources}

    def attempt(n_workers: int | None, registry: Any) -> tuple[Any, dict[str, DeskRead], Any]:
        run_dictionaries = Dictionaries() if shared else None
        reads: dict[str, DeskRead] = {}

        def analyze(key: str) -> list[dict[str, Any]]:
            d = run_dictionaries if run_dictionaries is not None else Dictionaries()
            reads[key] = read_desk(
                by_id[key], chunk_size=chunk_size, dictionaries=d, progress=progress
            )
            # process_all_desks wants each desk's alert list; alerts come after
            # the merge, so the desk's result is kept in `reads` and this is "ok"
            return []

        report = process_all_desks(
            list(by_id),
            analyze=analyze,
            max_workers=n_workers,
            deadline_s=deadline_s,
            report=True,
            registry=registry,
        )
        return report, reads, run_dictionaries

    report, reads, dictionaries = attempt(workers, metrics)
    parallel = len(by_id) > 1 and workers != 1
    if (
        shared
        and parallel
        and any(r.quarantine.counts.get("duplicate_trade_id") for r in reads.values())
    ):
        log.info(
            "duplicate trade ids found: reading the desks again one at a time, in the order "
            "given, so which copy is kept does not depend on thread timing",
            extra={"event": "reread_sequential"},
        )
        if progress is not None:
            progress.reset()
        # the pool's own metrics were counted by the first pass
        report, reads, dictionaries = attempt(1, MetricsRegistry())
    failures = [
        DeskFailure(by_id[o.desk_id].desk, by_id[o.desk_id].path, o.kind, o.error)
        for o in report.outcomes
        if not o.ok
    ]
    ok = [reads[o.desk_id] for o in report.outcomes if o.ok]
    for read in ok:
        desk = str(read.source.desk)
        metrics.histogram("surv_decode_seconds", desk=desk).observe(read.seconds)
        metrics.counter("surv_trades_decoded_total", desk=desk).inc(len(read.batch))
        for reason, count in read.quarantine.counts.items():
            metrics.counter("surv_records_quarantined_total", desk=desk, reason=reason).inc(count)
    return ok, failures, dictionaries


# -- the pipeline -------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    """Everything one pipeline run produced, for the outputs and the report."""

    sources: list[FeedSource]
    reads: list[DeskRead]
    failures: list[DeskFailure]
    batch: Any  # the merged TradeBatch
    detection: Any  # model.Detection
    config: Any  # model.DetectionConfig
    baselines_path: str | None
    stages: dict[str, float]  # stage -> seconds
    t_start: float  # perf_counter when the first feed was opened

    @property
    def quarantine(self) -> list[Any]:
        """The quarantined records kept (ingest keeps up to 100,000 per desk)."""
        return [r for read in self.reads for r in read.quarantine]

    @property
    def quarantine_counts(self) -> Counter[str]:
        """Every quarantined record by reason (exact, kept or not)."""
        total: Counter[str] = Counter()
        for read in self.reads:
            total.update(read.quarantine.counts)
        return total

    @property
    def n_bytes(self) -> int:
        return sum(s.size for s in self.sources)


def run_pipeline(
    sources: Sequence[FeedSource],
    config: Any,
    baselines: Any = None,
    *,
    baselines_path: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    workers: int | None = None,
    deadline_s: float | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """ingest (desk pool) -> merge -> detect."""
    from .model import detect

    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    from .batch import TradeBatch

    reads, failures, dictionaries = read_desks(
        sources, chunk_size=chunk_size, workers=workers, deadline_s=deadline_s, progress=progress
    )
    if progress is not None:
        progress.close()
    t1 = time.perf_counter()
    stages["ingest"] = t1 - t_start
    # desks in the order given; they share the run's dictionaries
    batches = [r.batch for r in reads if len(r.batch)]
    batch = TradeBatch.concat(batches) if batches else TradeBatch.empty(dictionaries)
    for read in reads:
        read.batch = None  # the run's batch holds the rows now; free the copies
    t2 = time.perf_counter()
    stages["merge"] = t2 - t1
    detection = detect(batch, config, baselines)
    t3 = time.perf_counter()
    stages["detect"] = t3 - t2
    from .observability import metrics

    metrics.histogram("surv_detect_seconds", desk="all").observe(t3 - t2)
    return RunResult(
        list(sources),
        reads,
        failures,
        batch,
        detection,
        config,
        baselines_path,
        stages,
        t_start,
    )


def alert_desks(result: RunResult) -> list[list[str]]:
    """For each alert, the desks that booked its peak window's trades (sorted)."""
    import numpy as np

    alerts = result.detection.alerts
    wanted = {t for a in alerts for t in a.trades}
    if not wanted:
        return [[] for _ in alerts]
    batch = result.batch
    desk_names = batch.dictionaries.desk
    ids = batch.trade_id
    mask = np.fromiter((t in wanted for t in ids), dtype=bool, count=len(ids))
    rows = np.flatnonzero(mask)
    desk_of = dict(zip(ids[rows].tolist(), desk_names.decode(batch.desk[rows]), strict=True))
    return [sorted({desk_of[t] for t in a.trades if t in desk_of}) for a in alerts]


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _encoder() -> Any:
    import msgspec

    return msgspec.json.Encoder(enc_hook=_json_default)


def write_alerts(result: RunResult, out: IO[bytes]) -> list[dict[str, Any]]:
    """Alerts as JSON lines (``Alert.to_dict()`` plus ``desks``); returns the dicts."""
    enc = _encoder()
    dicts = []
    for alert, desks in zip(result.detection.alerts, alert_desks(result), strict=True):
        d = alert.to_dict()
        d.setdefault("desks", desks)
        dicts.append(d)
        out.write(enc.encode(d) + b"\n")
    out.flush()
    return dicts


def write_quarantine(records: Sequence[Any], path: Path) -> None:
    enc = _encoder()
    import msgspec

    with _atomic_open(path) as f:
        for r in records:
            f.write(enc.encode(msgspec.to_builtins(r)) + b"\n")


def write_suppressed(items: Sequence[Any], path: Path) -> None:
    """Suppressed episodes as JSON lines, with the explanation's sentence."""
    import msgspec

    enc = _encoder()
    with _atomic_open(path) as f:
        for item in items:
            d = msgspec.to_builtins(item)
            d["explanation"]["text"] = item.explanation.describe()
            f.write(enc.encode(d) + b"\n")


@contextlib.contextmanager
def _atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Write to ``path.tmp`` and rename: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CliError(EXIT_NO_INPUT, f"cannot write {path}: {exc.strerror or exc}") from exc


def _make_out_dir(path: str) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(EXIT_USAGE, f"--out {path} exists and is not a directory") from None
    except OSError as exc:
        raise CliError(
            EXIT_NO_INPUT, f"cannot create output directory {path}: {exc.strerror}"
        ) from None
    return p


def _config(args: argparse.Namespace) -> Any:
    from .model import DetectionConfig

    try:
        return DetectionConfig(
            window_minutes=args.window_minutes,
            threshold_multiplier=args.threshold_multiplier,
            policy=args.policy,
        )
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None


def _load_baselines(path: str, config: Any) -> Any:
    import msgspec

    from .model import Baselines

    p = Path(path)
    if not p.is_file():
        raise CliError(EXIT_NO_INPUT, f"baselines file not found: {path}")
    try:
        baselines = Baselines.load(p)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CliError(
            EXIT_BAD_DATA,
            f"{path} is not a baselines file ({_one_line(exc)}); make one with "
            f"'{PROG} calibrate HISTORY... --out {p.name}'",
        ) from None
    except ValueError as exc:
        raise CliError(EXIT_BAD_DATA, f"{path}: {_one_line(exc)}") from None
    except OSError as exc:
        raise CliError(
            EXIT_NO_INPUT, f"cannot read baselines file {path}: {exc.strerror}"
        ) from None
    if not math.isclose(baselines.window_minutes, config.window_minutes):
        raise CliError(
            EXIT_BAD_DATA,
            f"{path} was calibrated with {baselines.window_minutes:g}-minute windows but this run "
            f"uses --window-minutes {config.window_minutes:g}; recalibrate or pass "
            f"--window-minutes {baselines.window_minutes:g}",
        )
    return baselines


# -- summaries ----------------------------------------------------------------------------


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _counts(items: Sequence[Any], key: Any) -> str:
    c = Counter(key(i) for i in items)
    return ", ".join(f"{k} {v:,}" for k, v in c.most_common())


def trade_to_alert_lag(result: RunResult, emitted_at: float) -> list[float] | None:
    """Seconds from each alert's last trade to ``emitted_at`` (Unix time), or
    None when the data is a replayed old day (its newest trade is more than a
    day before now), where the figure would only measure the data's age."""
    batch = result.batch
    if len(batch) == 0 or not result.detection.alerts:
        return None
    newest = float(batch.timestamp_ns.max()) / 1e9
    if emitted_at - newest > 86_400:
        return None
    return [emitted_at - a.end_ns / 1e9 for a in result.detection.alerts]


def summary_dict(
    result: RunResult, *, lag_s: float, outputs: dict[str, str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run summary as plain data (summary.json, the report, the text form)."""
    det = result.detection
    quarantine = result.quarantine
    counts = result.quarantine_counts
    live_lag = trade_to_alert_lag(result, time.time())
    out: dict[str, Any] = {
        "desks": len(result.sources),
        "desks_ok": [r.source.desk for r in result.reads],
        "desks_failed": [
            {"desk": f.desk, "path": str(f.path), "kind": f.kind, "error": _one_line(f.error)}
            for f in result.failures
        ],
        "bytes": result.n_bytes,
        "trades": len(result.batch),
        "quarantined": sum(counts.values()),
        "quarantined_by_reason": dict(counts.most_common()),
        "quarantine_records_written": len(quarantine),
        "alerts": len(det.alerts),
        "suppressed": len(det.suppressed),
        "suppressed_by_reason": dict(
            Counter(s.reason.split(":", 1)[0] for s in det.suppressed).most_common()
        ),
        "floor_episodes": det.n_floor_episodes,
        "config": {
            "window_minutes": result.config.window_minutes,
            "threshold_multiplier": result.config.threshold_multiplier,
            "policy": result.config.policy,
            "baselines": result.baselines_path or "from the day itself",
        },
        "stages_s": dict(result.stages),
        "lag_s": lag_s,
        "trade_to_alert_lag_s": None
        if live_lag is None
        else {"p50": _quantile(live_lag, 0.5), "max": max(live_lag)},
        "outputs": outputs,
    }
    if extra:
        out.update(extra)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The human summary (stderr for ``run``, stdout for ``demo``)."""
    n_failed = len(s["desks_failed"])
    lines = [
        f"desks        {s['desks']} ({s['desks'] - n_failed} ok"
        + (f", {n_failed} FAILED)" if n_failed else ")"),
        f"trades       {s['trades']:,} from {_fmt_bytes(s['bytes'])} of feeds",
        f"quarantined  {s['quarantined']:,}"
        + (
            " (" + ", ".join(f"{k} {v:,}" for k, v in s["quarantined_by_reason"].items()) + ")"
            if s["quarantined"]
            else ""
        )
        + (f" -> {s['outputs']['quarantine']}" if "quarantine" in s["outputs"] else "")
        + (
            f" (the first {s['quarantine_records_written']:,} records; the rest are counted)"
            if s.get("quarantine_records_written", s["quarantined"]) < s["quarantined"]
            else ""
        ),
        f"alerts       {s['alerts']:,}"
        + (f" -> {s['outputs']['alerts']}" if "alerts" in s["outputs"] else ""),
        f"suppressed   {s['suppressed']:,} floor-passing episodes within the traders' baselines"
        + (f" -> {s['outputs']['suppressed']}" if "suppressed" in s["outputs"] else ""),
        f"lag          {_fmt_s(s['lag_s'])} from opening the first feed to the last alert written",
    ]
    live = s.get("trade_to_alert_lag_s")
    if live:
        lines.append(
            f"             trade -> alert: p50 {_fmt_s(live['p50'])}, max {_fmt_s(live['max'])}"
        )
    lines.append("time         " + " | ".join(f"{k} {_fmt_s(v)}" for k, v in s["stages_s"].items()))
    cfg = s["config"]
    lines.append(
        f"config       window {cfg['window_minutes']:g} min, floor x {cfg['threshold_multiplier']:g}, "
        f"policy {cfg['policy']}, baselines {cfg['baselines']}"
    )
    ev = s.get("evaluation")
    if ev:
        lines.append(
            f"vs labels    precision {_fmt_ratio(ev['precision'])}, recall {_fmt_ratio(ev['recall'])} "
            f"({ev['detected']} of {ev['n_episodes']} injected episodes found, "
            f"{ev['true_positives']} of {ev['n_alerts']} alerts on injected trades, "
            f"{_fmt_num(ev['alerts_per_detected_episode'])} alerts per found episode)"
        )
    if "report" in s["outputs"]:
        lines.append(f"report       {s['outputs']['report']}")
    for f in s["desks_failed"]:
        lines.append(f"FAILED       desk {f['desk']!r} ({f['path']}): {f['kind']}: {f['error']}")
    return lines


def _fmt_ratio(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _fmt_num(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _failure_error(result: RunResult) -> CliError:
    n = len(result.failures)
    ok = len(result.reads)
    first = result.failures[0].line()
    if ok == 0:
        more = f" (and {n - 1} more desk(s))" if n > 1 else ""
        return CliError(EXIT_FEED_FAILED, f"{first}{more}; no desk could be analysed")
    more = f" (and {n - 1} more desk(s), see the summary)" if n > 1 else ""
    return CliError(
        EXIT_FEED_FAILED,
        f"{first}{more}; the {ok} other desk(s) were analysed and their alerts written",
    )


def _write_report(
    path: Path, result: RunResult, summary: dict[str, Any], max_charts: int, title: str
) -> float:
    from . import report

    t0 = time.perf_counter()
    try:
        report.write_report(
            path,
            batch=result.batch,
            alerts=result.detection.alerts,
            suppressed=result.detection.suppressed,
            config=result.config,
            summary=summary,
            max_charts=max_charts,
            title=title,
        )
    except OSError as exc:
        raise CliError(
            EXIT_NO_INPUT, f"cannot write report {path}: {exc.strerror or exc}"
        ) from None
    return time.perf_counter() - t0


# -- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    sources = resolve_feeds(args.feeds)
    config = _config(args)
    baselines = _load_baselines(args.baselines, config) if args.baselines else None
    out_dir = _make_out_dir(args.out) if args.out else None
    if args.quarantine:
        quarantine_path = Path(args.quarantine)
    else:
        quarantine_path = (out_dir or Path(".")) / "quarantine.jsonl"
    progress = Progress(sum(s.size for s in sources), len(sources), args.progress)
    result = run_pipeline(
        sources,
        config,
        baselines,
        baselines_path=args.baselines,
        chunk_size=args.chunk_size,
        workers=args.workers,
        deadline_s=args.desk_timeout,
        progress=progress,
    )
    t0 = time.perf_counter()
    outputs: dict[str, str] = {}
    if out_dir is not None:
        alerts_path = out_dir / "alerts.jsonl"
        with _atomic_open(alerts_path) as f:
            alert_dicts = write_alerts(result, f)
        outputs["alerts"] = str(alerts_path)
    else:
        alert_dicts = write_alerts(result, sys.stdout.buffer)
        outputs["alerts"] = "stdout"
    emitted = time.perf_counter()
    write_quarantine(result.quarantine, quarantine_path)
    outputs["quarantine"] = str(quarantine_path)
    if out_dir is not None:
        write_suppressed(result.detection.suppressed, out_dir / "suppressed.jsonl")
        outputs["suppressed"] = str(out_dir / "suppressed.jsonl")
    result.stages["write"] = time.perf_counter() - t0
    lag = emitted - result.t_start
    _observe_live_lag(result, alert_dicts)
    if args.report:
        outputs["report"] = args.report
    summary = summary_dict(result, lag_s=lag, outputs=outputs)
    if args.report:
        result.stages["report"] = _write_report(
            Path(args.report), result, summary, args.max_charts, "surv-kernel run"
        )
        summary["stages_s"] = dict(result.stages)
    if out_dir is not None:
        _write_summary_json(out_dir / "summary.json", _json_safe(summary))
    if result.reads or not result.failures:
        # (when every desk failed there is nothing to summarise: the error
        # line below says it all)
        for line in summary_lines(summary):
            print(line, file=sys.stderr)
        sys.stderr.flush()
    if result.failures:
        raise _failure_error(result)
    return EXIT_OK


def _observe_live_lag(result: RunResult, alert_dicts: list[dict[str, Any]]) -> None:
    from .observability import metrics

    lags = trade_to_alert_lag(result, time.time())
    if lags is None:
        return
    for d, lag in zip(alert_dicts, lags, strict=True):
        desk = d["desks"][-1] if d.get("desks") else "unknown"
        metrics.histogram("surv_alert_lag_seconds", desk=desk).observe(max(lag, 0.0))


def _write_summary_json(path: Path, summary: dict[str, Any]) -> None:
    with _atomic_open(path) as f:
        f.write(json.dumps(summary, indent=2, default=str, allow_nan=False).encode() + b"\n")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .model import Baselines, calibrate

    sources = resolve_feeds(args.history, what="history", unique_desks=False)
    config = _config(args)
    try:
        Baselines._format_of(args.out)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"--out: {exc}") from None
    t0 = time.perf_counter()
    reads, failures, _ = read_desks(
        sources,
        chunk_size=args.chunk_size,
        workers=args.workers,
        deadline_s=args.desk_timeout,
        progress=None,
        shared=False,
    )
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
        raise CliError(EXIT_NO_INPUT, f"cannot write {args.out}: {exc.strerror or exc}") from None
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
    print(f"time         read {_fmt_s(t1 - t0)} | calibrate {_fmt_s(t2 - t1)}", file=sys.stderr)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .scenario import evaluate_alerts, generate_day

    config = _config(args)
    out_dir = _make_out_dir(args.out)
    feeds_dir = out_dir / "feeds"
    feeds_dir.mkdir(exist_ok=True)
    for stale in feeds_dir.iterdir():
        if stale.is_file() and stale.suffix in FEED_SUFFIXES:
            stale.unlink()
    stages: dict[str, float] = {}
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
        path = feeds_dir / f"{_slug(desk)}.json"
        path.write_bytes(data)
        sources.append(FeedSource(path.stem, path, len(data)))
    _write_labels(out_dir / "labels.json", scenario)
    stages["generate"] = time.perf_counter() - t0

    result = run_pipeline(
        sources,
        config,
        None,
        chunk_size=args.chunk_size,
        workers=args.workers,
        deadline_s=args.desk_timeout,
        progress=None,
    )
    t = time.perf_counter()
    alerts_path = out_dir / "alerts.jsonl"
    with _atomic_open(alerts_path) as f:
        write_alerts(result, f)
    emitted = time.perf_counter()
    write_quarantine(result.quarantine, out_dir / "quarantine.jsonl")
    write_suppressed(result.detection.suppressed, out_dir / "suppressed.jsonl")
    result.stages["write"] = time.perf_counter() - t
    lag = emitted - result.t_start

    t = time.perf_counter()
    ev = evaluate_alerts(result.detection.alerts, scenario)
    stages_all = {**stages, **result.stages, "evaluate": time.perf_counter() - t}
    result.stages = stages_all
    import msgspec

    outputs = {
        "feeds": str(feeds_dir),
        "alerts": str(alerts_path),
        "quarantine": str(out_dir / "quarantine.jsonl"),
        "suppressed": str(out_dir / "suppressed.jsonl"),
        "labels": str(out_dir / "labels.json"),
        "report": str(out_dir / "report.html"),
    }
    summary = summary_dict(
        result,
        lag_s=lag,
        outputs=outputs,
        extra={
            "scenario": {
                "seed": args.seed,
                "traders": len(scenario.traders),
                "episodes": len(scenario.episodes),
                "scale": args.scale,
            },
            "evaluation": msgspec.to_builtins(ev),
        },
    )
    result.stages["report"] = _write_report(
        out_dir / "report.html",
        result,
        summary,
        args.max_charts,
        f"surv-kernel demo (seed {args.seed})",
    )
    summary["stages_s"] = dict(result.stages)
    summary["total_s"] = time.perf_counter() - t0
    _write_summary_json(out_dir / "summary.json", _json_safe(summary))
    print(
        f"surv-kernel demo: a synthetic six-desk day (seed {args.seed}, {len(scenario.traders)} traders, "
        f"{len(scenario.episodes)} injected abuse episodes) through ingest -> detect -> report"
    )
    for line in summary_lines(summary):
        print(line)
    print(f"total        {_fmt_s(summary['total_s'])}")
    if result.failures:
        raise _failure_error(result)
    return EXIT_OK


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, recursively (summary.json is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _write_labels(path: Path, scenario: Any) -> None:
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
    with _atomic_open(path) as f:
        f.write(json.dumps(rows, indent=1).encode() + b"\n")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .model import detect
    from .received_rule import received_rule
    from .scenario import MIXES, evaluate_alerts, generate_day

    if args.mix not in MIXES:
        raise CliError(EXIT_USAGE, f"unknown --mix {args.mix!r}; choose one of: {', '.join(MIXES)}")
    config = _config(args)
    rows = []
    for seed in args.seeds:
        knobs: dict[str, Any] = {} if args.traders is None else {"n_traders": args.traders}
        sc = generate_day(
            seed,
            trader_mix=MIXES[args.mix],
            window_minutes=config.window_minutes,
            threshold_multiplier=config.threshold_multiplier,
            **knobs,
        )
        n_traders = len(sc.traders)
        t = time.perf_counter()
        model = evaluate_alerts(detect(sc.batch, config).alerts, sc)
        t_model = time.perf_counter() - t
        old, t_old = None, None
        if not args.no_received:
            t = time.perf_counter()
            old = evaluate_alerts(
                received_rule(sc.trades(), config.window_minutes, config.threshold_multiplier), sc
            )
            t_old = time.perf_counter() - t
        rows.append((seed, len(sc), len(sc.episodes), model, t_model, old, t_old))
        if not args.json:
            if len(rows) == 1:
                print(_eval_header(args, config, n_traders))
            print(_eval_row(str(seed), len(sc), len(sc.episodes), model, t_model, old, t_old))
            sys.stdout.flush()
    if args.json:
        import msgspec

        payload = [
            {
                "seed": seed,
                "trades": n,
                "episodes": eps,
                "model": msgspec.to_builtins(m),
                "model_seconds": tm,
                "received": None if o is None else msgspec.to_builtins(o),
                "received_seconds": to,
            }
            for seed, n, eps, m, tm, o, to in rows
        ]
        print(json.dumps(_json_safe(payload), indent=1))
        return EXIT_OK
    print(_eval_mean_row(rows))
    print(
        "prec = alerts naming injected trades / alerts; recall = injected episodes found / "
        "injected; al/ep = true-positive alerts per found episode (1 is ideal; the received "
        "rule reports every pair twice)"
    )
    return EXIT_OK


def _eval_header(args: argparse.Namespace, config: Any, n_traders: int) -> str:
    return (
        f"mix {args.mix}, {n_traders} traders/day, window {config.window_minutes:g} min, "
        f"floor x {config.threshold_multiplier:g}, policy {config.policy}\n"
        f"{'seed':>5} {'trades':>7} {'eps':>4} | {'model':^38} | {'received rule':^38}\n"
        f"{'':>5} {'':>7} {'':>4} | {'prec':>6} {'recall':>6} {'al/ep':>6} {'alerts':>9} "
        f"{'time':>7} | {'prec':>6} {'recall':>6} {'al/ep':>6} {'alerts':>9} {'time':>7}"
    )


def _eval_cells(r: Any, t: float | None) -> str:
    if r is None:
        return f"{'-':>6} {'-':>6} {'-':>6} {'-':>9} {'-':>7}"
    return (
        f"{_fmt_ratio(r.precision):>6} {_fmt_ratio(r.recall):>6} "
        f"{_fmt_num(r.alerts_per_detected_episode):>6} {r.n_alerts:>9,} {_fmt_s(t):>7}"
    )


def _eval_row(label: str, n: int, eps: int, model: Any, tm: float, old: Any, to: Any) -> str:
    return f"{label:>5} {n:>7,} {eps:>4} | {_eval_cells(model, tm)} | {_eval_cells(old, to)}"


def _eval_mean_row(rows: list[Any]) -> str:
    """All seeds pooled: precision over every alert, recall over every
    injected episode, alerts per found episode over every found episode."""

    def cells(results: list[Any], times: list[Any]) -> str:
        if any(r is None for r in results):
            return _eval_cells(None, None)
        n_alerts = sum(r.n_alerts for r in results)
        tp = sum(r.true_positives for r in results)
        eps = sum(r.n_episodes for r in results)
        found = sum(r.detected for r in results)
        hits = sum(r.alerts_per_detected_episode * r.detected for r in results if r.detected)
        return (
            f"{_fmt_ratio(tp / n_alerts if n_alerts else math.nan):>6} "
            f"{_fmt_ratio(found / eps if eps else math.nan):>6} "
            f"{_fmt_num(hits / found if found else math.nan):>6} "
            f"{n_alerts:>9,} {_fmt_s(sum(times)):>7}"
        )

    n = sum(r[1] for r in rows)
    eps = sum(r[2] for r in rows)
    return (
        f"{'all':>5} {n:>7,} {eps:>4} | {cells([r[3] for r in rows], [r[4] for r in rows])} | "
        f"{cells([r[5] for r in rows], [r[6] for r in rows])}"
    )
