"""``store check`` (integrity) and ``store prune`` (retention).

Retention: MAR (Delegated Regulation 2016/957, Art. 3(8)) keeps the analysis
of an alert and the reasons for reporting it or not for five years. So
:func:`prune` refuses a cut-off younger than the retention (default and
floor: :data:`~.schema.RETENTION_FLOOR_DAYS`), and past the cut-off it
deletes only:

- runs recorded before it, with their desks, quarantine counts, run-to-alert
  links and suppressed episodes;
- alerts last seen before it whose case is **closed** and whose last audit
  entry is before it, with their case row and audit entries (the audit log's
  DELETE trigger independently refuses any entry younger than five years).

A case still open, under review or escalated is never pruned, however old:
it is counted and kept.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec

from .backend import StoreConfigError, StoreWriteError, driver_errors
from .cases import STATUSES
from .schema import AUDIT_TRIGGERS, RETENTION_FLOOR_DAYS, SCHEMA_VERSION, TABLES
from .store import Store, iso

__all__ = ["check", "parse_age", "prune"]


def parse_age(text: str) -> int:
    """``5y``, ``1826d``, ``260w`` -> days (a year is 365.25 days, rounded up)."""
    m = re.fullmatch(r"\s*(\d+)\s*([ydw])\s*", text.lower())
    if not m:
        raise StoreConfigError(f"expected an age like 5y, 260w or 1826d, got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": n, "w": 7 * n, "y": -(-n * 1461 // 4)}[unit]


def check(store: Store, *, deep: bool = True) -> list[str]:
    """Every inconsistency found (empty: the store is sound): the database's
    own check, the schema version, the tables and audit triggers, every alert
    with a case and a 'created' audit entry, each case's status equal to its
    last audit entry's, each run's counts equal to the rows stored for it, and
    (``deep``) every alert's content holding its own id."""
    b = store.backend
    problems = list(b.integrity())
    version = store.version()
    if version != SCHEMA_VERSION:
        problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        return problems
    missing = TABLES - b.tables()
    if missing:
        problems.append(f"missing tables: {', '.join(sorted(missing))}")
        return problems
    absent = AUDIT_TRIGGERS[b.dialect] - b.triggers()
    if absent:
        problems.append(
            f"audit log triggers missing ({', '.join(sorted(absent))}): it is not append-only"
        )

    def some(sql: str, what: str) -> None:
        rows = b.query(sql)
        if rows:
            shown = ", ".join(str(r[0]) for r in rows[:5])
            problems.append(f"{len(rows)} {what}: {shown}{' ...' if len(rows) > 5 else ''}")

    some(
        "SELECT a.alert_id FROM alerts a LEFT JOIN dispositions d ON d.alert_id = a.alert_id "
        "WHERE d.alert_id IS NULL",
        "alert(s) without a case row",
    )
    some(
        "SELECT d.alert_id FROM dispositions d WHERE d.status NOT IN ("
        + ", ".join(f"'{s}'" for s in STATUSES)
        + ")",
        "case(s) with an unknown status",
    )
    some(
        "SELECT a.alert_id FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM audit_log l "
        "WHERE l.alert_id = a.alert_id AND l.action = 'created')",
        "alert(s) without a 'created' audit entry",
    )
    some(
        "SELECT DISTINCT l.alert_id FROM audit_log l LEFT JOIN alerts a ON a.alert_id = l.alert_id "
        "WHERE a.alert_id IS NULL",
        "audit entr(ies) of alerts not in the store",
    )
    # the audit log replays to the current state: a case row edited behind
    # the API's back shows here
    some(
        "SELECT d.alert_id FROM dispositions d JOIN audit_log l ON l.entry_id = "
        "(SELECT MAX(entry_id) FROM audit_log WHERE alert_id = d.alert_id) "
        "WHERE l.to_status IS NULL OR l.to_status <> d.status",
        "case(s) whose status differs from their last audit entry",
    )
    some(
        "SELECT r.run_id FROM runs r WHERE r.n_alerts <> "
        "(SELECT COUNT(*) FROM run_alerts x WHERE x.run_id = r.run_id) "
        "OR r.n_suppressed <> (SELECT COUNT(*) FROM suppressed s WHERE s.run_no = r.run_no) "
        "OR r.n_quarantined <> (SELECT COALESCE(SUM(q.n), 0) FROM run_quarantine q "
        "WHERE q.run_id = r.run_id)",
        "run(s) whose counts differ from the rows stored for them",
    )
    some(
        "SELECT run_id || ' ' || desk FROM run_desks WHERE outcome IN ('ok', 'partial') "
        "AND seen <> trades + quarantined",
        "desk(s) whose records seen differ from analysed + quarantined",
    )
    if deep:
        bad = []
        for alert_id, content in b.query("SELECT alert_id, content FROM alerts"):
            try:
                ok = msgspec.json.decode(content).get("alert_id") == alert_id
            except (msgspec.DecodeError, AttributeError):
                ok = False
            if not ok:
                bad.append(alert_id)
        if bad:
            problems.append(
                f"{len(bad)} alert(s) whose content is not theirs: {', '.join(bad[:5])}"
            )
    store._end_read()
    return problems


