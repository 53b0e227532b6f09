"""Connections: one SQL text for SQLite (stdlib ``sqlite3``) and PostgreSQL (``psycopg`` 3).

Every statement in the store is written once, in the subset both databases
share: ``?`` placeholders, ``INSERT ... ON CONFLICT (...) DO UPDATE SET ... =
excluded.col``, ``TEXT`` / ``BIGINT`` / ``DOUBLE PRECISION`` columns and
ISO-8601 UTC timestamps held as ``TEXT`` (they sort as strings and compare the
same way in both). The :class:`Backend` is the thin shim over what differs:

- the paramstyle: sqlite3 takes ``?``, psycopg ``%s`` (so a literal ``%``
  doubles): :meth:`Backend.sql` rewrites, never a second copy of a query;
- transactions: sqlite3 runs in autocommit mode and :meth:`transaction`
  issues ``BEGIN IMMEDIATE`` (the write lock is taken up front, so a case
  transition's read-check-write cannot interleave with another writer and no
  reader ever sees half a run); psycopg opens a transaction implicitly;
- bulk rows: ``executemany`` on SQLite, ``COPY ... FROM STDIN`` on PostgreSQL
  (a million suppressed episodes through ``executemany`` would be one round
  trip each);
- DDL words: the auto-increment key, and the triggers that make the audit log
  append-only (:mod:`.schema` keeps both spellings next to each other).

A URL chooses the backend: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
``sqlite:///:memory:``, ``postgresql://user@host:port/db`` (or ``postgres://``).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, InputError, OutputError, SurveillanceError

__all__ = [
    "Backend",
    "PostgresBackend",
    "SqliteBackend",
    "StoreError",
    "StoreUnavailableError",
    "StoreWriteError",
    "connect",
    "redact",
]


class StoreError(SurveillanceError):
    """Base of the store's errors (each also derives from the error kind that
    sets the CLI's exit status)."""


class StoreUnavailableError(StoreError, InputError):
    """The store cannot be opened: no such file, the server refuses (exit 3)."""


class StoreWriteError(StoreError, OutputError):
    """A write to the store failed; the transaction was rolled back (exit 6)."""


class StoreDataError(StoreError, DataError):
    """The store is of another schema version or damaged (exit 5)."""


class StoreConfigError(StoreError, ConfigError):
    """A store URL or a store argument is unusable (exit 2)."""


