"""The alert store: runs and their alerts written in one transaction, read back
for the case queue.

:meth:`Store.record_run` is the one write path of a run: the run row, its
desks' reconciliation, its quarantine summary, its alerts (upserted by
``alert_id``), a ``dispositions`` row and a ``created`` audit entry for each
alert seen for the first time, the run-to-alert links and every suppressed
episode, inside one transaction. A reader sees all of a run or none of it;
a process killed mid-write leaves no trace (the database rolls back, see
``tests/test_store.py::test_killed_writer_leaves_all_or_nothing``).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from ..errors import InputError
from .backend import Backend, StoreDataError, StoreError, StoreWriteError, connect, driver_errors
from .records import (
    ALERT_COLUMNS,
    SUPPRESSED_COLUMNS,
    RunRecord,
    alert_row,
    encode,
    run_record,
    suppressed_rows,
)
from .schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["AlertNotFoundError", "Store", "default_user", "open_store"]

#: Rows per ``IN (...)`` list: under SQLite's default limit of 999 variables.
_IN_CHUNK = 500


class AlertNotFoundError(StoreError, InputError):
    """No alert with that id (or id prefix) in the store."""


def default_user(user: str | None = None) -> str:
    """Who is acting: ``user``, else ``$USER``, else the login name."""
    if user:
        return user
    env = os.environ.get("USER") or os.environ.get("LOGNAME")
    if env:
        return env
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    """Microsecond ISO-8601 UTC text: sorts and compares as time in both databases."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UPSERT = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}, first_run_id, last_run_id, "
    f"first_seen_at, last_seen_at) VALUES ({', '.join('?' for _ in ALERT_COLUMNS)}, ?, ?, ?, ?) "
    "ON CONFLICT (alert_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in ALERT_COLUMNS if c not in ("alert_id", "desk", "final")
    )
    # a stream event does not know the home desk: keep the one a batch run stored
    + ", desk = CASE WHEN excluded.desk = '' THEN alerts.desk ELSE excluded.desk END"
    + ", final = excluded.final"
    + ", last_run_id = COALESCE(excluded.last_run_id, alerts.last_run_id)"
    + ", last_seen_at = excluded.last_seen_at"
    # final content (a batch run's, a stream's closed) is never replaced by a
    # partial one (a replayed stream's open/update)
    + " WHERE alerts.final = 0 OR excluded.final = 1"
)


