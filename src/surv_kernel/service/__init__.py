"""``surv-kernel serve``: the always-on intraday service.

Layers, one module each, data flowing one way:

- :mod:`.sources`: one growing NDJSON file per desk, tailed (complete lines
  only, rotation and truncation handled, a cursor per desk);
- :mod:`.loop`: the event-time merge of the desks, the
  :class:`~surv_kernel.stream.SurveillanceStream` they drive, heartbeats,
  checkpoints, and the rule that makes a restart after kill -9 lose and
  duplicate no alert event;
- :mod:`.sinks`: where alert events go (JSON lines on stdout or a file; the
  alert store plugs in behind the same four methods);
- :mod:`.http`: ``/metrics`` and ``/health`` for the life of the process.

The command line is :mod:`surv_kernel.cli.serve`; operations are in
RUNBOOK.md ("The intraday service").
"""

from __future__ import annotations

from .loop import Service, ServiceConfig
from .sinks import EventSink, JsonLinesFileSink, ServiceEvent, StdoutSink
from .sources import Cursor, TailSource

__all__ = [
    "Cursor",
    "EventSink",
    "JsonLinesFileSink",
    "Service",
    "ServiceConfig",
    "ServiceEvent",
    "StdoutSink",
    "TailSource",
]
