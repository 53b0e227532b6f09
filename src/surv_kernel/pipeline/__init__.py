"""The pipeline: sources -> validation -> detectors -> sinks, run by an engine.

- :mod:`.sources`: where a desk's trades come from (feed files, feeds in
  memory, the legacy ``_api_call`` feed, legacy dicts); each yields validated
  columns through ingest's one set of rules;
- :mod:`.fetch`: the desk feed call with retries, backoff and jitter;
- :mod:`.pool`: the bounded desk pool with per-desk deadlines;
- :mod:`.engines`: how the work is scheduled (:class:`LocalEngine`: desks
  read on the pool, one detection over the merged day);
- :mod:`.distributed`: the Dask engine (the ``dask`` extra; imported only
  when asked for): the day shuffled by group over worker processes;
- :mod:`.run`: :func:`run`, the one path behind ``surv-kernel run``, the
  legacy entry points and replay, and its :class:`RunResult`;
- :mod:`.sinks`: where the results go (JSON lines, the report, summary.json);
- :mod:`.summary`: the run summary as plain data;
- :mod:`.outcomes`: per-desk outcomes and :class:`DeskFailuresError`;
- :mod:`.replay`: re-run saved feeds and deliver only the missing alerts.
"""

from __future__ import annotations

from .engines import (
    DeskFailure,
    DeskRead,
    Engine,
    EngineResult,
    LocalEngine,
    merge_batches,
    merge_desks,
)
from .fetch import FeedUnavailableError, TransientFeedError, fetch_trade_feed
from .outcomes import DeskFailuresError, DeskOutcome, DeskRunReport
from .pool import DeskDeadlineError, run_tasks
from .replay import ReplayResult, replay_window
from .run import RunResult, run
from .sinks import JsonLinesSink, ReportSink, SummarySink
from .sources import (
    BytesSource,
    CallSource,
    ConcatSource,
    DictsSource,
    FileSource,
    Source,
    resolve_feeds,
)
from .summary import summary_dict

__all__ = [
    "BytesSource",
    "CallSource",
    "ConcatSource",
    "DeskDeadlineError",
    "DeskFailure",
    "DeskFailuresError",
    "DeskOutcome",
    "DeskRead",
    "DeskRunReport",
    "DictsSource",
    "Engine",
    "EngineResult",
    "FeedUnavailableError",
    "FileSource",
    "JsonLinesSink",
    "LocalEngine",
    "ReplayResult",
    "ReportSink",
    "RunResult",
    "Source",
    "SummarySink",
    "TransientFeedError",
    "fetch_trade_feed",
    "merge_batches",
    "merge_desks",
    "replay_window",
    "resolve_feeds",
    "run",
    "run_tasks",
    "summary_dict",
]
