"""The alert store and case workflow: SQLite by default, PostgreSQL when outgrown.

- :mod:`.backend`: the connection and the thin dialect shim (one SQL text
  for ``sqlite3`` and ``psycopg``), chosen by URL;
- :mod:`.schema`: the tables as numbered migrations, the append-only audit
  log's triggers;
- :mod:`.records`: the pipeline's objects as rows;
- :mod:`.store`: :class:`Store` (a run written in one transaction; the
  queue's queries) and :func:`open_store`;
- :mod:`.cases`: the status machine (assign, close, escalate, reopen);
- :mod:`.maintenance`: ``store check`` and retention (``store prune``);
- :mod:`.feedback`: precision from the analysts' dispositions, suppressed
  episodes later alerted (for calibration);
- :mod:`.sink`: :class:`StoreSink` on the pipeline's Sink seam,
  :class:`StoreEventSink` on ``surv-kernel serve``'s event-sink seam.

Example::

    from surv_kernel.pipeline import run, resolve_feeds
    from surv_kernel.store import StoreSink, open_store, cases

    run(resolve_feeds(["feeds/"]), sinks=[StoreSink("sqlite:///alerts.db")])
    with open_store("sqlite:///alerts.db") as store:
        top = store.list_alerts(status=["open"], min_score=80, limit=10)
        cases.assign(store, top[0]["alert_id"], "maria")
"""

from __future__ import annotations

from . import cases, feedback
from .backend import (
    StoreConfigError,
    StoreDataError,
    StoreError,
    StoreUnavailableError,
    StoreWriteError,
    redact,
)
from .cases import DISPOSITIONS, STATUSES, TransitionError
from .maintenance import check, parse_age, prune
from .records import RunRecord, run_record
from .schema import RETENTION_FLOOR_DAYS, SCHEMA_VERSION
from .sink import StoreEventSink, StoreSink
from .store import AlertNotFoundError, Store, default_user, open_store

__all__ = [
    "DISPOSITIONS",
    "RETENTION_FLOOR_DAYS",
    "SCHEMA_VERSION",
    "STATUSES",
    "AlertNotFoundError",
    "RunRecord",
    "Store",
    "StoreConfigError",
    "StoreDataError",
    "StoreError",
    "StoreEventSink",
    "StoreSink",
    "StoreUnavailableError",
    "StoreWriteError",
    "TransitionError",
    "cases",
    "feedback",
    "check",
    "default_user",
    "open_store",
    "parse_age",
    "prune",
    "redact",
    "run_record",
]
