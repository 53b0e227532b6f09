""":class:`StoreSink`: the alert store on the pipeline's Sink seam."""

from __future__ import annotations

import time
from typing import Any

from .backend import redact
from .store import Store, open_store

__all__ = ["StoreEventSink", "StoreSink"]


class StoreSink:
    """``write(result)`` records the run in the store named by ``url`` (or
    an open :class:`Store`): the run row, its alerts, suppressed episodes and
    quarantine summary in one transaction. Returns ``{"store": "URL run ID"}``.

    ``extra`` adds keys to the stored run summary (the demo's evaluation);
    ``who`` is recorded as the run's author (default ``$USER``).
    """

    def __init__(
        self, store: str | Store, *, who: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        self.store = store
        self.who = who
        self.extra = extra
        self.run_id: str | None = None

    def write(self, result: Any) -> dict[str, str]:
        from ..pipeline.summary import summary_dict

        t0 = time.perf_counter()
        summary = summary_dict(result, extra=self.extra)
        if isinstance(self.store, Store):
            self.run_id = self.store.write_run(result, who=self.who, summary=summary)
            url = self.store.url
        else:
            with open_store(self.store) as store:
                self.run_id = store.write_run(result, who=self.who, summary=summary)
            url = self.store
        result.stages["store"] = result.stages.get("store", 0.0) + time.perf_counter() - t0
        return {"store": f"{redact(url)} run {self.run_id}"}

    def cases(self, alert_ids: Any) -> dict[str, dict[str, Any]]:
        """The stored cases of ``alert_ids`` (:meth:`Store.cases`), for the
        report (:class:`~surv_kernel.pipeline.ReportSink`'s ``cases``)."""
        if isinstance(self.store, Store):
            return self.store.cases(alert_ids)
        with open_store(self.store, create=False, migrate=False) as store:
            return store.cases(alert_ids)


class StoreEventSink:
    """The store on ``surv-kernel serve``'s event-sink seam
    (:mod:`surv_kernel.service.sinks`): ``write`` collects the events,
    ``commit`` upserts them by alert id in one transaction (``open`` /
    ``update`` partial, ``closed`` / ``withdrawn`` final) and then commits
    ``inner`` (the ``--out`` file or stdout), whose position it returns.

    Exactly once in the store does not need the events back: the service
    commits the sink before each checkpoint, so after a crash it replays at
    most the events since the last one, and an upsert of an event already
    stored changes nothing (a replayed ``open`` never overwrites a stored
    ``closed``). ``recover`` is the inner sink's.
    """

    def __init__(self, store: str | Store, inner: Any = None, *, who: str | None = None) -> None:
        self.store = store if isinstance(store, Store) else open_store(store)
        self.inner = inner
        self.who = who
        self._pending: list[Any] = []

    def recover(self, position: int | None) -> list[Any]:
        return self.inner.recover(position) if self.inner is not None else []

    def write(self, events: Any) -> None:
        if self.inner is not None:
            self.inner.write(events)
        self._pending.extend(events)

    def commit(self) -> int | None:
        if self._pending:
            self.store.record_event_dicts(
                ((e.alert_id, e.status, e.alert) for e in self._pending), who=self.who
            )
            self._pending.clear()
        return self.inner.commit() if self.inner is not None else None

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self.inner is not None:
                self.inner.close()
            self.store.close()
