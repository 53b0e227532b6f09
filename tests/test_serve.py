"""``surv-kernel serve`` against real processes.

The reference for the service is, in this order: batch ``detect`` on the
day's trades (the closed alerts must equal it, ids and content, because the
stream's closed alerts do), and an uninterrupted ``serve`` run on the same
lines (a run killed with SIGKILL several times and restarted must publish
the same alerts, each with exactly one ``open`` and one ``closed`` event and
no ``(alert_id, revision)`` twice). The desk files are written by the test
as a desk would: appended slice by slice, with partial lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from surv_kernel.batch import Dictionaries, TradeBatch
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.ingest import decode_feed
from surv_kernel.model import DetectionConfig, calibrate, detect
from surv_kernel.sealed import SealError
from surv_kernel.service.sinks import JsonLinesFileSink, ServiceEvent
from surv_kernel.service.sources import Cursor, TailSource

LATENESS_S = 3600  # a slice is 30 min of event time; desks of one slice may be read apart


# -- a day of desk files ------------------------------------------------------------------


class Day:
    """A scenario day as NDJSON lines per desk, cut in 30-minute slices, plus
    an end-of-day trade (a day later) that closes every episode; its batch
    detection and baselines file."""

    def __init__(self, tmp: Path) -> None:
        d = Dictionaries()
        hist = generate_day(11, n_traders=40, population_seed=3, date="2024-03-13")
        day = generate_day(12, n_traders=40, population_seed=3, date="2024-03-14")
        code = {s.name: s.code for s in day.desks}
        hist_parts = [
            decode_feed(data, code[name], dictionaries=d)[0] for name, data in hist.feeds().items()
        ]
        self.baselines = calibrate(TradeBatch.concat(hist_parts), DetectionConfig())
        self.baselines_path = tmp / "baselines.json"
        self.baselines.save(self.baselines_path)
        per_desk = {code[name]: msgspec.json.decode(data) for name, data in day.feeds().items()}
        t0 = min(t["timestamp"] for ts in per_desk.values() for t in ts)
        t1 = max(t["timestamp"] for ts in per_desk.values() for t in ts)
        self.slices: list[dict[str, list[bytes]]] = []
        k = 0
        while t0 + k * 1800 <= t1:
            lo, hi = t0 + k * 1800, t0 + (k + 1) * 1800
            self.slices.append(
                {
                    desk: [msgspec.json.encode(t) + b"\n" for t in ts if lo <= t["timestamp"] < hi]
                    for desk, ts in per_desk.items()
                }
            )
            k += 1
        first_desk = sorted(per_desk)[0]
        eod = {
            "trade_id": "EOD-1",
            "asset_class": "equity",
            "notional": 1.0,
            "currency": "USD",
            "trader_id": "EOD",
            "timestamp": t1 + 86_400.0,
            "surveillance_required": False,
        }
        self.eod = {first_desk: [msgspec.json.encode(eod) + b"\n"]}
        self.desks = sorted(per_desk)
        d2 = Dictionaries()
        lines = defaultdict(list)
        for sl in [*self.slices, self.eod]:
            for desk, ls in sl.items():
                lines[desk] += ls
        parts = [decode_feed(b"".join(ls), desk, dictionaries=d2)[0] for desk, ls in lines.items()]
        det = detect(TradeBatch.concat(parts), DetectionConfig(), self.baselines)
        self.alerts = {a.alert_id: msgspec.to_builtins(a.to_dict()) for a in det.alerts}
        assert len(self.alerts) >= 5


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return Day(tmp_path_factory.mktemp("day"))


def append(
    feeds: Path, part: dict[str, list[bytes]], rng: random.Random | None = None, between=None
) -> None:
    """Append a slice to the desk files; with ``rng``, each desk's last line
    is written in two steps with a pause, as a desk mid-write (``between()``
    is called once in such a pause: the test kills the service there)."""
    for desk, lines in part.items():
        if not lines:
            continue
        data = b"".join(lines)
        with open(feeds / f"{desk}.ndjson", "ab") as f:
            if rng is not None and len(data) > 10:
                cut = len(data) - rng.randint(1, min(len(lines[-1]), 60))
                f.write(data[:cut])
                f.flush()
                time.sleep(0.02)
                if between is not None:
                    between()
                    between = None
                data = data[cut:]
            f.write(data)


class Serve:
    """One ``surv-kernel serve`` process."""

    def __init__(self, tmp: Path, day: Day, *extra: str) -> None:
        self.tmp = tmp
        self.feeds = tmp / "feeds"
        self.state = tmp / "state"
        self.out = tmp / "events.jsonl"
        self.feeds.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.day = day
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        endpoint = self.state / "endpoint"
        if endpoint.exists():
            endpoint.unlink()
        cmd = [sys.executable, "-m", "surv_kernel", "serve", *self.args()]
        self.stderr = open(self.tmp / "stderr.txt", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self.stderr, env=self.env()
        )
        deadline = time.monotonic() + 60
        while not endpoint.exists():
            assert self.proc.poll() is None, (self.tmp / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        self.url = endpoint.read_text().strip()

    def env(self) -> dict[str, str] | None:
        return None

    def args(self) -> list[str]:
        return [
            "--feeds",
            str(self.feeds),
            "--state",
            str(self.state),
            "--out",
            str(self.out),
            "--baselines",
            str(self.day.baselines_path),
            "--metrics-port",
            "0",
            "--lateness",
            str(LATENESS_S),
            "--checkpoint-every",
            "0.3",
            *self.extra,
        ]

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.stderr.close()
        return code

    def events(self) -> list[dict]:
        if not self.out.exists():
            return []
        data = self.out.read_bytes()
        return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]

    def wait_for(self, predicate, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events()
            if predicate(ev):
                return ev
            assert self.proc is not None and self.proc.poll() is None, (
                self.tmp / "stderr.txt"
            ).read_text()
            assert time.monotonic() < deadline, f"timed out; {Counter(e['status'] for e in ev)}"
            time.sleep(0.05)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def all_closed(n: int):
    return lambda ev: sum(e["status"] == "closed" for e in ev) >= n


def check_events(events: list[dict]) -> dict[str, dict]:
    """The published-once rules; returns the closed alerts by id."""
    seen = set()
    last_rev: dict[str, int] = {}
    statuses: dict[str, Counter] = defaultdict(Counter)
    closed = {}
    for e in events:
        key = (e["alert_id"], e["revision"])
        assert key not in seen, f"event published twice: {key}"
        seen.add(key)
        assert e["revision"] > last_rev.get(e["alert_id"], -1), e  # strictly increasing
        assert (e["revision"] == 0) == (e["status"] == "open"), e
        last_rev[e["alert_id"]] = e["revision"]
        statuses[e["alert_id"]][e["status"]] += 1
        assert e["alert"]["alert_id"] == e["alert_id"]
        if e["status"] == "closed":
            closed[e["alert_id"]] = e["alert"]
    for aid, c in statuses.items():
        assert c["open"] == 1 and c["closed"] + c["withdrawn"] == 1, (aid, c)
    return closed


def feed_day(svc: Serve, day: Day, kill_at: set[int], seed: int) -> None:
    """Append the day slice by slice; at the slices in ``kill_at`` SIGKILL
    the service at a random moment (while a desk's line is half written, or
    after the slice; the service is somewhere in a cycle or a checkpoint
    every 0.3 s) and start it again."""
    rng = random.Random(seed)

    def kill_and_restart() -> None:
        time.sleep(rng.uniform(0.0, 0.3))
        assert svc.kill() == -signal.SIGKILL
        svc.start()

    for k, part in enumerate(day.slices):
        mid = k in kill_at and rng.random() < 0.5
        append(svc.feeds, part, rng, kill_and_restart if mid else None)
        time.sleep(rng.uniform(0.0, 0.25))
        if k in kill_at and not mid:
            kill_and_restart()
    append(svc.feeds, day.eod)


# -- real processes -----------------------------------------------------------------------


def test_kill_9_and_restart_publish_the_uninterrupted_runs_alerts_once(day, tmp_path):
    """SIGKILL six times at random moments of the day (see feed_day), restart,
    go on appending: no alert event lost or repeated, and the closed alerts
    equal an uninterrupted run's and batch detection's."""
    whole = Serve(tmp_path / "whole", day)
    whole.start()
    feed_day(whole, day, set(), seed=1)
    full = check_events(whole.wait_for(all_closed(len(day.alerts))))
    assert whole.kill(signal.SIGTERM) == 0
    assert full == day.alerts  # the service's closed alerts are batch detection's

    killed = Serve(tmp_path / "killed", day, "--log-format", "json")
    killed.start()
    n = len(day.slices)
    kills = {1, n // 4, n // 2, n // 2 + 1, 3 * n // 4, n - 1}
    feed_day(killed, day, kills, seed=2)
    events = killed.wait_for(all_closed(len(day.alerts)))
    assert killed.kill(signal.SIGTERM) == 0
    closed = check_events(killed.events())
    assert closed == full
    assert {e["alert_id"] for e in events} == {e["alert_id"] for e in whole.events()}
    # each start resumed from a checkpoint, or from byte 0 if killed before the first
    log = (tmp_path / "killed" / "stderr.txt").read_text()
    restored, fresh = log.count('"service_restored"'), log.count('"service_fresh_start"')
    # (a process killed within moments of its start may not have logged yet)
    assert restored + fresh <= len(kills) + 1 and restored >= 3, (restored, fresh)


def test_alerts_within_seconds_health_silence_and_sigterm(day, tmp_path):
    """Live trades (timestamped now) appended to two desks: the open event is
    written within seconds; /metrics and /health answer; a desk that stops
    is SILENT and /health DEGRADED (503); SIGTERM exits 0 quickly with a
    final checkpoint a new process restores."""
    svc = Serve(tmp_path, day, "--silence-after", "1.5")
    svc.start()
    code, body = svc.get("/health.json")
    assert json.loads(body)["status"] in ("OK", "DEGRADED", "STARTING")
    now = time.time()
    rows = []
    for i in range(12):  # a burst far above the equity floor
        rows.append(
            {
                "trade_id": f"L{i}",
                "asset_class": "equity",
                "notional": 5e6 * (i + 1),
                "currency": "USD",
                "trader_id": "LIVE1",
                "timestamp": now + 0.01 * i,
                "surveillance_required": True,
            }
        )
    t_append = time.time()
    append(svc.feeds, {"A": [msgspec.json.encode(r) + b"\n" for r in rows]})
    append(svc.feeds, {"B": [msgspec.json.encode({**rows[0], "trade_id": "B0"}) + b"\n"]})
    ev = svc.wait_for(lambda ev: any(e["status"] == "open" for e in ev), timeout=10)
    assert time.time() - t_append < 5.0
    opened = [e for e in ev if e["status"] == "open"]
    assert opened[0]["alert"]["trader_id"] == "LIVE1" and opened[0]["revision"] == 0
    code, body = svc.get("/metrics")
    assert code == 200 and b"surv_service_trades_total" in body
    assert b'surv_service_events_total{status="open"}' in body
    # A keeps trading, B goes quiet: B is SILENT after 1.5 s
    deadline = time.monotonic() + 15
    while True:
        append(
            svc.feeds,
            {
                "A": [
                    msgspec.json.encode(
                        {**rows[0], "trade_id": f"K{time.monotonic_ns()}", "timestamp": time.time()}
                    )
                    + b"\n"
                ]
            },
        )
        code, body = svc.get("/health.json")
        h = json.loads(body)
        if h["status"] == "DEGRADED":
            break
        assert time.monotonic() < deadline, h
        time.sleep(0.2)
    assert code == 503 and h["silent_desks"] == ["B"]
    assert h["desks"]["A"]["status"] == "OK" and h["desks"]["B"]["status"] == "SILENT"
    code, text = svc.get("/health")
    assert code == 503 and b"desk B: SILENT" in text
    assert b'surv_service_desk_silent{desk="B"} 1' in svc.get("/metrics")[1]
    time.sleep(0.5)  # the service reads the last lines
    t = time.monotonic()
    assert svc.kill(signal.SIGTERM) == 0
    assert time.monotonic() - t < 5.0
    # the final checkpoint covers every line read: a restart re-reads nothing
    svc.start()
    time.sleep(0.5)
    n = len(svc.events())
    code, body = svc.get("/metrics")
    assert svc.kill(signal.SIGINT) == 130
    assert len(svc.events()) == n
    assert b'surv_service_trades_total{desk="A"}' not in body  # nothing pushed again


def test_a_damaged_state_file_is_one_line_and_exit_5(day, tmp_path):
    svc = Serve(tmp_path, day)
    svc.start()
    append(svc.feeds, day.slices[0])
    time.sleep(1.0)
    assert svc.kill(signal.SIGTERM) == 0
    ck = tmp_path / "state" / "checkpoint"
    data = bytearray(ck.read_bytes())
    data[len(data) // 2] ^= 0x10
    ck.write_bytes(bytes(data))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "surv_kernel",
            "serve",
            "--feeds",
            str(svc.feeds),
            "--state",
            str(svc.state),
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 5, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert "damaged" in lines[-1] and "SHA-256" in lines[-1]


# -- RUNBOOK.md section 9, run against a real process -------------------------------------

_SERVE_BLOCK = re.compile(r"^```sh serve-tested\n(.*?)^```", re.S | re.M)


def serve_runbook_blocks() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "RUNBOOK.md").read_text(encoding="utf-8")
    return _SERVE_BLOCK.findall(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runbook_service_blocks_work_against_a_real_serve(day, tmp_path):
    """Start (block 0), health (1), metrics (2) while trades arrive; SIGKILL;
    start again with block 0; stop (3); the after-crash check (4)."""
    blocks = serve_runbook_blocks()
    assert len(blocks) == 5
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in (("python", sys.executable), ("surv-kernel", None)):
        script = bindir / name
        run = f'"{target}"' if target else f'"{sys.executable}" -m surv_kernel'
        script.write_text(f'#!/bin/sh\nexec {run} "$@"\n')
        script.chmod(0o755)
    env = dict(os.environ)
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        SURV_FEEDS=str(tmp_path / "feeds"),
        SURV_STATE=str(tmp_path / "state"),
        SURV_BASELINES=str(day.baselines_path),
        SURV_OUT=str(tmp_path / "events.jsonl"),
        SURV_SERVE_PORT=str(free_port()),
    )
    (tmp_path / "feeds").mkdir()
    (tmp_path / "state").mkdir()

    def sh(i: int) -> str:
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", blocks[i]],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and r.stdout.strip(), (i, blocks[i], r.stdout, r.stderr)
        return r.stdout

    def pid() -> int:
        return int((tmp_path / "state" / "serve.pid").read_text())

    out = tmp_path / "events.jsonl"
    try:
        assert "serve pid" in sh(0)
        for part in day.slices[: len(day.slices) // 2]:
            append(tmp_path / "feeds", part)
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_bytes().count(b'"open"') >= 3):
            assert time.monotonic() < deadline, (tmp_path / "state" / "serve.log").read_text()
            time.sleep(0.1)
        health = sh(1)
        assert "surv-kernel serve: OK" in health and "health: OK" in health
        assert "surv_service_trades_total" in sh(2)
        deadline = time.monotonic() + 30  # the first checkpoint (--checkpoint-every 10)
        while not (tmp_path / "state" / "checkpoint").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(pid(), signal.SIGKILL)
        time.sleep(0.2)
        (tmp_path / "state" / "endpoint").unlink()
        assert "serve pid" in sh(0)  # restart after the crash: the same command
        for part in [*day.slices[len(day.slices) // 2 :], day.eod]:
            append(tmp_path / "feeds", part)
        deadline = time.monotonic() + 60
        while out.read_bytes().count(b'"closed"') < len(day.alerts):
            assert time.monotonic() < deadline, (tmp_path / "state" / "serve.log").read_text()
            time.sleep(0.1)
        assert "stopped; checkpoint of" in sh(3)
        assert f"{len(day.alerts)} alerts, each opened once, no duplicates" in sh(4)
        assert '"service_restored"' in (tmp_path / "state" / "serve.log").read_text()
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(pid(), signal.SIGKILL)


# -- the parts, in process ----------------------------------------------------------------


def test_tail_source_waits_for_partial_lines_and_follows_rotation_and_truncation(tmp_path):
    path = tmp_path / "D.ndjson"
    src = TailSource("D", path)
    assert src.poll(1 << 20) is None  # no file yet
    path.write_bytes(b'{"a":1}\n{"a":')
    c = src.poll(1 << 20)
    assert c.data == b'{"a":1}\n' and c.end.offset == 8
    assert src.poll(1 << 20) is None  # the partial line waits
    with open(path, "ab") as f:
        f.write(b"2}\n")
    assert src.poll(1 << 20).data == b'{"a":2}\n'
    # small max_bytes: whole lines only, a line longer than max_bytes whole
    with open(path, "ab") as f:
        f.write(b'{"a":3}\n{"a":4}\n{"long":"' + b"x" * 100 + b'"}\n')
    assert src.poll(10).data == b'{"a":3}\n'
    assert src.poll(10).data == b'{"a":4}\n'
    assert src.poll(10).data.startswith(b'{"long"')
    # rotation: the desk appends to the old file, renames it, starts a new one
    with open(path, "ab") as f:
        f.write(b'{"a":5}\n{"torn":')
    os.rename(path, tmp_path / "D.ndjson.1")
    path.write_bytes(b'{"b":1}\n')
    assert src.poll(1 << 20).data == b'{"a":5}\n'  # the old file's end first
    assert src.poll(1 << 20).data == b'{"b":1}\n'
    assert src.rotations == 1 and src.torn_tails == 1
    # truncation: the desk rewrites the file
    path.write_bytes(b'{"c":1}\n')
    assert src.poll(1 << 20).data == b'{"c":1}\n' and src.truncations == 1
    # resume from a cursor: same inode -> from the offset; another -> from 0
    cur = src.cursor
    with open(path, "ab") as f:
        f.write(b'{"c":2}\n')
    src.close()
    assert TailSource("D", path, cur).poll(1 << 20).data == b'{"c":2}\n'
    assert TailSource("D", path, Cursor(cur.inode + 1, 8)).poll(1 << 20).data.startswith(b'{"c":1}')
    assert (
        TailSource("D", path, Cursor(cur.inode, 10_000)).poll(1 << 20).data.startswith(b'{"c":1}')
    )


def test_file_sink_recovers_events_after_a_position_and_cuts_a_torn_line(tmp_path):
    sink = JsonLinesFileSink(tmp_path / "out.jsonl")
    e = [ServiceEvent(f"a{i}", 0, "open", 1.0, {"end_ns": 1, "peak_ns": 1}) for i in range(3)]
    sink.write(e[:1])
    pos = sink.commit()
    sink.write(e[1:])
    sink.close()
    with open(tmp_path / "out.jsonl", "ab") as f:
        f.write(b'{"alert_id": "torn')
    again = JsonLinesFileSink(tmp_path / "out.jsonl")
    assert again.recover(pos) == e[1:]
    assert again.recover(None) == e
    assert (tmp_path / "out.jsonl").read_bytes().endswith(b"}\n")  # torn line cut off


def test_a_restart_that_checkpoints_before_its_replay_catches_up_publishes_nothing_twice(
    day, tmp_path
):
    """Run 1 publishes closes after its last checkpoint and dies; run 2
    re-reads slowly (small reads) and checkpoints before its replay reaches
    those closes, then dies; run 3 must still recognise them (a terminal
    alert known only from the sink is kept until the replay reaches it)."""
    from surv_kernel.model import DetectionConfig
    from surv_kernel.service.loop import Service, ServiceConfig

    feeds, state, out = tmp_path / "feeds", tmp_path / "state", tmp_path / "out.jsonl"
    feeds.mkdir()

    def service(**kw) -> Service:
        cfg = ServiceConfig(
            feeds=str(feeds), state=str(state), lateness_s=LATENESS_S, heartbeat_after_s=1e9, **kw
        )
        return Service(cfg, JsonLinesFileSink(out), DetectionConfig(), day.baselines)

    def drain(svc: Service) -> None:
        while svc.step():
            pass

    s1 = service()
    append(feeds, day.slices[0])
    drain(s1)
    s1.checkpoint()
    for part in [*day.slices[1:], day.eod]:
        append(feeds, part)
    drain(s1)
    s1.close()  # published and durable, but no checkpoint covers it: the crash
    assert check_events(json_events(out)) == day.alerts
    s2 = service(max_read_bytes=4096)
    s2.step()  # a few lines of the replay only
    s2.checkpoint()
    s2.close()  # the second crash
    s3 = service()
    drain(s3)
    s3.checkpoint()
    s3.close()
    assert check_events(json_events(out)) == day.alerts


def json_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_state_file_of_another_kind_is_refused(tmp_path):
    from surv_kernel.sealed import seal
    from surv_kernel.service.loop import STATE_FILE, Service, ServiceConfig
    from surv_kernel.service.sinks import StdoutSink

    (tmp_path / "feeds").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE).write_bytes(seal("surv_kernel.stream", 2, b"x"))
    cfg = ServiceConfig(feeds=str(tmp_path / "feeds"), state=str(tmp_path / "state"))
    with pytest.raises(SealError, match="'surv_kernel.stream' state"):
        Service(cfg, StdoutSink())
