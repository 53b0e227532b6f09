""":class:`StoreSink`: the alert store on the pipeline's Sink seam."""

from __future__ import annotations

import time
from typing import Any

from .backend import redact
from .store import Store, open_store

__all__ = ["StoreSink"]


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
