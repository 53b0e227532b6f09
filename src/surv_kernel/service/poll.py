"""Polled desks: the legacy desk feed call, turned into a tailed desk file.

The received ``_api_call(desk_id)`` returns a desk's feed as of now (a JSON
array of its trades so far). :class:`DeskPoller` calls it every
``interval`` seconds per desk (through
:func:`~surv_kernel.pipeline.fetch_trade_feed`: retries, capped backoff with
jitter, a per-call deadline), and appends the records it has not spooled yet
to ``SPOOL/DESK.ndjson``, one JSON object per line, fsynced. The service tails
the spool like any desk file, so cursors, checkpoints, crash recovery and the
duplicate-id rule are the same for a polled desk as for a desk that writes
its own file.

A record is new when its exact JSON text was not spooled before (kept as a
16-byte digest): a feed that returns the whole day every time costs a decode,
not a re-detection. A record that comes back *changed* under a trade id
already spooled is spooled again, so the stream quarantines it as
``duplicate_trade_id`` (counted, with the record) instead of the poller
dropping it unseen. The spool is the
poller's own file: on start it reads the ids already spooled and cuts a torn
last line (a crash mid-write) back to the last newline, so no line is ever
joined to the next. A call that fails, or a feed that is not a JSON array, is
counted (``surv_service_polls_total{desk,outcome}``) and logged; the desk
then gets no new lines and ``/health`` marks it SILENT after
``--silence-after``: a dead feed is never "no anomalies".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..observability import MetricsRegistry
from ..observability import metrics as _global_metrics
from ..pipeline.fetch import fetch_trade_feed

__all__ = ["DeskPoller", "load_call"]

log = logging.getLogger(__name__)


def load_call(spec: str) -> Callable[[Any], Any]:
    """``module:function`` -> the function (the desk feed call to poll)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"--poll-call {spec!r} is not MODULE:FUNCTION")
    import importlib

    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--poll-call {spec}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"--poll-call {spec} is not callable")
    return fn


def _key(line: bytes) -> bytes:
    """The identity of a spooled record: a digest of its exact line."""
    return hashlib.blake2b(line, digest_size=16).digest()


class DeskPoller:
    """Poll ``call(desk)`` for each of ``desks`` into ``spool``; run it with
    :meth:`start` (a daemon thread) and :meth:`stop`, or :meth:`poll_once`."""

    def __init__(
        self,
        desks: Sequence[str],
        call: Callable[[Any], Any],
        spool: Path,
        *,
        interval_s: float = 5.0,
        deadline_s: float = 30.0,
        registry: MetricsRegistry = _global_metrics,
    ) -> None:
        self.desks = list(desks)
        self.call = call
        self.spool = Path(spool)
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.registry = registry
        self.spool.mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, set[bytes]] = {d: self._recover(d) for d in self.desks}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, desk: str) -> Path:
        return self.spool / f"{desk}.ndjson"

    def _recover(self, desk: str) -> set[bytes]:
        """The ids already spooled; a torn last line is cut off (it is fetched again)."""
        p = self.path(desk)
        if not p.exists():
            p.touch()
            return set()
        data = p.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("desk %s: cutting a torn last spool line (%d bytes)", desk, len(data) - end)
            with open(p, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        return {_key(line) for line in data[:end].splitlines() if line.strip()}

    def poll_once(self) -> dict[str, int]:
        """One call per desk; returns desk -> records appended (-1: the call failed)."""
        out = {}
        for desk in self.desks:
            out[desk] = self._poll(desk)
        return out

    def _poll(self, desk: str) -> int:
        try:
            feed = fetch_trade_feed(
                desk, api_call=self.call, timeout_s=self.deadline_s, registry=self.registry
            )
            records = json.loads(feed) if isinstance(feed, (str, bytes, bytearray)) else feed
            if not isinstance(records, list):
                raise ValueError(f"the feed is a {type(records).__name__}, not a JSON array")
        except Exception as exc:  # any failure of the black box: counted, the desk goes silent
            self.registry.counter("surv_service_polls_total", desk=desk, outcome="failed").inc()
            log.warning(
                "desk %s: poll failed: %s: %s",
                desk,
                type(exc).__name__,
                exc,
                extra={"desk": desk, "event": "poll_failed"},
            )
            return -1
        seen = self._seen[desk]
        lines = []
        for record in records:
            text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
            line = text.encode("utf-8", "surrogatepass")
            key = _key(line)
            if key not in seen:
                seen.add(key)
                lines.append(line + b"\n")
        if lines:
            # one write of whole lines, then fsync: the tail sees complete lines only
            with open(self.path(desk), "ab") as f:
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
        self.registry.counter("surv_service_polls_total", desk=desk, outcome="ok").inc()
        return len(lines)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.poll_once()
            self._stop.wait(max(self.interval_s - (time.monotonic() - t0), 0.0))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="surv-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.deadline_s + 5)