def redact(url: str) -> str:
    """The URL without its password, for messages and summaries."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class Backend:
    """One open connection and the dialect's differences (see the module doc)."""

    dialect = ""
    #: the auto-increment primary key column type, used in DDL as ``{serial}``
    serial = ""

    def __init__(self, conn: Any, url: str) -> None:
        self.conn = conn
        self.url = url

    # -- the shim -------------------------------------------------------------------------

    def sql(self, text: str) -> str:
        return text

    # Every statement goes through these three, so a driver's error (the
    # server gone, a trigger refusing, a disk full) leaves the store as one of
    # the package's errors, with the exit status that says read or write.

    def error(self, text: str, exc: BaseException) -> StoreError:
        msg = " ".join(str(exc).split())
        if text.lstrip().upper().startswith("SELECT"):
            return StoreUnavailableError(f"cannot read the alert store {redact(self.url)}: {msg}")
        return StoreWriteError(f"cannot write the alert store {redact(self.url)}: {msg}")

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(self.sql(text), tuple(params))
        except driver_errors() as exc:
            raise self.error(text, exc) from None
        return cur

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.execute(text, params)
        try:
            return list(cur.fetchall())
        except driver_errors() as exc:
            raise self.error(text, exc) from None

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.cursor().executemany(self.sql(text), rows)
        except driver_errors() as exc:
            raise self.error(text, exc) from None

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Append many rows (no conflict handling): the fastest path the driver has."""
        marks = ", ".join("?" for _ in columns)
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError

    def lock_schema(self) -> None:
        """Inside a transaction: make concurrent migrations of one store queue."""

    def tables(self) -> set[str]:
        raise NotImplementedError

    def triggers(self) -> set[str]:
        raise NotImplementedError

    def integrity(self) -> list[str]:
        """The database's own consistency check: problems, empty when sound."""
        return []

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _set_wal(conn: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """Switch to WAL. The switch takes an exclusive lock that SQLite does not
    always wait for through the busy timeout: two first writers of a new file
    could see "database is locked" here (seen under load in the racing test),
    so it is retried for as long as the connection would wait for a writer."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SqliteBackend(Backend):
    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    @classmethod
    def open(cls, url: str, path: str, *, create: bool) -> SqliteBackend:
        if path != ":memory:":
            p = Path(path)
            if not create and not p.is_file():
                raise StoreUnavailableError(
                    f"no alert store at {p}: write one with 'surv-kernel run FEED... --store {url}'"
                )
            if create:
                try:
                    p.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreWriteError(f"cannot create {p.parent}: {exc.strerror}") from None
        try:
            # isolation_level=None: autocommit; transaction() says BEGIN itself.
            # timeout: wait up to 30 s for another writer (a run, an analyst)
            # instead of failing at once with "database is locked".
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":
                # WAL: readers (alerts list) never block the writer (a run) or
                # see its half-written transaction; synchronous=NORMAL is
                # durable to the last checkpoint on power loss and atomic
                # always, which is the guarantee the store makes
                _set_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreDataError(f"{path} is not a usable SQLite database: {exc}") from None
        return cls(conn, url)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreWriteError(f"cannot write the alert store {self.url}: {exc}") from None
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        try:
            self.conn.commit()
        except sqlite3.Error as exc:
            raise StoreWriteError(f"cannot commit to the alert store {self.url}: {exc}") from None

    def tables(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def triggers(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    def integrity(self) -> list[str]:
        rows = [r[0] for r in self.query("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else [f"sqlite integrity_check: {r}" for r in rows]


class PostgresBackend(Backend):
    dialect = "postgresql"
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    @classmethod
    def open(cls, url: str) -> PostgresBackend:
        try:
            import psycopg
        except ImportError:
            raise StoreConfigError(
                f"{redact(url)} needs the PostgreSQL driver: pip install 'surv_kernel[postgres]'"
            ) from None
        try:
            conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to the alert store {redact(url)}: {' '.join(str(exc).split())}"
            ) from None
        return cls(conn, url)

    def sql(self, text: str) -> str:
        # psycopg's %s paramstyle: a literal % must be doubled first. The
        # store's SQL has no ? inside string literals, so the rewrite is exact.
        return text.replace("%", "%%").replace("?", "%s")

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        try:
            with self.conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except driver_errors() as exc:
            raise self.error(sql, exc) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        import psycopg

        # psycopg (autocommit off) is already inside a transaction after any
        # statement; commit what a read may have opened so this one starts clean
        self.conn.commit()
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        try:
            self.conn.commit()
        except psycopg.Error as exc:
            raise StoreWriteError(
                f"cannot commit to the alert store {redact(self.url)}: {exc}"
            ) from None

    def lock_schema(self) -> None:
        # Two first runs against a new database would both see version 0 and
        # both CREATE TABLE; a transaction-scoped advisory lock (released at
        # commit) queues the second, which then sees the first's version.
        # SQLite needs none: BEGIN IMMEDIATE already holds the write lock.
        self.execute("SELECT pg_advisory_xact_lock(?)", (0x5375_7276,))

    def tables(self) -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }

    def triggers(self) -> set[str]:
        return {
            r[0]
            for r in self.query(
                # pg_trigger, not information_schema: the latter omits TRUNCATE triggers
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
            )
        }


def connect(url: str, *, create: bool = True) -> Backend:
    """Open the backend a URL names (``create``: make a missing SQLite file)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise StoreConfigError(
                f"store URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return SqliteBackend.open(url, rest[1:], create=create)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend.open(url)
    raise StoreConfigError(
        f"store URL {redact(url)!r} is not one the store knows: use sqlite:///alerts.db or "
        "postgresql://user@host/dbname"
    )


def driver_errors() -> tuple[type[BaseException], ...]:
    """The drivers' own error bases (to turn into :class:`StoreWriteError`)."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    with contextlib.suppress(ImportError):
        import psycopg

        errors.append(psycopg.Error)
    return tuple(errors)
