"""The HTML alert report: self-contained, escaped, capped, charts optional,
and readable in a real browser (headless Chromium, when installed)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from surv_kernel import dtypes, report
from surv_kernel.batch import Dictionaries, TradeBatch
from surv_kernel.evaluation.scenario import generate_day
from surv_kernel.model import DetectionConfig, detect
from surv_kernel.windows import rolling_window_sums

CONFIG = DetectionConfig()


@pytest.fixture(scope="module")
def day():
    sc = generate_day(3, n_traders=24, n_episodes=12)
    det = detect(sc.batch, CONFIG)
    assert len(det.alerts) >= 4, "the fixture day must have a few alerts to chart"
    return sc, det


def _render(sc, det, **kw):
    kw.setdefault("summary", {"trades": len(sc), "alerts": len(det.alerts)})
    return report.render_report(
        batch=sc.batch, alerts=det.alerts, suppressed=det.suppressed, config=CONFIG, **kw
    )


def _has_matplotlib() -> bool:
    return report._matplotlib() is not None


needs_mpl = pytest.mark.skipif(
    not _has_matplotlib(), reason="matplotlib not installed (pip install 'surv_kernel[report]')"
)


def test_window_curve_matches_brute_force_and_the_kernel():
    rng = np.random.default_rng(7)
    for n, w in ((1, 5), (2, 0), (30, 10), (200, 37)):
        ts = np.sort(rng.integers(0, 300, n)).astype(np.int64)
        ts[n // 2 :] = np.sort(ts[n // 2 :])  # keep ties likely
        usd = rng.uniform(1, 100, n)
        t, s = report._window_curve(ts, usd, w)
        brute = np.array([usd[(ts >= u - w) & (ts <= u)].sum() for u in t])
        np.testing.assert_allclose(s, brute, rtol=1e-12, atol=1e-9)
        # at every trade the curve is the value the model scores
        sums, _ = rolling_window_sums(np.zeros(n, dtypes.CODE), ts, usd, w)
        at = np.searchsorted(t, ts)
        np.testing.assert_allclose(s[at], sums, rtol=1e-12)
        # it returns to zero once the last trade has left the window
        assert s[-1] == 0.0


@needs_mpl
def test_report_is_self_contained_with_one_png_chart_per_alert(day):
    sc, det = day
    page, info = _render(sc, det)
    assert info["charts"] == len(det.alerts) == info["detailed"]
    imgs = re.findall(r'<img class="chart"[^>]* src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == len(det.alerts)
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing to fetch: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    # every alert is listed, the list starts sorted by score (highest first)
    scores = [float(x) for x in re.findall(r"<tr><td data-v='([0-9.]+)'>", page)]
    assert len(scores) >= len(det.alerts)
    listed = scores[: len(det.alerts)]
    assert listed == sorted(listed, reverse=True)
    # each detailed alert has its trade table with every trade of the peak window
    for alert in det.alerts:
        assert f'id="{report._anchor(alert)}"' in page
        for tid in alert.trades:
            assert f"<td>{tid}</td>" in page


def test_report_caps_the_charted_alerts_and_says_so(day):
    sc, det = day
    page, info = _render(sc, det, max_charts=2)
    assert info["detailed"] == 2 and info["left_out"] == len(det.alerts) - 2
    assert page.count('<section class="alert"') == 2
    assert f"2 highest-scoring of {len(det.alerts)} alerts" in page
    # the two detailed ones are the top scores
    top = sorted(det.alerts, key=lambda a: -a.score)[:2]
    for alert in top:
        assert f'id="{report._anchor(alert)}"' in page


def test_report_without_matplotlib_still_renders_and_says_how(day, monkeypatch):
    sc, det = day
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert report._matplotlib() is None
    page, info = _render(sc, det)
    assert info["charts"] == 0 and not info["matplotlib"]
    assert "<img" not in page
    assert "pip install &#x27;surv_kernel[report]&#x27;" in page
    assert page.count('<section class="alert"') == len(det.alerts)


def test_report_escapes_every_string_from_the_feed():
    d = Dictionaries()
    evil = '<script>alert("x")</script>'
    n = 40
    ts = (np.arange(n, dtype=np.int64) * 60 + 1_700_000_000) * dtypes.NS_PER_SECOND
    usd = np.full(n, 10_000.0)
    usd[-3:] = 9_000_000.0  # a burst at the end
    batch = TradeBatch(
        timestamp_ns=ts,
        notional_usd=usd,
        trader=d.trader.encode([evil] * n),
        asset_class=d.asset_class.encode(["equity"] * n),
        desk=d.desk.encode(["<b>desk</b>"] * n),
        trade_id=np.array([f"<i>{i}</i>" for i in range(n)], object),
        dictionaries=d,
    )
    det = detect(batch, DetectionConfig(policy="static"))
    assert det.alerts
    page, _ = report.render_report(
        batch=batch, alerts=det.alerts, suppressed=det.suppressed, config=CONFIG
    )
    assert evil not in page and "<b>desk</b>" not in page and "<i>39</i>" not in page
    assert "&lt;script&gt;" in page


def test_report_with_no_alerts():
    d = Dictionaries()
    page, info = report.render_report(
        batch=TradeBatch.empty(d), alerts=[], suppressed=[], config=CONFIG, summary={}
    )
    assert "No alerts." in page and info["charts"] == 0


def test_write_report_writes_the_file(day, tmp_path):
    sc, det = day
    path = tmp_path / "r.html"
    info = report.write_report(
        path,
        batch=sc.batch,
        alerts=det.alerts,
        suppressed=det.suppressed,
        config=CONFIG,
        max_charts=1,
    )
    assert path.stat().st_size == info["bytes"]
    assert not (tmp_path / "r.html.tmp").exists()


# -- in a browser --------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


needs_chromium = pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)


def _chromium_args(tmp_path, *extra):
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra,
    ]


@needs_chromium
@needs_mpl
def test_report_screenshot_in_headless_chromium_shows_the_charts(day, tmp_path):
    from matplotlib.image import imread

    sc, det = day
    html_path = tmp_path / "report.html"
    report.write_report(
        html_path,
        batch=sc.batch,
        alerts=det.alerts,
        suppressed=det.suppressed,
        config=CONFIG,
        summary={"trades": len(sc)},
        max_charts=4,
    )
    png = tmp_path / "shot.png"
    subprocess.run(
        _chromium_args(
            tmp_path,
            f"--screenshot={png}",
            "--window-size=1280,2000",
            html_path.as_uri(),
        ),
        check=True,
        capture_output=True,
        timeout=90,
    )
    img = imread(str(png))[..., :3]
    assert img.shape[:2] == (2000, 1280)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    # the orange peak-window spans and the blue baseline bands are drawn only
    # inside the charts: a page without rendered charts has (almost) none
    orange = (r > 0.9) & (g > 0.75) & (g < 0.93) & (b > 0.55) & (b < 0.85)
    blue = (b > 0.8) & (r > 0.8) & (r < 0.93) & (b - r > 0.04)
    assert orange.sum() > 2_000, orange.sum()
    assert blue.sum() > 5_000, blue.sum()


@needs_chromium
def test_alert_list_sorts_in_the_browser(day, tmp_path):
    sc, det = day
    html_path = tmp_path / "report.html"
    report.write_report(
        html_path,
        batch=sc.batch,
        alerts=det.alerts,
        suppressed=det.suppressed,
        config=CONFIG,
        max_charts=0,
    )
    out = subprocess.run(
        _chromium_args(tmp_path, "--dump-dom", html_path.as_uri() + "#sort=trader"),
        check=True,
        capture_output=True,
        timeout=90,
        text=True,
    ).stdout
    table = out.split('id="alerts"', 1)[1].split("</table>", 1)[0]
    traders = re.findall(r"<tr><td data-v=\"[^\"]*\">[^<]*</td><td>([^<]*)</td>", table)
    assert len(traders) == len(det.alerts)
    assert traders == sorted(traders)
    assert traders != [a.trader_id for a in sorted(det.alerts, key=lambda a: -a.score)]
