"""A run's outputs are one consistent set: never two runs' files mixed, never
an empty set over a good one, nothing left half-written by a kill or a signal.

The crash tests run the real command in a child process and SIGKILL it: at
each publishing step (the child stops itself there, ``SURV_PAUSE_AT``), and at
moments spread over the whole run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import surv_kernel
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.pipeline.publish import RunDirectory, read_manifest, verify_manifest

PKG_PARENT = str(Path(surv_kernel.__file__).resolve().parent.parent)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PKG_PARENT, env.get("PYTHONPATH")) if p)
    for knob in ("SURV_MAX_WORKERS", "SURV_DESK_DEADLINE_S", "SURV_PAUSE_AT"):
        env.pop(knob, None)
    env.update(extra)
    return env


def _feeds(root: Path, seed: int, scale: float = 1.0) -> Path:
    root.mkdir(parents=True)
    for desk, data in generate_day(seed, n_traders=40, activity_scale=scale).feeds().items():
        (root / f"{desk.replace(' ', '_')}.json").write_bytes(data)
    return root


def _start(feeds: Path, out: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "surv_kernel", "run", str(feeds), "--out", str(out)],
        env=_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(feeds: Path, out: Path) -> dict:
    proc = _start(feeds, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert verify_manifest(out) == []
    return read_manifest(out)["files"]


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "T"


def _published(out: Path) -> dict | None:
    """The published set's file table, after checking it reads consistently."""
    if not (out / "current").exists():
        return None
    assert verify_manifest(out) == []
    files = read_manifest(out)["files"]
    for name in files:  # the top-level names read the published set
        assert (out / name).read_bytes() == (out / "current" / name).read_bytes()
    return files


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Two different days' feeds and the complete outputs of each."""
    base = tmp_path_factory.mktemp("days")
    a, b = _feeds(base / "a", 1), _feeds(base / "b", 2)
    sets = {name: _run(feeds, base / f"clean-{name}") for name, feeds in (("a", a), ("b", b))}
    assert sets["a"] != sets["b"]
    return a, b, sets


def _strip(files: dict) -> dict:
    # summary.json holds timings: equal sets differ there, everything else is exact
    return {k: v for k, v in files.items() if k != "summary.json"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, expect",
    [("before_manifest", "a"), ("before_swap", "a"), ("after_swap", "b")],
)
def test_kill_9_at_each_publishing_step_leaves_one_complete_set(days, tmp_path, point, expect):
    a, b, sets = days
    out = tmp_path / "out"
    _run(a, out)
    proc = _start(b, out, SURV_PAUSE_AT=point)
    deadline = time.monotonic() + 60
    while not _stopped(proc.pid):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the run never reached " + point
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert _strip(_published(out)) == _strip(sets[expect])
    # the next run cleans the killed run's leftovers and publishes normally
    _run(b, out)
    assert not list((out / "runs").glob("*.partial"))
    assert _strip(_published(out)) == _strip(sets["b"])


@pytest.mark.slow
def test_kill_9_at_moments_spread_over_the_run_never_mixes_two_runs(days, tmp_path):
    a, b, sets = days
    out = tmp_path / "out"
    _run(a, out)
    t0 = time.monotonic()
    _run(b, tmp_path / "timing")
    duration = time.monotonic() - t0
    seen = set()
    for fraction in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0):
        proc = _start(a if len(seen) % 2 else b, out)
        time.sleep(duration * fraction)
        proc.kill()
        proc.communicate(timeout=10)
        got = _strip(_published(out))
        assert got in (_strip(sets["a"]), _strip(sets["b"]))
        seen.add("a" if got == _strip(sets["a"]) else "b")


def test_a_run_that_analysed_nothing_kept_the_previous_set(days, tmp_path):
    """Received: when every desk failed, an empty alerts.jsonl replaced the
    previous run's."""
    a, _, sets = days
    out = tmp_path / "out"
    _run(a, out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "EQ.json").write_text("<html>502 Bad Gateway</html>")
    proc = _start(broken, out)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert _strip(_published(out)) == _strip(sets["a"])


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_stop_quickly_and_leave_no_temporaries(tmp_path, sig, code):
    """Received: SIGTERM exited 143 with no message; Ctrl-C took up to 4.5 s
    and left .tmp files."""
    big = _feeds(tmp_path / "big", 3, scale=40.0)
    out = tmp_path / "out"
    proc = _start(big, out)
    deadline = time.monotonic() + 60
    while not list(out.glob("runs/*.partial")):  # past the imports: the run has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.005)
    time.sleep(0.2)  # reading the feeds
    assert proc.poll() is None, "the run finished before the signal; make the day bigger"
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < 2.0, f"{took:.1f}s to stop"
    assert "not published" in err and "Traceback" not in err
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.partial"))
    assert read_manifest(out) is None  # nothing was published


def test_run_directory_links_and_prunes(tmp_path):
    out = RunDirectory(tmp_path / "o", keep=2)
    for i in range(4):
        staging = out.begin()
        (staging / "alerts.jsonl").write_text(f"run {i}\n")
        files = out.commit()
        assert set(files) == {"alerts.jsonl"}
        assert (tmp_path / "o" / "alerts.jsonl").read_text() == f"run {i}\n"
        time.sleep(0.001)  # distinct run ids
    runs = sorted(p.name for p in (tmp_path / "o" / "runs").iterdir())
    assert len(runs) == 2
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["run_id"] == runs[-1]
    staging = out.begin()
    (staging / "alerts.jsonl").write_text("never published\n")
    out.abort()
    assert (tmp_path / "o" / "alerts.jsonl").read_text() == "run 3\n"
    assert verify_manifest(tmp_path / "o") == []
