"""The store's schema, as numbered migrations.

``schema_version`` holds one row per migration applied. Opening a store for
writing applies the missing ones (``surv-kernel store migrate`` does it
explicitly); a store whose version is newer than this code is refused rather
than written by a program that does not know its columns.

Tables (every timestamp is ISO-8601 UTC text, ``2026-12-04T18:30:00.123456Z``;
every JSON column is msgspec JSON with NaN as ``null``):

``runs``
    one row per pipeline run written: its id (``run_id``, shown to people) and
    number (``run_no``, the key of its suppressed episodes: an integer in a
    million rows instead of a 29-character id, 20% smaller rows), when, by
    whom, the code version, the config and the whole run summary (JSON), the
    trading dates it covered and its counts;
``run_desks``
    per run and desk: outcome (``ok``, ``partial`` with why, or the failure
    kind and error), records seen, trades analysed, records quarantined and
    alerts homed there: the desk's reconciliation (seen = trades + quarantined,
    checked by the run and again by ``store check``);
``run_quarantine``
    per run, desk and reason: how many records were quarantined;
``alerts``
    one row per ``alert_id``, ever: a replay or a stream's ``open`` /
    ``update`` / ``closed`` upserts it. ``content`` is the full alert
    (``Alert.to_dict()`` plus ``desks``, with the explanation's text);
    ``final`` is 1 once the content is final (a batch run's alert or a
    stream's ``closed``), and a non-final event never overwrites final content;
``run_alerts``
    which alerts each run produced (a replay adds rows here, not to ``alerts``);
``suppressed``
    every floor-passing episode a run did not alert, with its reason and its
    explanation's sixteen fields as columns (named as in
    :class:`~surv_kernel.model.Explanation`; NaN is stored as NULL by SQLite).
    Columns, not JSON: a busy day has a million of them, and binding a double
    is several times cheaper than formatting it as text; it also lets
    calibration query z and ratio directly;
``dispositions``
    one row per alert: its case status, assignee and disposition now;
``audit_log``
    append-only: who, when, action, from and to status, free-text reason.
    Triggers refuse every UPDATE, and every DELETE of a row younger than
    :data:`RETENTION_FLOOR_DAYS` (the MAR five years); PostgreSQL also
    refuses TRUNCATE. ``store prune`` is the only code that deletes from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MIGRATIONS", "RETENTION_FLOOR_DAYS", "SCHEMA_VERSION", "Migration"]

#: Five years (with one leap day): MAR, Delegated Regulation 2016/957 Art. 3(8).
#: The audit log's DELETE trigger and ``store prune`` both refuse anything younger.
RETENTION_FLOOR_DAYS = 1826


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    #: statements in the SQL both databases speak; ``{serial}`` is the
    #: dialect's auto-increment primary key
    common: list[str]
    #: statements only one dialect needs (triggers), by ``Backend.dialect``
    dialect: dict[str, list[str]] = field(default_factory=dict)


_V1_COMMON = [
    """CREATE TABLE runs (
        run_no {serial},
        run_id TEXT NOT NULL UNIQUE,
        recorded_at TEXT NOT NULL,
        recorded_by TEXT NOT NULL,
        kind TEXT NOT NULL,
        code_version TEXT NOT NULL,
        config TEXT NOT NULL,
        summary TEXT NOT NULL,
        first_date TEXT,
        last_date TEXT,
        n_desks INTEGER NOT NULL,
        n_desks_failed INTEGER NOT NULL,
        n_trades BIGINT NOT NULL,
        n_alerts BIGINT NOT NULL,
        n_suppressed BIGINT NOT NULL,
        n_quarantined BIGINT NOT NULL
    )""",
    "CREATE INDEX runs_recorded_at ON runs (recorded_at)",
    """CREATE TABLE run_desks (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        desk TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        seen BIGINT NOT NULL,
        trades BIGINT NOT NULL,
        quarantined BIGINT NOT NULL,
        alerts BIGINT NOT NULL,
        seconds DOUBLE PRECISION,
        PRIMARY KEY (run_id, desk)
    )""",
    """CREATE TABLE run_quarantine (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        desk TEXT NOT NULL,
        reason TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (run_id, desk, reason)
    )""",
    """CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        trader_id TEXT NOT NULL,
        asset_class TEXT NOT NULL,
        typology TEXT NOT NULL,
        desk TEXT NOT NULL,
        trading_date TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        peak_ns BIGINT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        peak_window_sum_usd DOUBLE PRECISION NOT NULL,
        content TEXT NOT NULL,
        final INTEGER NOT NULL,
        stream_status TEXT NOT NULL,
        first_run_id TEXT,
        last_run_id TEXT,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL
    )""",
    "CREATE INDEX alerts_date ON alerts (trading_date)",
    "CREATE INDEX alerts_trader ON alerts (trader_id, trading_date)",
    "CREATE INDEX alerts_desk ON alerts (desk, trading_date)",
    "CREATE INDEX alerts_score ON alerts (score)",
    """CREATE TABLE run_alerts (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        alert_id TEXT NOT NULL REFERENCES alerts (alert_id),
        PRIMARY KEY (run_id, alert_id)
    )""",
    "CREATE INDEX run_alerts_alert ON run_alerts (alert_id)",
    """CREATE TABLE suppressed (
        run_no BIGINT NOT NULL REFERENCES runs (run_no),
        seq BIGINT NOT NULL,
        trader_id TEXT NOT NULL,
        asset_class TEXT NOT NULL,
        typology TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        peak_ns BIGINT NOT NULL,
        peak_window_sum_usd DOUBLE PRECISION NOT NULL,
        n_trades BIGINT NOT NULL,
        reason TEXT NOT NULL,
        window_sum_usd DOUBLE PRECISION,
        floor_usd DOUBLE PRECISION,
        asset_class_floor_usd DOUBLE PRECISION,
        threshold_multiplier DOUBLE PRECISION,
        baseline_source TEXT NOT NULL,
        baseline_desk TEXT NOT NULL,
        baseline_median_usd DOUBLE PRECISION,
        baseline_mad_usd DOUBLE PRECISION,
        baseline_n BIGINT NOT NULL,
        scale_usd DOUBLE PRECISION,
        scale_source TEXT NOT NULL,
        z DOUBLE PRECISION,
        ratio DOUBLE PRECISION,
        z_level DOUBLE PRECISION,
        ratio_level DOUBLE PRECISION,
        n_windows BIGINT NOT NULL,
        PRIMARY KEY (run_no, seq)
    )""",
    """CREATE TABLE dispositions (
        alert_id TEXT PRIMARY KEY REFERENCES alerts (alert_id),
        status TEXT NOT NULL,
        assignee TEXT,
        disposition TEXT,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL
    )""",
    "CREATE INDEX dispositions_status ON dispositions (status)",
    """CREATE TABLE audit_log (
        entry_id {serial},
        alert_id TEXT NOT NULL,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT,
        reason TEXT
    )""",
    "CREATE INDEX audit_log_alert ON audit_log (alert_id, entry_id)",
    "CREATE INDEX audit_log_at ON audit_log (at)",
]

# The append-only rule lives in the database, so no client (this package, a
# DBA's psql session, a future bug) can rewrite history. The 1826-day floor is
# spelled out in each dialect's date arithmetic.
_V1_SQLITE = [
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN OLD.at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1826 days')
    BEGIN SELECT RAISE(ABORT,
        'audit_log is append-only: rows younger than the 5-year retention cannot be deleted');
    END""",
]

