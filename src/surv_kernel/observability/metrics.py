"""The metrics catalogue, the registry (counters, gauges, histograms with
labels), staged metrics for pool tasks, and Prometheus text exposition."""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: Seconds. Fine at the low end (a decode of a small feed is milliseconds),
#: coarse past a minute (a fetch stuck in retries).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

#: Seconds from a trade's timestamp to its alert. The SLA conversation is in
#: minutes (the audit saw 45-60 min), so the buckets are minute-grained past 1 min.
LAG_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    2700.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
)

#: The metric families the package emits: name -> (kind, label names, help).
#: Other modules may use any name; known names get their help text and labels
#: checked, and :func:`health_report` reads these.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # feeds (desks.fetch_trade_feed)
    "surv_feed_fetch_seconds": (
        "histogram",
        ("desk",),
        "Wall time of fetch_trade_feed calls that returned a feed, retries and backoff included.",
    ),
    "surv_feed_attempts_total": (
        "counter",
        ("desk", "outcome"),
        "Feed API calls by outcome: ok, retryable (will retry or gave up), fatal (not retried).",
    ),
    "surv_feed_retries_total": (
        "counter",
        ("desk",),
        "Backoff sleeps taken before another feed attempt.",
    ),
    "surv_feed_failures_total": (
        "counter",
        ("desk", "reason"),
        "fetch_trade_feed calls that raised: exhausted (all attempts failed), "
        "budget (time budget spent), fatal (error not worth retrying).",
    ),
    # desks (desks.analyze_feed / process_all_desks)
    "surv_desk_seconds": (
        "histogram",
        ("desk",),
        "Wall time of one desk's analysis in process_all_desks (fetch + decode + detect).",
    ),
    "surv_desk_runs_total": (
        "counter",
        ("desk", "outcome"),
        "Desk analyses finished in process_all_desks by outcome: ok or failed.",
    ),
    "surv_desk_failures_total": (
        "counter",
        ("desk", "kind"),
        "Failed desk analyses by kind: feed_unavailable, bad_feed, bad_result, timeout, error.",
    ),
    "surv_desk_last_success_timestamp_seconds": (
        "gauge",
        ("desk",),
        "Unix time of the desk's last successful analysis.",
    ),
    "surv_desk_last_failure_timestamp_seconds": (
        "gauge",
        ("desk",),
        "Unix time of the desk's last failed analysis.",
    ),
    "surv_desks_in_flight": ("gauge", (), "Desk analyses currently running in the pool."),
    "surv_desks_abandoned_in_flight": (
        "gauge",
        (),
        "Desk calls abandoned at their deadline that have not returned yet (hung feeds: each "
        "holds a daemon thread until its call returns).",
    ),
    "surv_desk_late_results_discarded_total": (
        "counter",
        ("desk",),
        "Desk results that arrived after their deadline and were discarded (not counted, not "
        "delivered).",
    ),
    "surv_pool_workers": ("gauge", (), "Worker threads of the last process_all_desks pool."),
    # ingest
    "surv_decode_seconds": ("histogram", ("desk",), "Time to decode one feed into columns."),
    "surv_trades_decoded_total": ("counter", ("desk",), "Trades decoded into columns."),
    "surv_records_quarantined_total": (
        "counter",
        ("desk", "reason"),
        "Feed records set aside (not analysed) by reason.",
    ),
    "surv_service_polls_total": (
        "counter",
        ("desk", "outcome"),
        "serve --poll-desks: desk feed calls by outcome (ok, failed).",
    ),
    "surv_records_seen_total": (
        "counter",
        ("desk",),
        "Feed records delimited by ingest (analysed + quarantined, checked every run).",
    ),
    "surv_desk_outcomes_total": (
        "counter",
        ("desk", "status"),
        "Desks of a run by outcome: ok, partial (analysed, known incomplete: truncated or "
        "implausibly short) or failed (nothing analysed).",
    ),
    "surv_detector_silent_total": (
        "counter",
        ("desk",),
        "Runs where a desk that normally has floor-passing episodes had none (worth a look).",
    ),
    # detection
    "surv_detect_seconds": (
        "histogram",
        ("desk",),
        "Detection time for one feed: window kernels, baselines, scoring, alert building.",
    ),
    "surv_alerts_emitted_total": ("counter", ("desk",), "Alerts emitted."),
    "surv_alerts_suppressed_total": (
        "counter",
        ("desk", "reason"),
        "Candidate episodes not alerted, by the model's reason.",
    ),
    "surv_alert_lag_seconds": (
        "histogram",
        ("desk",),
        "Seconds from an alert's last trade timestamp to the alert's emission (the SLA figure).",
    ),
    # streaming (stream.SurveillanceStream, after each push or flush)
    "surv_stream_trades_total": ("counter", ("stream",), "Trades accepted by the stream."),
    "surv_stream_push_seconds": (
        "histogram",
        ("stream",),
        "Wall time of one SurveillanceStream push or flush.",
    ),
    "surv_stream_rows_held": (
        "gauge",
        ("stream",),
        "Trade rows held as window context (the stream's main state).",
    ),
    "surv_stream_groups": (
        "gauge",
        ("stream",),
        "(trader, asset class) groups holding rows or an open episode.",
    ),
    "surv_stream_open_episodes": ("gauge", ("stream",), "Alert episodes open (not yet closed)."),
    "surv_stream_watermark_seconds": (
        "gauge",
        ("stream",),
        "The stream's watermark (newest trade time minus the lateness allowance), Unix seconds.",
    ),
    "surv_stream_late_trades_total": (
        "counter",
        ("stream", "outcome"),
        "Trades older than the watermark by outcome: processed (state allowed) or quarantined.",
    ),
    "surv_stream_alert_events_total": (
        "counter",
        ("stream", "status"),
        "Alert lifecycle events emitted by status: open, update, closed, withdrawn.",
    ),
}

