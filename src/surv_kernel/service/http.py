"""``/metrics`` and ``/health`` of the service, for the whole life of the process.

Started before the state is restored (a long restore shows ``STARTING``, not
a refused connection) and stopped after the final checkpoint (``STOPPING``
meanwhile). Bound to 127.0.0.1 by default.

``/metrics``
    The package registry in the Prometheus text format (the service's
    ``surv_service_*`` families and the stream's ``surv_stream_*``).
``/health``
    One line per fact for a terminal: the status, then one line per desk.
``/health.json``
    The same as JSON (see :meth:`Service._refresh_health
    <surv_kernel.service.loop.Service>`).

Status: ``OK``; ``DEGRADED`` when a desk is ``SILENT`` (no new lines for
``--silence-after`` seconds: DOWN upstream, not a quiet market);
``STARTING`` / ``STOPPING`` around the loop. ``/health`` and ``/health.json``
answer HTTP 200 when the status is OK and 503 otherwise, so a load balancer
or a probe (``curl -f``) can act on the code alone.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..observability import MetricsRegistry

__all__ = ["health_text", "start_endpoint"]

log = logging.getLogger(__name__)


def health_text(h: dict[str, Any]) -> str:
    lines = [
        f"surv-kernel serve: {h['status']}"
        + (f"  silent desks: {', '.join(h['silent_desks'])}" if h.get("silent_desks") else "")
    ]
    if "uptime_s" in h:
        p50, p95 = h.get("alert_latency_p50_s"), h.get("alert_latency_p95_s")
        lat = "-" if p50 is None else f"p50 {p50:.3f}s p95 {p95:.3f}s"
        lines.append(
            f"  up {h['uptime_s']:.0f}s; last checkpoint {h['last_checkpoint_age_s']:.1f}s ago; "
            f"open alerts {h['open_alerts']}; events {h['events']}; trade->alert {lat}"
        )
    for desk, d in h.get("desks", {}).items():
        lag = d["last_trade_lag_s"]
        lines.append(
            f"  desk {desk}: {d['status']}  last data {d['last_data_age_s']:.1f}s ago; "
            f"newest trade {'-' if lag is None else f'{lag:.1f}s'} old; "
            f"{d['bytes_behind']} bytes unread; trades {d['trades']:.0f}; "
            f"quarantined {d['quarantined'] or 'none'}"
        )
    return "\n".join(lines) + "\n"


def start_endpoint(
    port: int,
    health: Callable[[], dict[str, Any]],
    registry: MetricsRegistry,
    host: str = "127.0.0.1",
) -> ThreadingHTTPServer:
    """Serve from a daemon thread; ``.url`` on the returned server. Port 0
    picks a free port. Raises OSError if the port cannot be bound."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            code = 200
            if path == "/metrics":
                body, ctype = registry.render_prometheus(), "text/plain; version=0.0.4"
            elif path in ("/health", "/health.json"):
                h = health()
                code = 200 if h["status"] == "OK" else 503
                if path == "/health":
                    body, ctype = health_text(h), "text/plain"
                else:
                    body, ctype = json.dumps(h, default=str), "application/json"
            else:
                self.send_error(404, "try /metrics, /health, /health.json")
                return
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.url = f"http://{host}:{server.server_address[1]}"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="surv-serve-http", daemon=True).start()
    return server