_V1_POSTGRES = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'DELETE' THEN
            RAISE EXCEPTION 'audit_log is append-only: rows cannot be updated or truncated';
        END IF;
        IF OLD.at > to_char((now() AT TIME ZONE 'UTC') - interval '1826 days',
                            'YYYY-MM-DD"T"HH24:MI:SS') THEN
            RAISE EXCEPTION
                'audit_log is append-only: rows younger than the 5-year retention cannot be deleted';
        END IF;
        RETURN OLD;
    END $$""",
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
]

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "runs, desks, quarantine, alerts, suppressed episodes, dispositions, audit log",
        _V1_COMMON,
        {"sqlite": _V1_SQLITE, "postgresql": _V1_POSTGRES},
    ),
    Migration(
        2,
        "suppressed episodes: the explanation's time-of-day factor and breach evidence",
        # rows stored before keep what was true of them: factor 1 (no time of
        # day then), the former weights and floor; the evidence values unknown
        [
            "ALTER TABLE suppressed ADD COLUMN time_of_day_factor DOUBLE PRECISION DEFAULT 1.0",
            "ALTER TABLE suppressed ADD COLUMN evidence_z DOUBLE PRECISION",
            "ALTER TABLE suppressed ADD COLUMN evidence_ratio DOUBLE PRECISION",
            "ALTER TABLE suppressed ADD COLUMN weight_z DOUBLE PRECISION DEFAULT 0.5",
            "ALTER TABLE suppressed ADD COLUMN weight_ratio DOUBLE PRECISION DEFAULT 0.5",
            "ALTER TABLE suppressed ADD COLUMN evidence_score DOUBLE PRECISION",
            "ALTER TABLE suppressed ADD COLUMN evidence_required DOUBLE PRECISION",
            "ALTER TABLE suppressed ADD COLUMN evidence_floor DOUBLE PRECISION DEFAULT 1.0",
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1].version

#: The triggers ``store check`` expects, by dialect.
AUDIT_TRIGGERS = {
    "sqlite": {"audit_log_no_update", "audit_log_no_delete"},
    "postgresql": {"audit_log_no_update", "audit_log_no_delete", "audit_log_no_truncate"},
}

TABLES = {
    "schema_version",
    "runs",
    "run_desks",
    "run_quarantine",
    "alerts",
    "run_alerts",
    "suppressed",
    "dispositions",
    "audit_log",
}
