"""The ``surv-kernel`` command (also ``python -m surv_kernel``).

Subcommands::

    surv-kernel demo --out out                 a synthetic six-desk day, end to end, with a report
    surv-kernel run FEED... [--out DIR]        desk feeds (files or directories) -> alerts
    surv-kernel calibrate HISTORY... --out baselines.json
    surv-kernel run FEED... --baselines baselines.json
    surv-kernel evaluate [--seeds 0 1 2]       received rule vs model on labelled days
    surv-kernel serve --feeds DIR --state DIR  the intraday service (RUNBOOK: "The intraday service")
    surv-kernel backtest HISTORY --from DATE --to DATE --rolling-calibration N --out DIR
                [--engine dask [--scheduler ADDRESS]]  past days (date=YYYY-MM-DD/) rerun

``run`` takes files or directories of desk feeds (``*.json``, ``*.ndjson``,
``*.jsonl``; a JSON array or one JSON object per line). The desk name is the
file stem. Each desk is read by ``surv_kernel.ingest.iter_feed`` in chunks of
``--chunk-size`` bytes (memory follows the chunk and the columns, never a
list of dicts) on the bounded desk pool of :mod:`surv_kernel.pipeline`, one
worker per desk up to ``--workers``. The desks' columns are then merged into
one batch and the detectors run once over the day (:func:`surv_kernel.pipeline.run`): a
trader's window is judged across every desk that booked it (a trader cannot
split a burst over two desks to stay under the floor) and the model's peer
baselines see every desk. A desk that fails (not JSON, unreadable) is named,
the other desks are still analysed and their alerts written, and the exit
status is 4.

Output of ``run``: alerts as JSON lines (one ``Alert.to_dict()`` per line plus
``desks``, the desks that booked the peak window's trades) on stdout, or in
``DIR/alerts.jsonl`` with ``--out DIR``, published with the run's other files
as one set (:mod:`surv_kernel.pipeline.publish`: a reader never sees files of
two runs mixed, a killed run leaves the previous set, a run that analysed no
desk publishes nothing); the quarantined records in their own
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
      not baselines, damaged, of another version, holding negative or
      non-finite values, or made with another window; a history without
      usable trades
6     an output could not be written (alerts, summary, report, metrics,
      baselines)
130   interrupted (Ctrl-C): nothing of this run was published
143   terminated (SIGTERM): nothing of this run was published
141   stdout was closed early (e.g. ``| head``): the output is incomplete
====  =====================================================================

Every error is one line on stderr, ``surv-kernel: error: ...``, saying what
to do about it; tracebacks only with ``--debug``.

The command is argparse and printing only: each subcommand is a module here
(``run``, ``calibrate``, ``demo``, ``evaluate``) with its parser builder and
its command, over :mod:`surv_kernel.pipeline`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..errors import ConfigError, DataError, InputError, OutputError, SurveillanceError
from . import backtest, calibrate, demo, evaluate, reference, run, serve
from .common import (
    EXIT_BAD_DATA,
    EXIT_BROKEN_PIPE,
    EXIT_CODES,
    EXIT_FEED_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NO_INPUT,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_TERMINATED,
    EXIT_USAGE,
    PROG,
    CliError,
    Formatter,
    Parser,
    exit_code_epilog,
    option_groups,
)

__all__ = ["EXIT_CODES", "PROG", "CliError", "build_parser", "main"]

log = logging.getLogger(__name__)

#: The package's errors, by the exit status they mean (first match wins).
ERROR_EXITS: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_USAGE),
    (InputError, EXIT_NO_INPUT),
    (DataError, EXIT_BAD_DATA),
    (OutputError, EXIT_OUTPUT),
    (SurveillanceError, EXIT_FEED_FAILED),
)


def build_parser() -> argparse.ArgumentParser:
    common, model, pool = option_groups()
    parser = Parser(
        prog=PROG,
        description="Trade surveillance: desk feeds in, explained alerts out.",
        epilog=exit_code_epilog(),
        formatter_class=Formatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in (demo, run, calibrate, backtest, evaluate, reference, serve):
        command.add_parser(sub, common, model, pool)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (temporaries removed, nothing
    half-published), then exit 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = EXIT_INTERNAL
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        _configure_logging(args)
        if getattr(args, "reference", None) and args.func is not reference.cmd_check:
            from ..reference import use_reference

            use_reference(args.reference)
        code = args.func(args)
    except SystemExit as exc:  # argparse --help / usage errors
        code = int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except CliError as exc:
        if debug:
            log.debug("error", exc_info=True)
        _error(exc.message)
        code = exc.code
    except SurveillanceError as exc:
        if debug:
            log.debug("error", exc_info=True)
        _error(" ".join(str(exc).split()))
        code = next(c for kind, c in ERROR_EXITS if isinstance(exc, kind))
    except KeyboardInterrupt:
        _error("interrupted; this run's outputs were not published (the previous ones stand)")
        code = EXIT_INTERRUPTED
    except Terminated:
        _error(
            "terminated (SIGTERM); this run's outputs were not published (the previous ones stand)"
        )
        code = EXIT_TERMINATED
    except BrokenPipeError:
        # the reader of stdout went away (e.g. `| head`): the output is
        # incomplete; point stdout at /dev/null so the interpreter's final
        # flush does not fail a second time
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _error(
            f"internal error: {type(exc).__name__}: {exc} "
            f"(this is a bug; rerun with --debug for the traceback)"
        )
        code = EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not _write_metrics_file() and code == EXIT_OK:
        code = EXIT_OUTPUT  # the run's figures were asked for and are missing
    return code


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


_METRICS_PATH: list[str] = []


def _write_metrics_file() -> bool:
    """Write --metrics at the very end, also after a failure (a failed run's
    counters are the ones an operator wants); False if it could not be written."""
    if not _METRICS_PATH:
        return True
    path = _METRICS_PATH.pop()
    from ..observability import metrics
    from ..pipeline.sinks import atomic_open

    try:
        with atomic_open(path) as f:
            f.write(metrics.render_prometheus().encode())
    except OutputError as exc:
        _error(f"cannot write metrics file: {exc}")
        return False
    return True


class _NoTracebacks(logging.Filter):
    """Drop exception tracebacks from log records (shown only with --debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _configure_logging(args: argparse.Namespace) -> None:
    from ..observability import configure_logging

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
