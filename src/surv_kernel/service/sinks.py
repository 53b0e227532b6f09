"""Where the service's alert events go: a small sink interface.

An event is one JSON object per line::

    {"alert_id": ..., "revision": 0, "status": "open", "emitted_at": 1710000000.123,
     "alert": {...Alert.to_dict()...}}

``revision`` counts the events published for the alert: ``open`` is 0, each
``update`` one more, and the terminal ``closed`` (or ``withdrawn``) one more
again. ``(alert_id, revision)`` identifies an event.

A sink (:class:`EventSink`) has four methods:

``recover(position)``
    At start-up, before anything is written: the events the sink holds
    *after* ``position`` (the position the last checkpoint recorded; None:
    no checkpoint). These were published by a run that died before its next
    checkpoint; the service uses them to recognise the events its replay
    produces again (see :mod:`surv_kernel.service.loop`).
``write(events)``
    Publish events (in order).
``commit()``
    Make everything written durable and return the position to record in the
    checkpoint. The service calls it *before* writing the checkpoint that
    covers those events, so a checkpoint never covers an event that was not
    published: a crash loses no event, and a replayed one is recognised.
``close()``

:class:`JsonLinesFileSink` (``--out FILE``: append, fsync at commit, the
position is the file size) recovers exactly. :class:`StdoutSink` cannot read
back what it printed: after a crash, the events published since the last
checkpoint are printed again (at least once); use ``--out`` (or a store) for
exactly once. The alert store's sink (``surv_kernel.store``) plugs in here:
``write`` upserts by alert id, ``commit`` commits the transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from ..errors import OutputError

__all__ = ["EventSink", "JsonLinesFileSink", "ServiceEvent", "StdoutSink"]

log = logging.getLogger(__name__)


class ServiceEvent(msgspec.Struct, frozen=True):
    """One published alert event (see the module docstring)."""

    alert_id: str
    revision: int
    status: str
    emitted_at: float
    alert: dict[str, Any]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ServiceEvent)


def encode_event(e: ServiceEvent) -> bytes:
    return _encoder.encode(e) + b"\n"


class EventSink(Protocol):
    def recover(self, position: int | None) -> list[ServiceEvent]: ...

    def write(self, events: Sequence[ServiceEvent]) -> None: ...

    def commit(self) -> int | None: ...

    def close(self) -> None: ...


class JsonLinesFileSink:
    """Events appended to a file, fsynced at :meth:`commit` (exactly once
    across crashes, with the service's replay recognition)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._f: IO[bytes] | None = None

    def _file(self) -> IO[bytes]:
        if self._f is None:
            try:
                self._f = open(self.path, "ab")  # noqa: SIM115 - held open for the process
            except OSError as exc:
                raise OutputError(f"cannot open --out {self.path}: {exc.strerror}") from None
        return self._f

    def recover(self, position: int | None) -> list[ServiceEvent]:
        """Events after byte ``position``. A torn last line (the process died
        mid-write; it has no newline) was never published: it is cut off, so
        the next event starts on a line of its own."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OutputError(f"cannot read --out {self.path}: {exc.strerror}") from None
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning(
                "%s ends in a torn line of %d bytes (a crash mid-write); cut off",
                self.path,
                len(data) - end,
                extra={"event": "sink_torn_line"},
            )
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        start = 0 if position is None else min(int(position), end)
        out = []
        for line in data[start:end].splitlines():
            if line.strip():
                out.append(_decoder.decode(line))
        return out

    def write(self, events: Sequence[ServiceEvent]) -> None:
        if not events:
            return
        f = self._file()
        try:
            f.write(b"".join(encode_event(e) for e in events))
            f.flush()  # readers see the events now; durable at commit (fsync)
        except OSError as exc:
            raise OutputError(f"cannot write --out {self.path}: {exc.strerror}") from None

    def commit(self) -> int:
        f = self._file()
        try:
            f.flush()
            os.fsync(f.fileno())
            return f.tell()
        except OSError as exc:
            raise OutputError(f"cannot sync --out {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
            self._f = None


class StdoutSink:
    """Events on stdout (at least once across crashes: see the module docstring)."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._out = stream if stream is not None else sys.stdout.buffer

    def recover(self, position: int | None) -> list[ServiceEvent]:
        return []

    def write(self, events: Sequence[ServiceEvent]) -> None:
        if events:
            self._out.write(b"".join(encode_event(e) for e in events))
            self._out.flush()

    def commit(self) -> None:
        self._out.flush()
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._out.flush()
