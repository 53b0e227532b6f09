"""``surv-kernel serve --poll-desks``: the legacy desk feed call, polled.

The desk feed here is a real module on the service's path whose call returns
each desk's whole day so far as a JSON array (what the received ``_api_call``
returns), rewritten as the day goes on. The service must publish every alert
of the day once, as batch detection finds them, across a SIGKILL and restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from surv_kernel.observability import MetricsRegistry
from surv_kernel.service.poll import DeskPoller, load_call
from test_serve import Day, Serve, all_closed, check_events

FEED_MODULE = """
import json, os
ROOT = os.environ["DESK_FEEDS"]
def call(desk_id):
    path = os.path.join(ROOT, f"{desk_id}.json")
    if not os.path.exists(path):
        raise ConnectionError(f"desk {desk_id} is not up yet")
    with open(path) as f:
        return f.read()
"""


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return Day(tmp_path_factory.mktemp("day"))


class Polled(Serve):
    """A serve process polling the desks' feed module instead of tailing files."""

    def __init__(self, tmp: Path, day: Day) -> None:
        super().__init__(tmp, day)
        self.desk_feeds = tmp / "desk_feeds"
        self.desk_feeds.mkdir()
        (tmp / "deskfeed.py").write_text(FEED_MODULE)
        self.so_far: dict[str, list[dict]] = defaultdict(list)

    def publish(self, part: dict[str, list[bytes]]) -> None:
        """The desks' feeds now hold their day so far (rewritten atomically)."""
        for desk, lines in part.items():
            self.so_far[desk] += [msgspec.json.decode(line) for line in lines]
            tmp = self.desk_feeds / f"{desk}.json.tmp"
            tmp.write_text(json.dumps(self.so_far[desk]))
            os.replace(tmp, self.desk_feeds / f"{desk}.json")

    def env(self) -> dict[str, str]:
        env = dict(os.environ, DESK_FEEDS=str(self.desk_feeds))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.tmp), env.get("PYTHONPATH", "")) if p
        )
        return env

    def args(self) -> list[str]:
        args = super().args()
        at = args.index("--feeds")
        del args[at : at + 2]
        return [
            "--poll-desks", ",".join(self.day.desks), "--poll-call", "deskfeed:call",
            "--interval", "0.2", *args,
        ]  # fmt: skip


def test_polled_desks_publish_the_days_alerts_once_across_a_kill(day, tmp_path):
    svc = Polled(tmp_path, day)
    svc.start()
    half = len(day.slices) // 2
    for k, part in enumerate(day.slices):
        svc.publish(part)
        time.sleep(0.1)
        if k == half:
            time.sleep(0.5)  # polled and spooled, some of it checkpointed
            assert svc.kill() == -signal.SIGKILL
            svc.start()
    svc.publish(day.eod)
    events = svc.wait_for(all_closed(len(day.alerts)), timeout=90)
    assert svc.kill(signal.SIGTERM) == 0
    closed = check_events(events)
    assert closed == day.alerts
    # every trade spooled exactly once, whatever the feed returned each poll
    spooled = defaultdict(list)
    for desk in day.desks:
        for line in (svc.state / "polled" / f"{desk}.ndjson").read_bytes().splitlines():
            spooled[desk].append(json.loads(line)["trade_id"])
    for desk, records in svc.so_far.items():
        assert spooled[desk] == [r["trade_id"] for r in records]


def test_the_poller_counts_failures_and_never_spools_twice(tmp_path):
    answers = {"A": [ConnectionError("down"), '{"status": "error"}', "[]", None]}
    calls = []

    def call(desk):
        calls.append(desk)
        a = answers[desk].pop(0) if answers[desk] else None
        if isinstance(a, Exception):
            raise a
        if a is None:
            return json.dumps([{"trade_id": "T1", "x": 1.5}, {"trade_id": "T2", "x": 2}])
        return a

    reg = MetricsRegistry()
    p = DeskPoller(["A"], call, tmp_path / "spool", interval_s=0.01, deadline_s=0.5, registry=reg)
    outcomes = [p.poll_once()["A"] for _ in range(6)]
    # the ConnectionError is retried inside the deadline, then the error object fails
    assert outcomes[0] in (-1, 0) and -1 in outcomes and outcomes[-2:] == [0, 0]
    assert 2 in outcomes
    assert reg.value("surv_service_polls_total", desk="A", outcome="failed") >= 1
    lines = (tmp_path / "spool" / "A.ndjson").read_text().splitlines()
    assert [json.loads(x)["trade_id"] for x in lines] == ["T1", "T2"]
    # a torn last line (a crash mid-write) is cut on restart and fetched again
    with open(tmp_path / "spool" / "A.ndjson", "ab") as f:
        f.write(b'{"trade_id": "T3", "x"')
    answers["A"] = [json.dumps([{"trade_id": "T1", "x": 1.5}, {"trade_id": "T3", "x": 3}])]
    p2 = DeskPoller(["A"], call, tmp_path / "spool", registry=reg)
    assert p2.poll_once() == {"A": 1}
    lines = (tmp_path / "spool" / "A.ndjson").read_text().splitlines()
    assert [json.loads(x)["trade_id"] for x in lines] == ["T1", "T2", "T3"]
    # a record that comes back changed under a spooled id is not dropped
    # unseen: it is spooled, and the stream quarantines it as a duplicate id
    answers["A"] = [json.dumps([{"trade_id": "T1", "x": 9.0}])]
    assert p2.poll_once() == {"A": 1}
    lines = (tmp_path / "spool" / "A.ndjson").read_text().splitlines()
    assert [json.loads(x) for x in lines][-1] == {"trade_id": "T1", "x": 9.0}


def test_poll_call_and_options_are_checked():
    from surv_kernel.errors import ConfigError

    for bad in ("nomodule", "json:", "no_such_module_xyz:f", "json:no_such_function"):
        with pytest.raises(ConfigError):
            load_call(bad)
    assert load_call("json:dumps") is json.dumps
    r = subprocess.run(
        [sys.executable, "-m", "surv_kernel", "serve", "--state", "st"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--feeds DIR" in r.stderr and "--poll-desks" in r.stderr
