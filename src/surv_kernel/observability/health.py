"""Health from the metrics: the report and one-screen summary, the
``/metrics`` + ``/health`` endpoint, and the ``python -m
surv_kernel.observability`` command."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .metrics import METRICS, MetricsRegistry, metrics


def health_report(
    registry: MetricsRegistry | None = None,
    *,
    sla_seconds: float = 900.0,
    now: float | None = None,
) -> dict[str, Any]:
    """Per-desk and overall health from the metrics, as a dict.

    ``status`` is ``"OK"``, ``"LATE"`` (alert lag p95 over ``sla_seconds``),
    ``"DEGRADED"`` (a desk's last analysis failed, or records were quarantined)
    or ``"DOWN"`` (no desk's last analysis succeeded); each desk has its own
    status and the figures behind it.
    """
    reg = registry if registry is not None else metrics
    now = time.time() if now is None else now
    desks: set[str] = set()
    for name in METRICS:
        if "desk" in METRICS[name][1]:
            desks.update(labels["desk"] for labels, _ in reg.series(name))
    per_desk: dict[str, Any] = {}
    for desk in sorted(desks):
        last_ok = reg.value("surv_desk_last_success_timestamp_seconds", desk=desk) or None
        last_fail = reg.value("surv_desk_last_failure_timestamp_seconds", desk=desk) or None
        failures = {
            labels["kind"]: v
            for labels, v in reg.series("surv_desk_failures_total")
            if labels["desk"] == desk
        }
        quarantined = {
            labels["reason"]: v
            for labels, v in reg.series("surv_records_quarantined_total")
            if labels["desk"] == desk
        }
        fetch = reg.value("surv_feed_fetch_seconds", desk=desk)
        lag = reg.value("surv_alert_lag_seconds", desk=desk)
        desk_time = reg.value("surv_desk_seconds", desk=desk)
        detect_time = reg.value("surv_detect_seconds", desk=desk)
        decode_time = reg.value("surv_decode_seconds", desk=desk)
        if last_fail is not None and (last_ok is None or last_fail >= last_ok):
            status = "DOWN"
        elif lag["count"] and lag["p95"] is not None and lag["p95"] > sla_seconds:
            status = "LATE"
        elif failures or quarantined:
            status = "DEGRADED"
        else:
            status = "OK"
        per_desk[desk] = {
            "status": status,
            "last_success_age_s": None if last_ok is None else now - last_ok,
            "last_failure_age_s": None if last_fail is None else now - last_fail,
            "failures": failures,
            "retries": reg.value("surv_feed_retries_total", desk=desk),
            "trades_decoded": reg.value("surv_trades_decoded_total", desk=desk),
            "quarantined": quarantined,
            "alerts_emitted": reg.value("surv_alerts_emitted_total", desk=desk),
            "alerts_suppressed": reg.total("surv_alerts_suppressed_total", desk=desk),
            "fetch_p95_s": fetch["p95"],
            "decode_p95_s": decode_time["p95"],
            "detect_p95_s": detect_time["p95"],
            "desk_p95_s": desk_time["p95"],
            "lag_p50_s": lag["p50"],
            "lag_p95_s": lag["p95"],
            "lag_max_s": lag["max"],
        }
    statuses = [d["status"] for d in per_desk.values()]
    if not statuses:
        overall = "NO DATA"
    elif all(s == "DOWN" for s in statuses):
        overall = "DOWN"
    elif "LATE" in statuses:
        overall = "LATE"
    elif any(s != "OK" for s in statuses):
        overall = "DEGRADED"
    else:
        overall = "OK"
    return {
        "status": overall,
        "sla_seconds": sla_seconds,
        "desks_in_flight": reg.value("surv_desks_in_flight"),
        "pool_workers": reg.value("surv_pool_workers"),
        "desks": per_desk,
    }


def health_summary(
    registry: MetricsRegistry | None = None,
    *,
    sla_seconds: float = 900.0,
    now: float | None = None,
) -> str:
    """:func:`health_report` as a few lines of text for a terminal."""
    rep = health_report(registry, sla_seconds=sla_seconds, now=now)

    def s(x: float | None) -> str:
        """Durations in the unit an operator reads at a glance."""
        if x is None:
            return "-"
        for limit, scale, unit in ((1.0, 1e-3, "ms"), (120.0, 1.0, "s"), (7200.0, 60.0, "min")):
            if abs(x) < limit:
                return f"{x / scale:.3g}{unit}"
        return f"{x / 3600.0:.1f}h"

    lines = [
        f"surv_kernel health: {rep['status']}  (SLA {sla_seconds:.0f}s; "
        f"pool {rep['pool_workers']:.0f} workers, {rep['desks_in_flight']:.0f} desks in flight)"
    ]
    if not rep["desks"]:
        lines.append("  no desk activity recorded in this process yet")
    for desk, d in rep["desks"].items():
        fails = ", ".join(f"{k}={v:.0f}" for k, v in sorted(d["failures"].items())) or "none"
        quar = ", ".join(f"{k}={v:.0f}" for k, v in sorted(d["quarantined"].items())) or "none"
        lines.append(
            f"  desk {desk}: {d['status']}  last ok {s(d['last_success_age_s'])} ago, "
            f"last failure {s(d['last_failure_age_s'])} ago"
        )
        lines.append(
            f"    failures {fails}; retries {d['retries']:.0f}; trades {d['trades_decoded']:.0f}; "
            f"quarantined {quar}"
        )
        lines.append(
            f"    alerts {d['alerts_emitted']:.0f} (suppressed {d['alerts_suppressed']:.0f}); "
            f"lag p50 {s(d['lag_p50_s'])} p95 {s(d['lag_p95_s'])} max {s(d['lag_max_s'])}"
        )
        lines.append(
            f"    p95 fetch {s(d['fetch_p95_s'])} decode {s(d['decode_p95_s'])} "
            f"detect {s(d['detect_p95_s'])} desk total {s(d['desk_p95_s'])}"
        )
    return "\n".join(lines)


# -- exposing the metrics of a running process --------------------------------

#: Set this (e.g. to 9464) in a service's environment and the first
#: ``process_all_desks`` call serves the default registry on that port.
ENV_METRICS_PORT = "SURV_METRICS_PORT"
DEFAULT_METRICS_URL = "http://127.0.0.1:9464"

_server_lock = threading.Lock()
_env_server: Any = None


def serve_metrics(
    port: int = 9464, host: str = "127.0.0.1", registry: MetricsRegistry | None = None
) -> Any:
    """Serve the registry over HTTP from a daemon thread; returns the server
    (``.url``; ``.shutdown()`` then ``.server_close()`` to stop it).

    ``/metrics`` Prometheus text, ``/health`` :func:`health_summary`,
    ``/health.json`` :func:`health_report`, ``/snapshot.json`` the snapshot.
    ``port=0`` picks a free port. Binds to localhost unless told otherwise.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    reg = registry if registry is not None else metrics

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = reg.render_prometheus(), "text/plain; version=0.0.4"
            elif path == "/health":
                body, ctype = health_summary(reg) + "\n", "text/plain"
            elif path == "/health.json":
                body, ctype = json.dumps(health_report(reg), default=str), "application/json"
            elif path == "/snapshot.json":
                body, ctype = json.dumps(reg.snapshot(), default=str), "application/json"
            else:
                self.send_error(404, "try /metrics, /health, /health.json, /snapshot.json")
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logging.getLogger(__name__).debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.url = f"http://{host}:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="surv-metrics", daemon=True)
    thread.start()
    logging.getLogger(__name__).info(
        "serving metrics on %s", server.url, extra={"event": "metrics_served", "url": server.url}
    )
    return server


def serve_metrics_from_env() -> Any:
    """Start :func:`serve_metrics` once per process if ``SURV_METRICS_PORT`` is set.

    A port already in use is logged (ERROR) and not retried; the pipeline
    runs on without the endpoint rather than fail a surveillance run.
    """
    global _env_server
    import os

    port = os.environ.get(ENV_METRICS_PORT, "").strip()
    if not port or _env_server is not None:
        return _env_server
    with _server_lock:
        if _env_server is None:
            try:
                _env_server = serve_metrics(
                    int(port), os.environ.get("SURV_METRICS_HOST", "127.0.0.1")
                )
            except (OSError, ValueError) as exc:
                logging.getLogger(__name__).error(
                    "cannot serve metrics on %s=%r: %s",
                    ENV_METRICS_PORT,
                    port,
                    exc,
                    extra={"event": "metrics_serve_failed", "error": repr(exc)},
                )
                _env_server = False
    return _env_server


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m surv_kernel.observability {health,metrics,json} [--url URL | --file F]``."""
    import argparse
    import os
    import urllib.request

    parser = argparse.ArgumentParser(
        prog="python -m surv_kernel.observability",
        description="Read the metrics of a running surv_kernel process (or a saved snapshot).",
    )
    parser.add_argument("what", choices=["health", "metrics", "json"])
    parser.add_argument(
        "--url",
        default=os.environ.get("SURV_METRICS_URL", DEFAULT_METRICS_URL),
        help="base URL of the process (default $SURV_METRICS_URL or %(default)s)",
    )
    parser.add_argument("--file", help="a saved /snapshot.json instead of a live process")
    parser.add_argument("--grep", default="", help="metrics: only lines containing this")
    parser.add_argument("--sla", type=float, default=900.0, help="health: SLA seconds")
    args = parser.parse_args(argv)
    prog = "python -m surv_kernel.observability"
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as fh:
                reg = MetricsRegistry.from_snapshot(json.load(fh))
        else:
            url = args.url.rstrip("/") + "/snapshot.json"
            with urllib.request.urlopen(url, timeout=10) as r:
                reg = MetricsRegistry.from_snapshot(json.load(r))
    except OSError as exc:  # URLError is an OSError: nothing listening, refused, timed out
        where = args.file or args.url
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        hint = (
            ""
            if args.file
            else " (is the process running with SURV_METRICS_PORT set, or 'surv-kernel serve "
            "--metrics-port'? --url or $SURV_METRICS_URL say where)"
        )
        print(f"{prog}: cannot read metrics from {where}: {reason}{hint}", file=sys.stderr)
        return 3
    except (ValueError, KeyError, TypeError) as exc:
        print(
            f"{prog}: {args.file or args.url} is not a metrics snapshot ({exc}); --file reads "
            "the JSON of /snapshot.json, not Prometheus text",
            file=sys.stderr,
        )
        return 2
    if args.what == "health":
        print(health_summary(reg, sla_seconds=args.sla))
    elif args.what == "metrics":
        for line in reg.render_prometheus().splitlines():
            if args.grep in line:
                print(line)
    else:
        print(json.dumps(health_report(reg, sla_seconds=args.sla), indent=2, default=str))
    return 0
