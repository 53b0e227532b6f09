"""What every subcommand shares: exit statuses, argument types, the common
option groups, the config and baselines loaders, the summary lines and the
terminal progress line."""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES",
    "EXIT_FEED_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NO_INPUT",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "Progress",
    "config_from_args",
    "load_baselines",
    "option_groups",
    "summary_lines",
]

PROG = "surv-kernel"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_INPUT = 3
EXIT_FEED_FAILED = 4
EXIT_BAD_DATA = 5
EXIT_OUTPUT = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_BROKEN_PIPE = 141

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: rerun with --debug for the traceback)",
    EXIT_USAGE: "usage: unknown option, bad option value, conflicting arguments, a case step "
    "the alert's status does not allow",
    EXIT_NO_INPUT: "input not found: missing file or directory, directory without feed files, "
    "unreadable file, no such alert store or alert",
    EXIT_FEED_FAILED: "a desk feed failed (not JSON, unreadable, timed out); the other desks' "
    "alerts were still written and the failed desks are named",
    EXIT_BAD_DATA: "a baselines or history file is unusable; an alert store of another schema "
    "version or failing 'store check'",
    EXIT_OUTPUT: "an output (alerts, summary, report, metrics, baselines, the alert store) could "
    "not be written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); this run's outputs were not published",
    EXIT_TERMINATED: "terminated (SIGTERM); this run's outputs were not published",
    EXIT_BROKEN_PIPE: "stdout was closed early (e.g. '| head'): the output is incomplete",
}

DEFAULT_CHUNK_BYTES = 8 << 20
DEFAULT_MAX_CHARTS = 50


class CliError(Exception):
    """An error a person can act on: printed as one line, exit status ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- argument parsing ---------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to get help) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def whole_number_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int = whole_number_at_least(1)
nonnegative_int = whole_number_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def byte_size(text: str) -> int:
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


def seed_list(text: str) -> list[int]:
    """``3`` or ``0-4`` or ``1,5,9`` (seeds are >= 0)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
            raise argparse.ArgumentTypeError(f"expected seeds >= 0 like 0-4 or 1,5,9, got {text!r}")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return out


def exit_code_epilog() -> str:
    import textwrap

    rows = "\n".join(
        textwrap.fill(f"  {code:>3}  {text}", width=79, subsequent_indent=" " * 7)
        for code, text in EXIT_CODES.items()
    )
    return f"exit status:\n{rows}"


class Formatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the exit-status table as laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("exit status:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def option_groups() -> tuple[argparse.ArgumentParser, ...]:
    """The parent parsers of the subcommands: (logging and diagnostics,
    detection, reading feeds)."""
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
    g.add_argument(
        "--reference",
        metavar="PATH",
        help="reference data (FX rates by date, floors) from this directory instead of the "
        "embedded defaults (default: SURV_REFERENCE, else the embedded tables); see "
        "'surv-kernel reference check'",
    )

    model = argparse.ArgumentParser(add_help=False)
    m = model.add_argument_group("detection")
    m.add_argument(
        "--window-minutes",
        type=positive_float,
        default=30.0,
        metavar="MIN",
        help="rolling window length in minutes (default 30)",
    )
    m.add_argument(
        "--threshold-multiplier",
        type=positive_float,
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
    m.add_argument(
        "--detectors",
        default="volume_burst",
        metavar="NAMES",
        help="comma-separated typologies to run: volume_burst (default), structuring",
    )
    m.add_argument(
        "--time-of-day",
        action="store_true",
        help="scale each window's expected value by its desk's activity at that time of day "
        "(batch runs only for now; see README 'Alert quality')",
    )

    pool = argparse.ArgumentParser(add_help=False)
    p = pool.add_argument_group("reading feeds")
    p.add_argument(
        "--chunk-size",
        type=byte_size,
        default=DEFAULT_CHUNK_BYTES,
        metavar="BYTES",
        help="bytes of feed read and decoded at a time, e.g. 512k, 8M (default 8M); memory "
        "per desk in flight follows it",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="desks read at the same time (default: SURV_MAX_WORKERS or min(desks, cores + 4))",
    )
    p.add_argument(
        "--desk-timeout",
        type=positive_float,
        default=None,
        metavar="S",
        help="seconds one desk may take (default: SURV_DESK_DEADLINE_S or 120)",
    )
    return common, model, pool


def store_option(parser: argparse.ArgumentParser) -> None:
    """``--store URL`` and ``--user NAME`` of the commands that write runs."""
    parser.add_argument(
        "--store",
        metavar="URL",
        help="also record the run (alerts, suppressed episodes, quarantine summary, per-desk "
        "outcomes) in this alert store: sqlite:///path.db or postgresql://user@host/db; "
        "work it with 'surv-kernel alerts'. Default with --out: sqlite:///OUT/alerts.db; "
        "'none': no store",
    )
    parser.add_argument(
        "--user", metavar="NAME", help="who ran it, in the store's records (default: $USER)"
    )


def store_url(args: argparse.Namespace, out_dir: Any) -> str | None:
    """The run's alert store: ``--store``, else a SQLite file in ``--out``
    (``OUT/alerts.db``, beside the published run sets, kept across runs);
    ``--store none`` or no ``--out``: none."""
    if args.store is not None:
        return None if args.store.strip().lower() == "none" else args.store
    if out_dir is None:
        return None
    return f"sqlite:///{Path(out_dir).resolve() / 'alerts.db'}"


def subcommand(
    sub: Any, name: str, parents: list[argparse.ArgumentParser], help: str, description: str
) -> argparse.ArgumentParser:
    """One subcommand's parser, with the exit-status table in its help."""
    return sub.add_parser(
        name,
        parents=parents,
        help=help,
        description=description,
        epilog=exit_code_epilog(),
        formatter_class=Formatter,
    )


# -- the model's inputs -------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> Any:
    from ..model import DetectionConfig

    try:
        return DetectionConfig(
            window_minutes=args.window_minutes,
            threshold_multiplier=args.threshold_multiplier,
            policy=args.policy,
            time_of_day=bool(getattr(args, "time_of_day", False)),
            detectors=tuple(
                x.strip()
                for x in getattr(args, "detectors", "volume_burst").split(",")
                if x.strip()
            ),
        )
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None


def load_baselines(path: str, config: Any) -> Any:
    import msgspec

    from ..model import Baselines

    p = Path(path)
    if not p.is_file():
        raise CliError(EXIT_NO_INPUT, f"baselines file not found: {path}")
    try:
        baselines = Baselines.load(p)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        # DataError (a ValueError) names the file and what is wrong with it
        raise CliError(
            EXIT_BAD_DATA,
            f"{one_line(exc)}; make baselines with '{PROG} calibrate HISTORY... --out {p.name}'",
        ) from None
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


def one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# -- printing -----------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The human summary (stderr for ``run``, stdout for ``demo``)."""
    n_failed = len(s["desks_failed"])
    n_partial = len(s.get("desks_partial", ()))
    lines = [
        f"desks        {s['desks']} ({s['desks'] - n_failed - n_partial} ok"
        + (f", {n_partial} PARTIAL" if n_partial else "")
        + (f", {n_failed} FAILED)" if n_failed else ")"),
        f"trades       {s['trades']:,} from {fmt_bytes(s['bytes'])} of feeds",
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
        f"lag          {fmt_s(s['lag_s'])} from opening the first feed to the last alert written",
    ]
    live = s.get("trade_to_alert_lag_s")
    if live:
        lines.append(
            f"             trade -> alert: p50 {fmt_s(live['p50'])}, max {fmt_s(live['max'])}"
        )
    lines.append("time         " + " | ".join(f"{k} {fmt_s(v)}" for k, v in s["stages_s"].items()))
    cfg = s["config"]
    lines.append(
        f"config       window {cfg['window_minutes']:g} min, floor x {cfg['threshold_multiplier']:g}, "
        f"policy {cfg['policy']}, baselines {cfg['baselines']}"
        + (f", reference {cfg['reference']['version']}" if cfg.get("reference") else "")
    )
    ev = s.get("evaluation")
    if ev:
        lines.append(
            f"vs labels    precision {fmt_ratio(ev['precision'])}, recall {fmt_ratio(ev['recall'])} "
            f"({ev['detected']} of {ev['n_episodes']} injected episodes found, "
            f"{ev['true_positives']} of {ev['n_alerts']} alerts on injected trades, "
            f"{fmt_num(ev['alerts_per_detected_episode'])} alerts per found episode)"
        )
    if "report" in s["outputs"]:
        lines.append(f"report       {s['outputs']['report']}")
    if "store" in s["outputs"]:
        lines.append(f"store        {s['outputs']['store']}")
    rec = [d for d in s.get("reconciliation", ()) if d["status"] != "failed"]
    if rec:
        seen = sum(d["seen"] for d in rec)
        lines.append(
            f"reconciled   seen {seen:,} = analysed {sum(d['analysed'] for d in rec):,} + "
            f"quarantined {sum(d['quarantined'] for d in rec):,} records ({len(rec)} desk(s))"
        )
    for p in s.get("desks_partial", ()):
        lines.append(f"PARTIAL      desk {p['desk']!r}: " + "; ".join(p["reasons"]))
    for f in s["desks_failed"]:
        lines.append(f"FAILED       desk {f['desk']!r} ({f['path']}): {f['kind']}: {f['error']}")
    return lines


def fmt_ratio(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def fmt_num(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


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


def failure_error(result: Any) -> CliError:
    """Exit 4 naming the first failed or partial desk (and how many more),
    after the other desks' outputs were written."""
    n = len(result.failures) + len(result.partial)
    ok = len(result.reads) - len(result.partial)
    if result.failures:
        first = result.failures[0].line()
    else:
        p = result.partial[0]
        first = f"desk {p.desk!r} is PARTIAL (its alerts were written): " + "; ".join(p.reasons)
    if not result.reads:
        more = f" (and {n - 1} more desk(s))" if n > 1 else ""
        return CliError(EXIT_FEED_FAILED, f"{first}{more}; no desk could be analysed")
    more = f" (and {n - 1} more desk(s), see the summary)" if n > 1 else ""
    if ok == 0:
        return CliError(EXIT_FEED_FAILED, f"{first}{more}; the alerts found were written")
    return CliError(
        EXIT_FEED_FAILED,
        f"{first}{more}; the {ok} other desk(s) were analysed and their alerts written",
    )


def make_out_dir(path: str) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(EXIT_USAGE, f"--out {path} exists and is not a directory") from None
    except OSError as exc:
        raise CliError(
            EXIT_OUTPUT, f"cannot create output directory {path}: {exc.strerror}"
        ) from None
    return p