def prune(
    store: Store,
    older_than_days: int,
    *,
    retention_days: int = RETENTION_FLOOR_DAYS,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Delete what is older than ``older_than_days`` (see the module doc);
    returns counts by kind (``kept_not_closed``: old cases kept because they
    are not closed). One transaction: all of it is pruned or none."""
    if retention_days < RETENTION_FLOOR_DAYS:
        raise StoreConfigError(
            f"retention {retention_days} days is shorter than MAR's five years "
            f"({RETENTION_FLOOR_DAYS} days): the store keeps at least that"
        )
    if older_than_days < retention_days:
        raise StoreConfigError(
            f"refusing to prune records younger than the retention of {retention_days} days "
            f"(asked for older than {older_than_days} days): use --older-than 5y or more"
        )
    cutoff = iso((now or store.clock()) - dt.timedelta(days=older_than_days))
    b = store.backend
    old_runs = "SELECT run_id FROM runs WHERE recorded_at < ?"
    prunable = (
        "SELECT a.alert_id FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id "
        "WHERE a.last_seen_at < ? AND d.status = 'closed' AND NOT EXISTS "
        "(SELECT 1 FROM audit_log l WHERE l.alert_id = a.alert_id AND l.at >= ?)"
    )
    counts: dict[str, Any] = {}
    try:
        with b.transaction():
            counts["runs"] = len(b.query(old_runs, (cutoff,)))
            counts["suppressed"] = b.query(
                "SELECT COUNT(*) FROM suppressed WHERE run_no IN "
                "(SELECT run_no FROM runs WHERE recorded_at < ?)",
                (cutoff,),
            )[0][0]
            alerts = [r[0] for r in b.query(prunable, (cutoff, cutoff))]
            counts["alerts"] = len(alerts)
            counts["audit_entries"] = b.query(
                f"SELECT COUNT(*) FROM audit_log WHERE alert_id IN ({prunable})", (cutoff, cutoff)
            )[0][0]
            counts["kept_not_closed"] = b.query(
                "SELECT COUNT(*) FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id "
                "WHERE a.last_seen_at < ? AND d.status <> 'closed'",
                (cutoff,),
            )[0][0]
            if not dry_run:
                b.execute(
                    "DELETE FROM suppressed WHERE run_no IN "
                    "(SELECT run_no FROM runs WHERE recorded_at < ?)",
                    (cutoff,),
                )
                for table in ("run_quarantine", "run_desks", "run_alerts"):
                    b.execute(f"DELETE FROM {table} WHERE run_id IN ({old_runs})", (cutoff,))
                for i in range(0, len(alerts), 500):
                    chunk = alerts[i : i + 500]
                    marks = ", ".join("?" for _ in chunk)
                    for table in ("audit_log", "dispositions", "run_alerts", "alerts"):
                        b.execute(f"DELETE FROM {table} WHERE alert_id IN ({marks})", chunk)
                b.execute("DELETE FROM runs WHERE recorded_at < ?", (cutoff,))
    except driver_errors() as exc:
        raise StoreWriteError(f"cannot prune {store.url}: {' '.join(str(exc).split())}") from None
    return {k: int(v) for k, v in counts.items()}
