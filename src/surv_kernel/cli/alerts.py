"""``surv-kernel alerts ...`` (the case queue) and ``surv-kernel store ...``
(schema, integrity, retention), over :mod:`surv_kernel.store`.

Every action takes ``--store URL`` (default ``$SURV_STORE``): ``sqlite:///alerts.db``
or ``postgresql://user@host/db``. Who acted is ``--user NAME``, else ``$USER``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from .common import EXIT_BAD_DATA, EXIT_OK, EXIT_USAGE, CliError, subcommand

#: The case queue's table columns: (key, heading).
QUEUE = (
    ("alert_id", "alert id"),
    ("trading_date", "date"),
    ("desk", "desk"),
    ("trader_id", "trader"),
    ("asset_class", "asset class"),
    ("typology", "typology"),
    ("score", "score"),
    ("peak_window_sum_usd", "peak USD"),
    ("status", "status"),
    ("assignee", "assignee"),
    ("disposition", "disposition"),
)


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score 0..100, got {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"a score is 0..100, got {text}")
    return value


def _statuses(text: str) -> list[str]:
    from ..store import STATUSES

    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in STATUSES]
    if bad or not out:
        raise argparse.ArgumentTypeError(
            f"status must be one or more of {', '.join(STATUSES)} (comma-separated), got {text!r}"
        )
    return out


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="the alert store: sqlite:///path.db or postgresql://user@host/db "
        "(default: $SURV_STORE)",
    )
    p.add_argument("--user", metavar="NAME", help="who is acting (default: $USER)")


def _filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument(
        "--status", type=_statuses, help="open, under_review, escalated, closed (comma-separated)"
    )
    g.add_argument("--desk", help="the alert's home desk (the one that booked most of its peak)")
    g.add_argument("--trader", metavar="ID")
    g.add_argument("--asset-class", metavar="CLASS")
    g.add_argument("--typology", metavar="NAME", help="the detector, e.g. volume_burst")
    g.add_argument("--since", type=_date, metavar="DATE", help="trading date from (YYYY-MM-DD)")
    g.add_argument("--until", type=_date, metavar="DATE", help="trading date to, inclusive")
    g.add_argument("--min-score", type=_score, metavar="S", help="score at least S (0..100)")
    g.add_argument("--assignee", metavar="NAME")
    g.add_argument("--limit", type=int, metavar="N", help="at most N alerts")
    g.add_argument(
        "--order", choices=("score", "date"), default="score", help="highest score or newest first"
    )


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    alerts = subcommand(
        sub,
        "alerts",
        [common],
        help="the case queue: list, show, assign, close/escalate, history, export alerts",
        description="Work the alerts in the store. Status machine: open -> under_review "
        "(assign) -> closed (close --disposition false_positive|no_action|reported --reason) "
        "or escalated (escalate --reason) -> closed; reopen takes a closed case back to "
        "under_review. Every step is in the append-only audit log ('alerts history').",
    )
    what = alerts.add_subparsers(dest="action", metavar="ACTION")
    what.required = True

    ls = what.add_parser("list", help="the queue, filtered: table, JSON lines or CSV")
    _store_options(ls)
    _filters(ls)
    ls.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    ls.set_defaults(func=cmd_list)

    show = what.add_parser(
        "show", help="one alert: explanation, peak trades, case, the trader's other alerts"
    )
    _store_options(show)
    show.add_argument("alert_id", metavar="ID", help="alert id (or a unique prefix of 6+)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=cmd_show)

    assign = what.add_parser("assign", help="give the case to an analyst (open -> under_review)")
    _store_options(assign)
    assign.add_argument("alert_id", metavar="ID")
    assign.add_argument("--to", required=True, metavar="NAME")
    assign.add_argument("--reason", metavar="TEXT")
    assign.set_defaults(func=cmd_assign)

    from ..store import DISPOSITIONS

    close = what.add_parser("close", help="decide the case, with a disposition and a reason")
    _store_options(close)
    close.add_argument("alert_id", metavar="ID")
    close.add_argument("--disposition", required=True, choices=DISPOSITIONS)
    close.add_argument("--reason", required=True, metavar="TEXT")
    close.set_defaults(func=cmd_close)

    for name, text in (
        ("escalate", "escalate a case under review (same as close --disposition escalated)"),
        ("reopen", "take a closed case back to under_review"),
    ):
        p = what.add_parser(name, help=text)
        _store_options(p)
        p.add_argument("alert_id", metavar="ID")
        p.add_argument("--reason", required=True, metavar="TEXT")
        p.set_defaults(func=cmd_escalate if name == "escalate" else cmd_reopen)

    hist = what.add_parser("history", help="the alert's audit log")
    _store_options(hist)
    hist.add_argument("alert_id", metavar="ID")
    hist.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    hist.set_defaults(func=cmd_history)

    export = what.add_parser("export", help="the filtered alerts in full, as CSV or JSON lines")
    _store_options(export)
    _filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    export.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=cmd_export)

    fb = what.add_parser(
        "feedback",
        help="precision from the analysts' dispositions by typology, desk or score band; "
        "suppressed episodes later alerted",
    )
    _store_options(fb)
    fb.add_argument("--by", choices=("typology", "desk", "score_band"), default="typology")
    fb.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    fb.set_defaults(func=cmd_feedback)

    store = subcommand(
        sub,
        "store",
        [common],
        help="the alert store: check integrity, migrate the schema, prune past retention",
        description="Maintain the alert store. Retention: MAR keeps the analysis and the "
        "reasons for reporting or not for five years; prune refuses anything younger and "
        "never deletes a case that is not closed.",
    )
    act = store.add_subparsers(dest="action", metavar="ACTION")
    act.required = True
    check = act.add_parser("check", help="integrity; exit 5 on any problem")
    _store_options(check)
    check.add_argument("--quick", action="store_true", help="skip decoding every alert's content")
    check.set_defaults(func=cmd_check)
    migrate = act.add_parser("migrate", help="create the store or apply missing migrations")
    _store_options(migrate)
    migrate.set_defaults(func=cmd_migrate)
    runs = act.add_parser("runs", help="the runs recorded, oldest first")
    _store_options(runs)
    runs.set_defaults(func=cmd_runs)
    prune = act.add_parser("prune", help="delete closed cases and runs older than the retention")
    _store_options(prune)
    prune.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 5y, 260w, 1826d")
    prune.add_argument(
        "--retention", default="5y", metavar="AGE", help="the configured retention (default 5y)"
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.set_defaults(func=cmd_prune)


# -- helpers ------------------------------------------------------------------------------


def store_url(args: argparse.Namespace) -> str:
    url = args.store or os.environ.get("SURV_STORE")
    if not url:
        raise CliError(
            EXIT_USAGE,
            "which store? give --store URL (e.g. sqlite:///out/alerts.db) or set SURV_STORE",
        )
    return url


def _open(args: argparse.Namespace) -> Any:
    from ..store import open_store

    return open_store(store_url(args), create=False, migrate=False)


def _filter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        status=args.status,
        desk=args.desk,
        trader=args.trader,
        asset_class=args.asset_class,
        typology=args.typology,
        since=args.since,
        until=args.until,
        min_score=args.min_score,
        assignee=args.assignee,
        order=args.order,
        limit=args.limit,
    )


def _cell(key: str, value: Any) -> str:
    from ..model.alerts import fmt_usd

    if value is None:
        return "-"
    if key == "score":
        return f"{value:.1f}"
    if key == "peak_window_sum_usd":
        return fmt_usd(value)
    return str(value)


def write_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: IO[str]
) -> None:
    cells = [[_cell(k, r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    out.write("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip())
    out.write("\n")
    for c in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() + "\n")


def write_rows(
    rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[tuple[str, str]], out: IO[str]
) -> None:
    if fmt == "table":
        write_table(rows, columns, out)
    elif fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, default=str) + "\n")
    else:
        w = csv.writer(out, lineterminator="\n")
        w.writerow([k for k, _ in columns])
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k, _ in columns])
    out.flush()


# -- alerts -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = store.list_alerts(**_filter_kwargs(args))
    write_rows(rows, args.format, QUEUE, sys.stdout)
    if args.format == "table":
        print(f"{len(rows)} alert(s)", file=sys.stderr)
    return EXIT_OK


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        a = store.alert(args.alert_id)
        c = a["content"]
        recent = [
            r
            for r in store.list_alerts(trader=a["trader_id"], order="date", limit=11)
            if r["alert_id"] != a["alert_id"]
        ][:10]
        days = store.trader_days(a["trader_id"])
        history = store.history(a["alert_id"])
    if args.format == "json":
        out = {**a, "trader_recent": recent, "trader_days": days, "history": history}
        print(json.dumps(out, default=str))
        return EXIT_OK
    from ..model.alerts import fmt_usd

    p = print
    p(f"alert        {a['alert_id']}  ({a['typology']}, score {a['score']:.1f})")
    p(
        f"trader       {a['trader_id']}  asset class {a['asset_class']}  desk {a['desk'] or '-'}"
        + (f" (peak booked by {', '.join(c.get('desks', []))})" if c.get("desks") else "")
    )
    p(
        f"when         {a['trading_date']}: {_utc(c['start_ns'])} -> {_utc(c['end_ns'])} UTC, "
        f"peak window ending {_utc(c['peak_ns'])} ({c['window_minutes']:g} min)"
    )
    p(f"peak sum     {fmt_usd(c['peak_window_sum_usd'])} USD over {len(c['trades'])} trades")
    p(f"why          {c['explanation']['text']}")
    p(
        f"case         {a['status']}, assignee {a['assignee'] or '-'}, disposition "
        f"{a['disposition'] or '-'} (updated {a['updated_at']})"
    )
    p(f"source       {a['stream_status']} (policy {c.get('policy', '-')})")
    p(f"\npeak window's trades ({len(c['trades'])}):")
    if c.get("peak_trades"):
        trades = [
            {**t, "time": _utc(t["timestamp_ns"]), "usd": fmt_usd(t["notional_usd"])}
            for t in c["peak_trades"]
        ]
        cols = (("time", "time (UTC)"), ("trade_id", "trade"), ("usd", "USD"), ("desk", "desk"))
        write_table(trades, cols, sys.stdout)
    else:  # recorded from a stream event: the ids are what is known
        for i in range(0, len(c["trades"]), 6):
            p("  " + "  ".join(c["trades"][i : i + 6]))
    p(f"\n{a['trader_id']}'s other recent alerts ({len(recent)}):")
    if recent:
        write_table(recent, QUEUE, sys.stdout)
    p(f"\n{a['trader_id']}'s alerts by trading date:")
    write_table(
        days,
        (("trading_date", "date"), ("alerts", "alerts"), ("max_score", "max score"),
         ("not_closed", "not closed")),
        sys.stdout,
    )  # fmt: skip
    p("\naudit log:")
    write_table(history, HISTORY, sys.stdout)
    return EXIT_OK


HISTORY = (
    ("entry_id", "#"),
    ("at", "at (UTC)"),
    ("who", "who"),
    ("action", "action"),
    ("from_status", "from"),
    ("to_status", "to"),
    ("reason", "reason"),
)


def _report(entry: dict[str, Any]) -> int:
    print(
        f"{entry['alert_id']}: {entry['action']} by {entry['who']} at {entry['at']}: "
        f"{entry['from_status']} -> {entry['to_status']}"
    )
    return EXIT_OK


def cmd_assign(args: argparse.Namespace) -> int:
    from ..store import cases

    with _open(args) as store:
        return _report(
            cases.assign(store, args.alert_id, args.to, who=args.user, reason=args.reason)
        )


def cmd_close(args: argparse.Namespace) -> int:
    from ..store import cases

    with _open(args) as store:
        return _report(
            cases.close(store, args.alert_id, args.disposition, args.reason, who=args.user)
        )


def cmd_escalate(args: argparse.Namespace) -> int:
    from ..store import cases

    with _open(args) as store:
        return _report(cases.escalate(store, args.alert_id, args.reason, who=args.user))


def cmd_reopen(args: argparse.Namespace) -> int:
    from ..store import cases

    with _open(args) as store:
        return _report(cases.reopen(store, args.alert_id, args.reason, who=args.user))


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = store.history(args.alert_id)
    write_rows(rows, args.format, HISTORY, sys.stdout)
    return EXIT_OK


EXPORT = (
    *QUEUE,
    ("stream_status", "stream_status"),
    ("updated_at", "updated_at"),
    ("start_ns", "start_ns"),
    ("end_ns", "end_ns"),
    ("peak_ns", "peak_ns"),
    ("window_minutes", "window_minutes"),
    ("n_trades", "n_trades"),
    ("trades", "trades"),
    ("explanation", "explanation"),
)


def cmd_export(args: argparse.Namespace) -> int:
    from ..pipeline.sinks import atomic_open

    with _open(args) as store:
        rows = store.list_alerts(**_filter_kwargs(args), content=True)
    out = []
    for r in rows:
        c = r.pop("content")
        if args.format == "jsonl":
            out.append({**r, "alert": c})
        else:
            out.append(
                {
                    **r,
                    "start_ns": c["start_ns"],
                    "end_ns": c["end_ns"],
                    "peak_ns": c["peak_ns"],
                    "window_minutes": c["window_minutes"],
                    "n_trades": len(c["trades"]),
                    "trades": " ".join(c["trades"]),
                    "explanation": c["explanation"]["text"],
                }
            )
    if args.output:
        import io

        buf = io.StringIO()
        write_rows(out, args.format, EXPORT, buf)
        with atomic_open(args.output) as f:
            f.write(buf.getvalue().encode())
        print(f"{len(out)} alert(s) -> {args.output}", file=sys.stderr)
    else:
        write_rows(out, args.format, EXPORT, sys.stdout)
    return EXIT_OK


def cmd_feedback(args: argparse.Namespace) -> int:
    from ..store import feedback

    with _open(args) as store:
        rows = feedback.precision(store, by=args.by)
        missed = feedback.suppressed_later_alerted(store)
    cols = (
        (args.by, args.by.replace("_", " ")),
        ("cases", "cases"),
        ("decided", "decided"),
        ("true_positives", "true pos."),
        ("false_positive", "false pos."),
        ("no_action", "no action"),
        ("escalated", "escalated"),
        ("reported", "reported"),
        ("precision", "precision"),
    )
    if args.format == "table":
        shown = [
            {**r, "precision": "-" if r["precision"] is None else f"{r['precision']:.2f}"}
            for r in rows
        ]
        write_table(shown, cols, sys.stdout)
        print(
            f"suppressed episodes later alerted: {missed['later_alerted']:,} of "
            f"{missed['suppressed']:,} (from {missed['runs']} run(s)); their alerts: "
            f"{missed['alerts_decided']:,} decided, {missed['alerts_true_positive']:,} true "
            "positives (escalated or reported)"
        )
    else:
        write_rows(rows, args.format, cols, sys.stdout)
        if args.format == "jsonl":
            print(json.dumps({"suppressed_later_alerted": missed}))
    return EXIT_OK


# -- store --------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from ..store import Store, check, redact
    from ..store.backend import connect

    url = store_url(args)
    # not open_store: a store of another schema version is a problem to report
    with Store(connect(url, create=False)) as store:
        problems = check(store, deep=not args.quick)
        n = {t: store.count(t) for t in ("runs", "alerts", "suppressed", "audit_log")}
    for line in problems:
        print(f"{redact(url)}: {line}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_BAD_DATA
    print(
        f"ok: {redact(url)} ({store.dialect}), {n['runs']:,} runs, {n['alerts']:,} alerts, "
        f"{n['suppressed']:,} suppressed episodes, {n['audit_log']:,} audit entries"
    )
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from ..store import SCHEMA_VERSION, Store, redact
    from ..store.backend import connect

    url = store_url(args)
    with Store(connect(url, create=True)) as store:
        applied = store.migrate()
    done = ", ".join(map(str, applied)) if applied else "none needed"
    print(f"{redact(url)}: schema version {SCHEMA_VERSION} (migrations applied: {done})")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = store.runs()
    cols = (
        ("run_id", "run"),
        ("recorded_at", "recorded (UTC)"),
        ("recorded_by", "by"),
        ("first_date", "from"),
        ("last_date", "to"),
        ("n_desks", "desks"),
        ("n_desks_failed", "failed"),
        ("n_trades", "trades"),
        ("n_alerts", "alerts"),
        ("n_suppressed", "suppressed"),
        ("n_quarantined", "quarantined"),
    )
    write_table(rows, cols, sys.stdout)
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from ..store import parse_age, prune

    older = parse_age(args.older_than)
    retention = parse_age(args.retention)
    with _open(args) as store:
        counts = prune(store, older, retention_days=retention, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb}: {counts['runs']:,} runs ({counts['suppressed']:,} suppressed episodes), "
        f"{counts['alerts']:,} closed alerts ({counts['audit_entries']:,} audit entries) older "
        f"than {older} days; kept {counts['kept_not_closed']:,} older cases that are not closed"
    )
    return EXIT_OK