_BUCKETS_BY_NAME: dict[str, tuple[float, ...]] = {"surv_alert_lag_seconds": LAG_BUCKETS}


def _label_key(labelnames: tuple[str, ...], labels: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(labels[name]) for name in labelnames)


class Counter:
    """A monotonically increasing count. ``inc(n)`` with ``n >= 0``."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; inc({amount}) — use a gauge")
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value


class Gauge:
    """A value that goes up and down (``set``, ``inc``, ``dec``)."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    @property
    def value(self) -> float:
        return self._value


class Histogram:
    """Observations counted into fixed buckets, plus their count, sum and max."""

    __slots__ = ("_counts", "_lock", "_max", "_sum", "buckets")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        # one slot per finite bucket plus the +Inf overflow; non-cumulative here,
        # made cumulative when rendered
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._max = -math.inf

    def observe(self, value: float) -> None:
        value = float(value)
        if math.isnan(value):
            raise ValueError("cannot observe NaN")
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = <=)
        slot = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[slot] += 1
            self._sum += value
            if value > self._max:
                self._max = value

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Observe the wall time of the ``with`` block (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    def state(self) -> dict[str, Any]:
        """count, sum, max, cumulative buckets {le: count} and p50/p95/p99 estimates."""
        with self._lock:
            counts = list(self._counts)
            total_sum = self._sum
            top = self._max
        cumulative: dict[str, int] = {}
        running = 0
        for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
            running += c
            cumulative[_fmt_float(bound)] = running
        n = running
        return {
            "count": n,
            "sum": total_sum,
            "max": top if n else None,
            "buckets": cumulative,
            "p50": self._quantile(counts, n, 0.50, top),
            "p95": self._quantile(counts, n, 0.95, top),
            "p99": self._quantile(counts, n, 0.99, top),
        }

    def _quantile(self, counts: list[int], n: int, q: float, top: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation.

        The same estimate Prometheus' histogram_quantile makes; capped at the
        observed max so a sparse top bucket cannot report more than was seen.
        """
        if n == 0:
            return None
        rank = q * n
        running = 0
        lower = 0.0
        for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
            if c and running + c >= rank:
                if math.isinf(bound):
                    return top
                est = lower + (bound - lower) * (rank - running) / c
                return min(est, top)
            running += c
            lower = bound
        return top


class _Family:
    __slots__ = ("buckets", "children", "help", "kind", "labelnames", "lock", "name")

    def __init__(
        self,
        name: str,
        kind: str,
        labelnames: tuple[str, ...],
        help: str,
        buckets: tuple[float, ...] | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.labelnames = labelnames
        self.help = help
        self.buckets = buckets
        self.children: dict[tuple[str, ...], Counter | Gauge | Histogram] = {}
        self.lock = threading.Lock()

    def child(self, key: tuple[str, ...]) -> Counter | Gauge | Histogram:
        found = self.children.get(key)
        if found is not None:
            return found
        with self.lock:
            found = self.children.get(key)
            if found is None:
                if self.kind == "counter":
                    found = Counter()
                elif self.kind == "gauge":
                    found = Gauge()
                else:
                    found = Histogram(self.buckets or LATENCY_BUCKETS)
                self.children[key] = found
            return found


_VALID_KINDS = ("counter", "gauge", "histogram")


class MetricsRegistry:
    """Named metric families with labelled series. See the module docstring."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    # -- getting a series ---------------------------------------------------
    def counter(self, name: str, /, **labels: Any) -> Counter:
        return self._get(name, "counter", labels)  # type: ignore[return-value]

    def gauge(self, name: str, /, **labels: Any) -> Gauge:
        return self._get(name, "gauge", labels)  # type: ignore[return-value]

    def histogram(
        self, name: str, /, *, buckets: Sequence[float] | None = None, **labels: Any
    ) -> Histogram:
        """A histogram series; ``buckets`` only matters on the family's first use."""
        return self._get(name, "histogram", labels, buckets)  # type: ignore[return-value]

    def _get(
        self,
        name: str,
        kind: str,
        labels: Mapping[str, Any],
        buckets: Sequence[float] | None = None,
    ) -> Counter | Gauge | Histogram:
        stage = getattr(_STAGING, "stage", None)
        if stage is not None and kind != "gauge":
            # a staged task's counts wait for its commit (see staged_metrics)
            return stage.registry_for(self)._get_direct(name, kind, labels, buckets)
        return self._get_direct(name, kind, labels, buckets)

    def _get_direct(
        self,
        name: str,
        kind: str,
        labels: Mapping[str, Any],
        buckets: Sequence[float] | None = None,
    ) -> Counter | Gauge | Histogram:
        family = self._families.get(name)
        if family is None:
            family = self._register(name, kind, tuple(sorted(labels)), buckets)
        if family.kind != kind:
            raise ValueError(f"metric {name!r} is a {family.kind}, not a {kind}")
        if len(labels) != len(family.labelnames) or any(k not in labels for k in family.labelnames):
            raise ValueError(
                f"metric {name!r} takes labels {list(family.labelnames)}, got {sorted(labels)}"
            )
        return family.child(_label_key(family.labelnames, labels))

    def _register(
        self,
        name: str,
        kind: str,
        labelnames: tuple[str, ...],
        buckets: Sequence[float] | None,
    ) -> _Family:
        if not name or not all(c.isalnum() or c in "_:" for c in name) or name[0].isdigit():
            raise ValueError(f"invalid metric name {name!r}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
        help_text = ""
        known = METRICS.get(name)
        if known is not None:
            known_kind, known_labels, help_text = known
            if known_kind != kind:
                raise ValueError(f"metric {name!r} is a {known_kind}, not a {kind}")
            labelnames = tuple(sorted(known_labels))
        if buckets is None and kind == "histogram":
            buckets = _BUCKETS_BY_NAME.get(name, LATENCY_BUCKETS)
        if buckets is not None:
            b = tuple(float(x) for x in buckets)
            if (
                not b
                or any(y <= x for x, y in zip(b, b[1:], strict=False))
                or any(math.isnan(x) for x in b)
            ):
                raise ValueError(f"histogram buckets must be increasing and non-empty: {b}")
            buckets = b
        with self._lock:
            family = self._families.get(name)
            if family is None:
                family = _Family(name, kind, labelnames, help_text, buckets)  # type: ignore[arg-type]
                self._families[name] = family
            return family

    # -- reading ------------------------------------------------------------
    def value(self, name: str, /, **labels: Any) -> Any:
        """A counter's or gauge's value (0.0 if the series never moved), or a
        histogram series' :meth:`Histogram.state`. Reading never creates a series."""
        family = self._families.get(name)
        kind = family.kind if family is not None else METRICS.get(name, ("counter",))[0]
        series = None
        if family is not None:
            if set(labels) != set(family.labelnames):
                raise ValueError(
                    f"metric {name!r} takes labels {list(family.labelnames)}, got {sorted(labels)}"
                )
            series = family.children.get(_label_key(family.labelnames, labels))
        if series is None:
            if kind == "histogram":
                buckets = family.buckets if family is not None and family.buckets else ()
                return Histogram(buckets).state()
            return 0.0
        return series.state() if isinstance(series, Histogram) else series.value

    def total(self, name: str, /, **label_filter: Any) -> float:
        """Sum of a counter/gauge over every series whose labels match the
        filter (histograms: the number of observations)."""
        family = self._families.get(name)
        if family is None:
            return 0.0
        want = {k: str(v) for k, v in label_filter.items()}
        out = 0.0
        for key, series in list(family.children.items()):
            labels = dict(zip(family.labelnames, key, strict=True))
            if any(labels.get(k) != v for k, v in want.items()):
                continue
            out += series.state()["count"] if isinstance(series, Histogram) else series.value
        return out

    def series(self, name: str, /) -> list[tuple[dict[str, str], Any]]:
        """Every series of a family as (labels, value-or-histogram-state)."""
        family = self._families.get(name)
        if family is None:
            return []
        out = []
        for key, s in sorted(list(family.children.items())):
            labels = dict(zip(family.labelnames, key, strict=True))
            out.append((labels, s.state() if isinstance(s, Histogram) else s.value))
        return out

    def snapshot(self) -> dict[str, Any]:
        """Every family: {name: {"type", "help", "series": [{"labels", "value"|histogram}]}}."""
        out: dict[str, Any] = {}
        for name in sorted(self._families):
            family = self._families[name]
            rows = []
            for labels, v in self.series(name):
                rows.append({"labels": labels, **(v if isinstance(v, dict) else {"value": v})})
            out[name] = {"type": family.kind, "help": family.help, "series": rows}
        return out

    def render_prometheus(self) -> str:
        """The registry in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for name in sorted(self._families):
            family = self._families[name]
            if family.help:
                lines.append(f"# HELP {name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for key, s in sorted(list(family.children.items())):
                pairs = list(zip(family.labelnames, key, strict=True))
                if isinstance(s, Histogram):
                    st = s.state()
                    for le, c in st["buckets"].items():
                        lines.append(f"{name}_bucket{_labels(pairs + [('le', le)])} {c}")
                    lines.append(f"{name}_sum{_labels(pairs)} {_fmt_float(st['sum'])}")
                    lines.append(f"{name}_count{_labels(pairs)} {st['count']}")
                else:
                    lines.append(f"{name}{_labels(pairs)} {_fmt_float(s.value)}")
        return "\n".join(lines) + "\n" if lines else ""

    def merge(self, other: MetricsRegistry) -> None:
        """Add ``other``'s counters and histogram observations to this registry
        (gauges are state, not counts: they are never staged, see
        :func:`staged_metrics`)."""
        for name, fam in list(other._families.items()):
            for key, series in list(fam.children.items()):
                labels = dict(zip(fam.labelnames, key, strict=True))
                if isinstance(series, Counter):
                    self._get_direct(name, "counter", labels).inc(series.value)
                elif isinstance(series, Histogram):
                    target = self._get_direct(name, "histogram", labels, fam.buckets)
                    assert isinstance(target, Histogram)
                    with series._lock:
                        counts, total, top = list(series._counts), series._sum, series._max
                    with target._lock:
                        if target.buckets != series.buckets:
                            raise ValueError(f"metric {name!r}: histogram buckets differ")
                        for slot, c in enumerate(counts):
                            target._counts[slot] += c
                        target._sum += total
                        target._max = max(target._max, top)

    def reset(self) -> None:
        """Forget every family (tests, or a long-lived process starting a new day)."""
        with self._lock:
            self._families.clear()

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> MetricsRegistry:
        """A registry holding the values of a :meth:`snapshot` (e.g. one saved
        as JSON for the audit), so :func:`health_summary` can read it offline."""
        reg = cls()
        for name, fam in snapshot.items():
            kind = fam["type"]
            rows = fam.get("series", [])
            labelnames = tuple(sorted(rows[0]["labels"])) if rows else ()
            buckets = None
            if kind == "histogram" and rows:
                buckets = [float(le) for le in rows[0]["buckets"] if le != "+Inf"]
            family = reg._register(name, kind, labelnames, buckets)
            family.help = fam.get("help", family.help)
            for row in rows:
                series = family.child(_label_key(family.labelnames, row["labels"]))
                if isinstance(series, Histogram):
                    previous = 0
                    cumulative = list(row["buckets"].values())
                    for slot, c in enumerate(cumulative):
                        series._counts[slot] = c - previous
                        previous = c
                    series._sum = float(row["sum"])
                    series._max = -math.inf if row.get("max") is None else float(row["max"])
                else:
                    series._value = float(row["value"])
        return reg


_STAGING = threading.local()


class MetricsStage:
    """The counters and histograms one task moved, held apart per registry
    until :meth:`commit` adds them (or the stage is dropped)."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[MetricsRegistry, MetricsRegistry]] = {}

    def registry_for(self, target: MetricsRegistry) -> MetricsRegistry:
        entry = self._held.get(id(target))
        if entry is None:
            entry = self._held[id(target)] = (target, MetricsRegistry())
        return entry[1]

    def commit(self) -> None:
        for target, held in self._held.values():
            target.merge(held)
        self._held.clear()


@contextlib.contextmanager
def staged_metrics() -> Iterator[MetricsStage]:
    """Within the block, this thread's counter and histogram updates (to any
    registry) are held in the yielded stage instead of moving the registry:
    the desk pool commits a task's figures only when its result is used, so a
    task abandoned at its deadline that returns later counts nothing (its
    trades and alerts were never delivered). Gauges write through."""
    previous = getattr(_STAGING, "stage", None)
    stage = MetricsStage()
    _STAGING.stage = stage
    try:
        yield stage
    finally:
        _STAGING.stage = previous


def reason_label(reason: Any) -> str:
    """A bounded metric label for a free-text reason: its category, the text
    before the first ``:`` ("within baseline: z=1.2 < 3, ..." -> "within_baseline").

    Reasons carry per-record detail (values, z-scores); as label values they
    would create one time series per distinct number.
    """
    return _label_of_head(str(reason).partition(":")[0])


@functools.lru_cache(maxsize=256)
def _label_of_head(head: str) -> str:
    # cached: a day has thousands of suppressed episodes but a handful of categories
    label = "".join(c if c.isalnum() else "_" for c in head.strip().lower()).strip("_")
    while "__" in label:
        label = label.replace("__", "_")
    return label[:48] or "unspecified"


def _fmt_float(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x)) + ".0"
    return repr(float(x))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


#: The package's default registry (``surv_kernel.metrics``).
metrics = MetricsRegistry()