class Store:
    """An open alert store (SQLite or PostgreSQL); see :func:`open_store`.

    ``clock`` (returns an aware datetime) stamps every row; tests pass an old
    one to make records past the retention period.
    """

    def __init__(self, backend: Backend, *, clock: Callable[[], dt.datetime] | None = None):
        self.backend = backend
        self.clock = clock or _utc_now

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    def now(self) -> str:
        return iso(self.clock())

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------

    def version(self) -> int:
        """The schema version applied (0: an empty database)."""
        if "schema_version" not in self.backend.tables():
            return 0
        rows = self.backend.query("SELECT MAX(version) FROM schema_version")
        self._end_read()
        return int(rows[0][0] or 0)

    def migrate(self) -> list[int]:
        """Apply the missing migrations, each in its own transaction; returns
        the versions applied. Refuses a store newer than this code."""
        applied = []
        b = self.backend
        for m in MIGRATIONS:
            with b.transaction():
                b.lock_schema()
                b.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "applied_at TEXT NOT NULL, description TEXT NOT NULL)"
                )
                # read inside the write transaction: two processes opening a
                # new store at once apply each migration once
                current = int(b.query("SELECT MAX(version) FROM schema_version")[0][0] or 0)
                if current > SCHEMA_VERSION:
                    raise StoreDataError(
                        f"the store {self.url} has schema version {current}, newer than this "
                        f"surv-kernel's {SCHEMA_VERSION}: upgrade surv-kernel"
                    )
                if m.version <= current:
                    continue
                for stmt in m.common + m.dialect.get(b.dialect, []):
                    b.execute(stmt.replace("{serial}", b.serial))
                b.execute(
                    "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                    (m.version, self.now(), m.description),
                )
                applied.append(m.version)
        return applied

    def require_current(self) -> None:
        v = self.version()
        if v == SCHEMA_VERSION:
            return
        if v > SCHEMA_VERSION:
            raise StoreDataError(
                f"the store {self.url} has schema version {v}, newer than this surv-kernel's "
                f"{SCHEMA_VERSION}: upgrade surv-kernel"
            )
        raise StoreDataError(
            f"the store {self.url} has schema version {v}, this surv-kernel needs "
            f"{SCHEMA_VERSION}: run 'surv-kernel store migrate --store URL'"
        )

    def _end_read(self) -> None:
        # psycopg opens a transaction for a SELECT; end it so it holds no snapshot
        if self.dialect == "postgresql":
            self.backend.conn.commit()

    # -- writes ---------------------------------------------------------------------------

    def write_run(
        self, result: Any, *, who: str | None = None, summary: dict[str, Any] | None = None
    ) -> str:
        """Record a :class:`~surv_kernel.pipeline.RunResult`; returns the run id."""
        if summary is None:
            from ..pipeline.summary import summary_dict

            summary = summary_dict(result)
        return self.record_run(run_record(result, summary), who=who)

    def record_run(self, rec: RunRecord, *, who: str | None = None) -> str:
        """Write one run (see the module doc) in one transaction; returns its id."""
        from .. import __version__

        who = default_user(who)
        now = self.now()
        run_id = now[:19].replace("-", "").replace(":", "") + "-" + uuid.uuid4().hex[:12]
        b = self.backend
        try:
            with b.transaction():
                (run_no,) = b.query(
                    "INSERT INTO runs (run_id, recorded_at, recorded_by, kind, code_version, "
                    "config, summary, first_date, last_date, n_desks, n_desks_failed, n_trades, "
                    "n_alerts, n_suppressed, n_quarantined) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING run_no",
                    (
                        run_id,
                        now,
                        who,
                        rec.kind,
                        __version__,
                        encode(rec.config),
                        encode(rec.summary),
                        rec.first_date,
                        rec.last_date,
                        len(rec.desks),
                        sum(d.outcome != "ok" for d in rec.desks),
                        rec.n_trades,
                        len(rec.alerts),
                        len(rec.suppressed),
                        rec.n_quarantined,
                    ),
                )[0]
                b.executemany(
                    "INSERT INTO run_desks (run_id, desk, outcome, error, seen, trades, "
                    "quarantined, alerts, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (run_id, d.desk, d.outcome, d.error, d.seen, d.trades, d.quarantined,
                         d.alerts, d.seconds)
                        for d in rec.desks
                    ],
                )  # fmt: skip
                b.executemany(
                    "INSERT INTO run_quarantine (run_id, desk, reason, n) VALUES (?, ?, ?, ?)",
                    [(run_id, desk, reason, n) for desk, reason, n in rec.quarantine],
                )
                self._upsert_alerts(rec.alerts, run_id, who, now, final=True, status="batch")
                b.insert_rows(
                    "run_alerts",
                    ("run_id", "alert_id"),
                    sorted({(run_id, d["alert_id"]) for d in rec.alerts}),
                )
                b.insert_rows(
                    "suppressed", SUPPRESSED_COLUMNS, suppressed_rows(run_no, rec.suppressed)
                )
        except driver_errors() as exc:
            raise StoreWriteError(
                f"cannot write the run to the alert store {self.url}: {' '.join(str(exc).split())}"
            ) from None
        return run_id

    def record_events(self, events: Iterable[Any], *, who: str | None = None) -> int:
        """Upsert a stream push's :class:`~surv_kernel.stream.AlertEvent` s (one
        transaction); returns how many alerts were new. ``open`` / ``update``
        are partial content, ``closed`` / ``withdrawn`` final; the id is the
        episode's from open to close, so a replayed day adds no rows."""
        return self.record_event_dicts(
            ((ev.episode_id, ev.status, ev.alert.to_dict()) for ev in events), who=who
        )

    def record_event_dicts(
        self, events: Iterable[tuple[str, str, dict[str, Any]]], *, who: str | None = None
    ) -> int:
        """:meth:`record_events` for ``(alert_id, status, Alert.to_dict())``
        triples (the service's published events)."""
        dicts: dict[str, tuple[dict[str, Any], str]] = {}
        for alert_id, status, alert in events:
            d = dict(alert)
            d.setdefault("desks", [])
            dicts[alert_id] = (d, status)  # the last event of an episode wins
        if not dicts:
            return 0
        who = default_user(who)
        now = self.now()
        try:
            with self.backend.transaction():
                n_new = 0
                for status in ("open", "update", "closed", "withdrawn"):
                    group = [d for d, s in dicts.values() if s == status]
                    if group:
                        final = status in ("closed", "withdrawn")
                        n_new += self._upsert_alerts(group, None, who, now, final, status)
        except driver_errors() as exc:
            raise StoreWriteError(
                f"cannot write stream events to the alert store {self.url}: {exc}"
            ) from None
        return n_new

    def _upsert_alerts(
        self,
        alerts: Sequence[dict[str, Any]],
        run_id: str | None,
        who: str,
        now: str,
        final: bool,
        status: str,
    ) -> int:
        """Inside a transaction: upsert alerts, open a case for each new one."""
        b = self.backend
        ids = [d["alert_id"] for d in alerts]
        known = set()
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            known.update(
                r[0]
                for r in b.query(f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})", chunk)
            )
        b.executemany(
            _UPSERT,
            [
                (*alert_row(d, final=final, stream_status=status), run_id, run_id, now, now)
                for d in alerts
            ],
        )
        new = sorted(set(ids) - known)
        b.executemany(
            "INSERT INTO dispositions (alert_id, status, assignee, disposition, updated_at, "
            "updated_by) VALUES (?, 'open', NULL, NULL, ?, ?)",
            [(a, now, who) for a in new],
        )
        origin = f"run {run_id}" if run_id else f"stream {status}"
        b.executemany(
            "INSERT INTO audit_log (alert_id, at, who, action, from_status, to_status, reason) "
            "VALUES (?, ?, ?, 'created', NULL, 'open', ?)",
            [(a, now, who, origin) for a in new],
        )
        return len(new)

    # -- reads ----------------------------------------------------------------------------

    def count(self, table: str) -> int:
        n = int(self.backend.query(f"SELECT COUNT(*) FROM {table}")[0][0])
        self._end_read()
        return n

    def runs(self) -> list[dict[str, Any]]:
        cols = (
            "run_id, recorded_at, recorded_by, kind, code_version, first_date, last_date, "
            "n_desks, n_desks_failed, n_trades, n_alerts, n_suppressed, n_quarantined"
        )
        rows = self.backend.query(f"SELECT {cols} FROM runs ORDER BY recorded_at, run_id")
        self._end_read()
        names = [c.strip() for c in cols.split(",")]
        return [dict(zip(names, r, strict=True)) for r in rows]

    def run_desks(self, run_id: str) -> list[dict[str, Any]]:
        cols = ["desk", "outcome", "error", "seen", "trades", "quarantined", "alerts", "seconds"]
        rows = self.backend.query(
            f"SELECT {', '.join(cols)} FROM run_desks WHERE run_id = ? ORDER BY desk", (run_id,)
        )
        self._end_read()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def suppressed(self, run_id: str) -> list[dict[str, Any]]:
        """A run's suppression report, in the order detection produced it."""
        from ..model.alerts import Explanation
        from .records import decode_explanation

        rows = self.backend.query(
            f"SELECT {', '.join(SUPPRESSED_COLUMNS)} FROM suppressed "
            "WHERE run_no = (SELECT run_no FROM runs WHERE run_id = ?) ORDER BY seq",
            (run_id,),
        )
        self._end_read()
        n = len(SUPPRESSED_COLUMNS) - len(Explanation.__struct_fields__)
        out = []
        for r in rows:
            d = dict(zip(SUPPRESSED_COLUMNS[:n], r[:n], strict=True))
            d["run_id"] = run_id
            d["explanation"] = decode_explanation(r[n:])
            out.append(d)
        return out

    def resolve_id(self, alert_id: str) -> str:
        """The full id of ``alert_id`` or of the one alert it is a prefix of (>= 6 chars)."""
        b = self.backend
        if b.query("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)):
            self._end_read()
            return alert_id
        rows = []
        if len(alert_id) >= 6 and alert_id.isalnum():
            rows = b.query(
                "SELECT alert_id FROM alerts WHERE alert_id LIKE ? LIMIT 2", (alert_id + "%",)
            )
        self._end_read()
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise AlertNotFoundError(f"alert id prefix {alert_id!r} is ambiguous: give more of it")
        raise AlertNotFoundError(
            f"no alert {alert_id!r} in {self.url}: see 'surv-kernel alerts list --store URL'"
        )

    def alert(self, alert_id: str) -> dict[str, Any]:
        """One alert: its row, its case (status, assignee, disposition) and content."""
        alert_id = self.resolve_id(alert_id)
        rows = self.list_alerts(alert_ids=[alert_id], content=True)
        return rows[0]

    def history(self, alert_id: str) -> list[dict[str, Any]]:
        """The alert's audit log, oldest first."""
        alert_id = self.resolve_id(alert_id)
        cols = ["entry_id", "at", "who", "action", "from_status", "to_status", "reason"]
        rows = self.backend.query(
            f"SELECT {', '.join(cols)} FROM audit_log WHERE alert_id = ? ORDER BY entry_id",
            (alert_id,),
        )
        self._end_read()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def list_alerts(
        self,
        *,
        status: Sequence[str] | None = None,
        desk: str | None = None,
        trader: str | None = None,
        asset_class: str | None = None,
        typology: str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_score: float | None = None,
        assignee: str | None = None,
        alert_ids: Sequence[str] | None = None,
        order: str = "score",
        limit: int | None = None,
        content: bool = False,
    ) -> list[dict[str, Any]]:
        """Alerts with their case fields, filtered (``since`` / ``until``:
        trading dates ``YYYY-MM-DD``, inclusive; ``desk``: the home desk),
        highest score first (``order="date"``: newest first)."""
        where, params = [], []
        for col, value in (
            ("a.desk", desk),
            ("a.trader_id", trader),
            ("a.asset_class", asset_class),
            ("a.typology", typology),
            ("d.assignee", assignee),
        ):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        if status:
            where.append(f"d.status IN ({', '.join('?' for _ in status)})")
            params.extend(status)
        if since is not None:
            where.append("a.trading_date >= ?")
            params.append(since)
        if until is not None:
            where.append("a.trading_date <= ?")
            params.append(until)
        if min_score is not None:
            where.append("a.score >= ?")
            params.append(float(min_score))
        if alert_ids is not None:
            where.append(f"a.alert_id IN ({', '.join('?' for _ in alert_ids) or 'NULL'})")
            params.extend(alert_ids)
        cols = list(LIST_COLUMNS) + (["a.content"] if content else [])
        sql = (
            f"SELECT {', '.join(cols)} FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + (
                " ORDER BY a.score DESC, a.trading_date DESC, a.alert_id"
                if order == "score"
                else " ORDER BY a.trading_date DESC, a.start_ns DESC, a.alert_id"
            )
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        rows = self.backend.query(sql, params)
        self._end_read()
        names = [c.split(".", 1)[1] for c in cols]
        out = []
        for r in rows:
            d = dict(zip(names, r, strict=True))
            if content:
                d["content"] = msgspec.json.decode(d["content"])
            out.append(d)
        return out

    def cases(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The case fields (status, assignee, disposition) of the stored
        ones of ``alert_ids``, by alert id; an id not in the store is absent.
        Asked in chunks so a run's thousands of alerts stay under every
        driver's limit on bound parameters."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(alert_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.backend.query(
                "SELECT alert_id, status, assignee, disposition FROM dispositions "
                f"WHERE alert_id IN ({', '.join('?' for _ in chunk)})",
                chunk,
            )
            for alert_id, status, assignee, disposition in rows:
                out[alert_id] = {
                    "status": status,
                    "assignee": assignee,
                    "disposition": disposition,
                }
        self._end_read()
        return out

    def trader_days(self, trader: str) -> list[dict[str, Any]]:
        """The trader's alerts per trading date: count, best score, still open."""
        rows = self.backend.query(
            "SELECT a.trading_date, COUNT(*), MAX(a.score), "
            "SUM(CASE WHEN d.status = 'closed' THEN 0 ELSE 1 END) "
            "FROM alerts a JOIN dispositions d ON d.alert_id = a.alert_id "
            "WHERE a.trader_id = ? GROUP BY a.trading_date ORDER BY a.trading_date DESC",
            (trader,),
        )
        self._end_read()
        return [
            {
                "trading_date": r[0],
                "alerts": int(r[1]),
                "max_score": float(r[2]),
                "not_closed": int(r[3]),
            }
            for r in rows
        ]


#: The case queue's columns (``list_alerts``), table-qualified.
LIST_COLUMNS = (
    "a.alert_id",
    "a.trading_date",
    "a.desk",
    "a.trader_id",
    "a.asset_class",
    "a.typology",
    "a.score",
    "a.peak_window_sum_usd",
    "d.status",
    "d.assignee",
    "d.disposition",
    "a.stream_status",
    "d.updated_at",
)


def open_store(
    url: str,
    *,
    create: bool = True,
    migrate: bool = True,
    clock: Callable[[], dt.datetime] | None = None,
) -> Store:
    """Open the store a URL names (see :mod:`.backend`). ``create``: make a
    missing SQLite file; ``migrate``: apply missing migrations (otherwise a
    store of another version is refused)."""
    backend = connect(url, create=create)
    store = Store(backend, clock=clock)
    try:
        if migrate:
            store.migrate()
        else:
            store.require_current()
    except driver_errors() as exc:
        store.close()
        raise StoreWriteError(f"cannot prepare the alert store {url}: {exc}") from None
    except BaseException:
        store.close()
        raise
    return store
