"""Logs, metrics and the operator's health summary (standard library only).

How to wire a module in (the whole API)::

    import logging
    from surv_kernel.observability import metrics

    log = logging.getLogger(__name__)          # one logger per module
    log.warning("feed retry", extra={"event": "fetch_retry", "desk": desk, "attempt": 2})

    metrics.counter("surv_trades_decoded_total", desk=desk).inc(len(batch))
    metrics.gauge("surv_desks_in_flight").set(3)          # .inc() / .dec() too
    metrics.histogram("surv_detect_seconds", desk=desk).observe(0.12)
    with metrics.histogram("surv_decode_seconds", desk=desk).time():
        ...

    metrics.value("surv_trades_decoded_total", desk="eq")  # one series' value
    metrics.total("surv_desk_failures_total")              # summed over labels
    metrics.snapshot()            # plain dict (JSON-serialisable)
    metrics.render_prometheus()   # Prometheus text exposition format 0.0.4
    print(health_summary())       # what an operator reads first
    serve_metrics(9464)           # /metrics /health /health.json /snapshot.json over HTTP
                                  # (or set SURV_METRICS_PORT: process_all_desks starts it)

``python -m surv_kernel.observability health|metrics|json [--url URL | --file F]``
reads a running process's endpoint (or a saved snapshot) from a terminal.

- A metric *family* is a name plus a fixed set of label names; the first use
  fixes its kind and label names, and a later use with other label names or
  another kind raises ``ValueError`` (Prometheus would reject it too).
  Label values are strings (other values are converted with ``str``).
- The names the package itself emits are listed in :data:`METRICS` below with
  their kind, labels and help text; use those names, or add yours there.
- Histograms have fixed buckets (Prometheus-style cumulative ``le`` buckets),
  chosen per metric: :data:`LATENCY_BUCKETS` for work, :data:`LAG_BUCKETS`
  for the trade-to-alert lag whose SLA is in minutes.
- Everything is thread-safe: the desk pool updates metrics from many threads.
- Counters count since the process started (or since :meth:`MetricsRegistry.reset`);
  rates and "in the last 5 minutes" are the scraper's job.

Log records from this package carry their context in ``extra=`` fields
(``desk``, ``attempt``, ``event``, ...), never formatted only into the text,
so :class:`JsonFormatter` emits them as JSON keys a log search can filter on.
:func:`configure_logging` installs it on the ``surv_kernel`` logger.
"""

from __future__ import annotations

from .health import (
    DEFAULT_METRICS_URL,
    ENV_METRICS_PORT,
    health_report,
    health_summary,
    serve_metrics,
    serve_metrics_from_env,
)
from .logging_setup import JsonFormatter, configure_logging
from .metrics import (
    LAG_BUCKETS,
    LATENCY_BUCKETS,
    METRICS,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
    MetricsStage,
    metrics,
    reason_label,
    staged_metrics,
)

__all__ = [
    "DEFAULT_METRICS_URL",
    "ENV_METRICS_PORT",
    "MetricsStage",
    "LAG_BUCKETS",
    "LATENCY_BUCKETS",
    "METRICS",
    "Counter",
    "Gauge",
    "Histogram",
    "JsonFormatter",
    "MetricsRegistry",
    "configure_logging",
    "health_report",
    "health_summary",
    "reason_label",
    "staged_metrics",
    "metrics",
    "serve_metrics",
    "serve_metrics_from_env",
]
