"""Metrics registry, Prometheus text, JSON logs, health summary, and RUNBOOK.md.

The RUNBOOK test runs every fenced block marked ```bash tested against this
package, with a live metrics endpoint to read, so a runbook command that stops
working fails CI.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surv_kernel import observability as obs
from surv_kernel.observability import (
    LAG_BUCKETS,
    LATENCY_BUCKETS,
    JsonFormatter,
    MetricsRegistry,
    configure_logging,
    health_report,
    health_summary,
)

REPO = Path(__file__).resolve().parents[1]


# -- registry ----------------------------------------------------------------


def test_counter_gauge_histogram_basics():
    reg = MetricsRegistry()
    reg.counter("surv_trades_decoded_total", desk="eq").inc(5)
    reg.counter("surv_trades_decoded_total", desk="eq").inc()
    reg.counter("surv_trades_decoded_total", desk="fx").inc(2)
    assert reg.value("surv_trades_decoded_total", desk="eq") == 6
    assert reg.total("surv_trades_decoded_total") == 8
    assert reg.total("surv_trades_decoded_total", desk="fx") == 2
    g = reg.gauge("surv_desks_in_flight")
    g.inc()
    g.inc()
    g.dec()
    assert reg.value("surv_desks_in_flight") == 1
    g.set(7)
    assert reg.value("surv_desks_in_flight") == 7
    h = reg.histogram("surv_detect_seconds", desk="eq")
    for v in (0.001, 0.02, 0.02, 3.0):
        h.observe(v)
    state = reg.value("surv_detect_seconds", desk="eq")
    assert state["count"] == 4
    assert state["sum"] == pytest.approx(3.041)
    assert state["max"] == 3.0
    assert reg.total("surv_detect_seconds") == 4


def test_reading_never_creates_a_series():
    reg = MetricsRegistry()
    reg.counter("surv_alerts_emitted_total", desk="eq").inc()
    assert reg.value("surv_alerts_emitted_total", desk="zz") == 0.0
    assert reg.value("surv_feed_fetch_seconds", desk="zz")["count"] == 0
    assert [labels for labels, _ in reg.series("surv_alerts_emitted_total")] == [{"desk": "eq"}]
    assert "zz" not in reg.render_prometheus()


def test_counter_cannot_go_down():
    with pytest.raises(ValueError, match="only goes up"):
        MetricsRegistry().counter("x_total").inc(-1)


def test_family_kind_and_labels_are_fixed():
    reg = MetricsRegistry()
    reg.counter("my_total", desk="a").inc()
    with pytest.raises(ValueError, match="is a counter, not a gauge"):
        reg.gauge("my_total", desk="a")
    with pytest.raises(ValueError, match="takes labels"):
        reg.counter("my_total", desk="a", reason="b")
    with pytest.raises(ValueError, match="takes labels"):
        reg.counter("my_total")
    # known names have their declared labels and kind from the first use
    with pytest.raises(ValueError, match="takes labels"):
        reg.counter("surv_desk_failures_total", desk="a")
    with pytest.raises(ValueError, match="is a counter"):
        reg.gauge("surv_alerts_emitted_total", desk="a")
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("1bad name")


def test_histogram_buckets_le_semantics_and_cumulative():
    reg = MetricsRegistry()
    h = reg.histogram("t_seconds", buckets=(1.0, 2.0, 5.0))
    for v in (0.5, 1.0, 1.5, 2.0, 9.0):
        h.observe(v)
    st_ = h.state()
    # a value equal to a bound counts in that bucket ("le" = less or equal)
    assert st_["buckets"] == {"1.0": 2, "2.0": 4, "5.0": 4, "+Inf": 5}
    with pytest.raises(ValueError, match="NaN"):
        h.observe(math.nan)
    with pytest.raises(ValueError, match="increasing"):
        reg.histogram("u_seconds", buckets=(2.0, 1.0))


def test_lag_histogram_uses_minute_buckets():
    reg = MetricsRegistry()
    assert reg.histogram("surv_alert_lag_seconds", desk="a").buckets == LAG_BUCKETS
    assert reg.histogram("surv_detect_seconds", desk="a").buckets == LATENCY_BUCKETS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 500.0), min_size=1, max_size=200))
def test_histogram_quantiles_bracket_the_exact_quantile(values):
    """The estimate lies in the same bucket as the exact order statistic."""
    h = MetricsRegistry().histogram("q_seconds")
    for v in values:
        h.observe(v)
    state = h.state()
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        est = state[f"p{round(q * 100)}"]
        exact = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        # the bucket (lo, hi] holding the exact value
        lo = max((b for b in LATENCY_BUCKETS if b < exact), default=0.0)
        hi = min(b for b in (*LATENCY_BUCKETS, math.inf) if b >= exact)
        assert lo - 1e-12 <= est <= min(hi, max(values)) + 1e-12
    assert state["count"] == len(values)
    assert state["sum"] == pytest.approx(sum(values))


def test_updates_are_thread_safe():
    reg = MetricsRegistry()
    n_threads, n = 8, 5000

    def work(k):
        for _ in range(n):
            reg.counter("c_total", t=str(k % 2)).inc()
            reg.histogram("h_seconds").observe(0.01)
            reg.gauge("g").inc()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.total("c_total") == n_threads * n
    assert reg.value("h_seconds")["count"] == n_threads * n
    assert reg.value("g") == n_threads * n


def test_snapshot_is_json_and_round_trips():
    reg = MetricsRegistry()
    reg.counter("surv_records_quarantined_total", desk="eq", reason="bad_currency").inc(3)
    reg.gauge("surv_pool_workers").set(6)
    for v in (0.2, 0.7, 12.0):
        reg.histogram("surv_feed_fetch_seconds", desk="eq").observe(v)
    snap = json.loads(json.dumps(reg.snapshot()))
    assert snap["surv_pool_workers"]["series"] == [{"labels": {}, "value": 6.0}]
    back = MetricsRegistry.from_snapshot(snap)
    assert back.snapshot() == reg.snapshot()
    assert back.render_prometheus() == reg.render_prometheus()


# -- Prometheus text -----------------------------------------------------------

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>([a-zA-Z_]\w*="(\\.|[^"\\])*",?)*)\})? '
    r"(?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|Inf|NaN))$"
)


def _parse_prometheus(text):
    """A strict reader of the text format: every line is HELP, TYPE or a sample."""
    samples, types = [], {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:\\.|[^"\\])*)"', m["labels"] or ""))
        samples.append((m["name"], labels, float(m["value"])))
    return samples, types


def test_render_prometheus_text_format():
    reg = MetricsRegistry()
    reg.counter("surv_alerts_emitted_total", desk='we"ird\\desk\nx').inc(2)
    reg.gauge("surv_pool_workers").set(3)
    h = reg.histogram("surv_desk_seconds", desk="eq")
    for v in (0.004, 0.3, 0.3, 400.0):
        h.observe(v)
    text = reg.render_prometheus()
    assert text.endswith("\n")
    assert "# HELP surv_alerts_emitted_total Alerts emitted." in text
    samples, types = _parse_prometheus(text)
    assert types == {
        "surv_alerts_emitted_total": "counter",
        "surv_desk_seconds": "histogram",
        "surv_pool_workers": "gauge",
    }
    (emitted,) = [s for s in samples if s[0] == "surv_alerts_emitted_total"]
    assert emitted[1]["desk"] == 'we\\"ird\\\\desk\\nx'  # escaped as the format requires
    assert emitted[2] == 2
    buckets = [(s[1]["le"], s[2]) for s in samples if s[0] == "surv_desk_seconds_bucket"]
    assert buckets[-1] == ("+Inf", 4)
    assert [c for _, c in buckets] == sorted(c for _, c in buckets)  # cumulative
    assert dict(buckets)["0.005"] == 1 and dict(buckets)["0.5"] == 3
    count = [s[2] for s in samples if s[0] == "surv_desk_seconds_count"]
    total = [s[2] for s in samples if s[0] == "surv_desk_seconds_sum"]
    assert count == [4] and total == [pytest.approx(400.604)]
    assert MetricsRegistry().render_prometheus() == ""


# -- logging -------------------------------------------------------------------


def test_json_formatter_carries_extra_fields_and_traceback():
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream=stream, logger="surv_kernel.test_obs")
    try:
        logger = logging.getLogger("surv_kernel.test_obs")
        logger.warning("feed %s slow", "eq", extra={"desk": "eq", "attempt": 2})
        try:
            raise ConnectionError("boom")
        except ConnectionError:
            logger.error("failed", exc_info=True, extra={"desk": "eq", "event": "x"})
        # idempotent: a second call replaces the handler instead of doubling lines
        configure_logging("DEBUG", stream=stream, logger="surv_kernel.test_obs")
        logger.info("once", extra={"desk": "fx"})
    finally:
        logging.getLogger("surv_kernel.test_obs").handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    first, second, third = lines
    assert first["message"] == "feed eq slow" and first["desk"] == "eq" and first["attempt"] == 2
    assert first["level"] == "WARNING" and first["logger"] == "surv_kernel.test_obs"
    assert first["ts"].endswith("+00:00")
    assert "ConnectionError: boom" in second["exc_info"]
    assert third["desk"] == "fx"
    assert isinstance(handler.formatter, JsonFormatter)


def test_json_formatter_survives_unserialisable_extra():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.obj = object()
    assert json.loads(JsonFormatter().format(record))["obj"].startswith("<object")


# -- health --------------------------------------------------------------------


def _registry_with(now):
    reg = MetricsRegistry()
    # eq healthy and fast
    reg.gauge("surv_desk_last_success_timestamp_seconds", desk="eq").set(now - 30)
    reg.counter("surv_trades_decoded_total", desk="eq").inc(1000)
    reg.histogram("surv_alert_lag_seconds", desk="eq").observe(40.0)
    # fx down: failed after its last success
    reg.gauge("surv_desk_last_success_timestamp_seconds", desk="fx").set(now - 900)
    reg.gauge("surv_desk_last_failure_timestamp_seconds", desk="fx").set(now - 20)
    reg.counter("surv_desk_failures_total", desk="fx", kind="feed_unavailable").inc()
    # rates late: alerts an hour after their trades
    reg.gauge("surv_desk_last_success_timestamp_seconds", desk="rates").set(now - 10)
    for _ in range(20):
        reg.histogram("surv_alert_lag_seconds", desk="rates").observe(3000.0)
    # credit degraded: quarantined records
    reg.gauge("surv_desk_last_success_timestamp_seconds", desk="credit").set(now - 10)
    reg.counter("surv_records_quarantined_total", desk="credit", reason="unknown_currency").inc(7)
    return reg


def test_health_report_statuses():
    now = 1_800_000_000.0
    rep = health_report(_registry_with(now), sla_seconds=900, now=now)
    desks = rep["desks"]
    assert desks["eq"]["status"] == "OK"
    assert desks["fx"]["status"] == "DOWN"
    assert desks["fx"]["failures"] == {"feed_unavailable": 1.0}
    assert desks["fx"]["last_success_age_s"] == pytest.approx(900)
    assert desks["rates"]["status"] == "LATE"
    assert desks["rates"]["lag_p95_s"] > 900
    assert desks["credit"]["status"] == "DEGRADED"
    assert desks["credit"]["quarantined"] == {"unknown_currency": 7.0}
    assert rep["status"] == "LATE"
    assert health_report(MetricsRegistry())["status"] == "NO DATA"


def test_health_summary_text_names_every_desk_and_problem():
    now = 1_800_000_000.0
    text = health_summary(_registry_with(now), now=now)
    assert text.splitlines()[0].startswith("surv_kernel health: LATE")
    for needle in ("desk fx: DOWN", "feed_unavailable=1", "desk rates: LATE", "unknown_currency=7"):
        assert needle in text
    assert "no desk activity" in health_summary(MetricsRegistry())


def test_serve_metrics_endpoints():
    reg = _registry_with(1_800_000_000.0)
    server = obs.serve_metrics(0, registry=reg)
    try:

        def get(path):
            with urllib.request.urlopen(server.url + path, timeout=5) as r:
                return r.read().decode()

        assert get("/metrics") == reg.render_prometheus()
        assert "desk fx: DOWN" in get("/health")
        assert json.loads(get("/health.json"))["desks"]["fx"]["status"] == "DOWN"
        assert MetricsRegistry.from_snapshot(json.loads(get("/snapshot.json"))).snapshot() == (
            reg.snapshot()
        )
        with pytest.raises(urllib.error.HTTPError):
            get("/nope")
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_port_env_starts_one_server_from_the_desk_pool(monkeypatch):
    from surv_kernel.legacy.desks import process_all_desks

    monkeypatch.setattr(obs.health, "_env_server", None)
    monkeypatch.setenv(obs.ENV_METRICS_PORT, "0")  # 0: any free port
    process_all_desks(["A"], analyze=lambda d: [], registry=MetricsRegistry())
    server = obs.health._env_server
    try:
        assert server
        process_all_desks(["B"], analyze=lambda d: [], registry=MetricsRegistry())
        assert obs.health._env_server is server  # once per process
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
            assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_port_env_that_cannot_bind_is_logged_not_fatal(monkeypatch, caplog):
    monkeypatch.setattr(obs.health, "_env_server", None)
    monkeypatch.setenv(obs.ENV_METRICS_PORT, "not-a-port")
    with caplog.at_level(logging.ERROR, logger="surv_kernel"):
        assert obs.serve_metrics_from_env() is False
    assert any(r.event == "metrics_serve_failed" for r in caplog.records)


def test_module_cli_reads_a_saved_snapshot(tmp_path, capsys):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(_registry_with(1_800_000_000.0).snapshot()))
    assert obs.health.main(["health", "--file", str(path)]) == 0
    assert "desk fx: DOWN" in capsys.readouterr().out
    assert obs.health.main(["metrics", "--file", str(path), "--grep", "failures"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all("failures" in line for line in out)


# -- RUNBOOK.md ----------------------------------------------------------------

_BLOCK = re.compile(r"^([ \t]*)```bash tested\n(.*?)^\1```", re.S | re.M)


def runbook_blocks():
    text = (REPO / "RUNBOOK.md").read_text(encoding="utf-8")
    return [textwrap.dedent(indent + body) for indent, body in _BLOCK.findall(text)]


def test_runbook_has_tested_commands_for_every_incident():
    text = (REPO / "RUNBOOK.md").read_text(encoding="utf-8")
    for heading in ("Alerts are late", "A desk feed is down", "Memory", "Numba", "Replay", "audit"):
        assert re.search(rf"^#+ .*{heading}", text, re.M | re.I), heading
    assert len(runbook_blocks()) >= 8
    # every fenced bash block is either tested or deliberately not (none today)
    assert text.count("```bash") == len(runbook_blocks())


DEAD_DESK = "NY Rates"


@pytest.fixture(scope="module")
def live_pipeline(tmp_path_factory):
    """A process running the pipeline on a synthetic day with one dead desk,
    logging JSON to a file and serving its metrics, as the runbook assumes a
    production process does; plus the feed archive and the delivered ids."""
    tmp = tmp_path_factory.mktemp("runbook")
    env = dict(os.environ)
    if env.get("PYTHONPATH"):  # a dev run with PYTHONPATH=src:python; commands run elsewhere
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p
        )
    env.update(
        SURV_LOG=str(tmp / "pipeline.jsonl"),
        SURV_FEED_ARCHIVE=str(tmp / "feeds"),
        SURV_DELIVERED=str(tmp / "delivered.txt"),
    )
    ready = tmp / "url"
    script = tmp / "host.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            from surv_kernel import observability as obs
            from surv_kernel.legacy import desks
            obs.configure_logging("INFO", stream=open(os.environ["SURV_LOG"], "a"))
            server = obs.serve_metrics(0)
            report = desks.run_demo(dead_desks=[{DEAD_DESK!r}],
                                    archive_dir=os.environ["SURV_FEED_ARCHIVE"])
            assert list(report.failures) == [{DEAD_DESK!r}], report.failures
            with open(os.environ["SURV_DELIVERED"], "w") as fh:
                for alerts in report.alerts_by_desk.values():
                    fh.writelines(a["alert_id"] + "\\n" for a in alerts)
            with open({str(ready)!r} + ".tmp", "w") as fh:
                fh.write(server.url)
            os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
            time.sleep(300)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"runbook host process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                pytest.fail("runbook host process did not come up in 120 s")
            time.sleep(0.1)
        env["SURV_METRICS_URL"] = ready.read_text()
        yield env
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("index", range(len(runbook_blocks())))
def test_runbook_command_works(index, live_pipeline, tmp_path):
    block = runbook_blocks()[index]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # `python` in the runbook is the interpreter running the tests (a wrapper,
    # not a symlink: a symlinked venv interpreter would lose its site-packages)
    wrapper = bindir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = dict(live_pipeline)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (
        f"RUNBOOK block {index} failed:\n{block}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}"
    )
    assert result.stdout.strip(), f"RUNBOOK block {index} printed nothing:\n{block}"


def test_health_command_with_nothing_listening_is_one_line_not_a_traceback(tmp_path):
    """Issue 13: with nothing listening the command printed a 40-line traceback."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [sys.executable, "-m", "surv_kernel.observability", "health", "--url",
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 3 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "cannot read metrics from" in line and "SURV_METRICS_PORT" in line
    prom = tmp_path / "metrics.prom"
    prom.write_text("# TYPE surv_alerts_emitted_total counter\nsurv_alerts_emitted_total 3\n")
    r = subprocess.run(
        [sys.executable, "-m", "surv_kernel.observability", "health", "--file", str(prom)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "not a metrics snapshot" in r.stderr
    assert "Traceback" not in r.stderr
