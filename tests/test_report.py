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
    scores = [float(x) for x in re.findall(r"<tr[^>]*><td data-v='([0-9.]+)'>", page)]
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
    traders = re.findall(r"<tr[^>]*><td data-v=\"[^\"]*\">[^<]*</td><td>([^<]*)</td>", table)
    assert len(traders) == len(det.alerts)
    assert traders == sorted(traders)
    assert traders != [a.trader_id for a in sorted(det.alerts, key=lambda a: -a.score)]


# -- the alert list: every alert, desk, date, id, case status; filter, sort, export ----------


def _home_desks(sc, det):
    from surv_kernel.pipeline.run import home_desks

    return home_desks(sc.batch, det.alerts)


def _rows(page: str) -> list[str]:
    """The alert list's body rows (their opening tags and cells), in order."""
    table = page.split('id="alerts"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr [^>]*>.*?</tr>", table.split("<tbody>", 1)[1])


def test_alert_list_has_every_alert_beyond_the_charted_ones(day):
    sc, det = day
    desks = _home_desks(sc, det)
    page, info = _render(sc, det, max_charts=2, desks=desks)
    assert info["detailed"] == 2
    rows = _rows(page)
    assert len(rows) == len(det.alerts)
    for alert, desk in zip(det.alerts, desks, strict=True):
        (row,) = [r for r in rows if alert.alert_id in r]
        assert f'data-desk="{desk}"' in row and f"<td>{desk}</td>" in row
        assert f"<td>{report.trading_date(alert.start_ns)}</td>" in row
        # no store: the case columns say so
        assert row.count("<td>not stored</td>") == 2 and 'data-status="not stored"' in row
    assert "run with --store URL" in page
    # keyboard-sortable headings, with the initial sort announced
    assert page.count("<th tabindex='0'") == 15
    assert "<th tabindex='0' data-type='num' class='desc' aria-sort='descending'>score" in page
    with pytest.raises(ValueError, match="one desk per alert"):
        _render(sc, det, desks=desks[:-1])


def test_alert_list_shows_the_cases_it_is_given(day):
    sc, det = day
    first, second = det.alerts[0].alert_id, det.alerts[1].alert_id
    cases = {
        first: {"status": "closed", "assignee": "maria", "disposition": "false_positive"},
        second: {"status": "open", "assignee": None, "disposition": None},
    }
    page, _ = _render(sc, det, max_charts=0, cases=cases)
    rows = {a.alert_id: r for a in det.alerts for r in _rows(page) if a.alert_id in r}
    assert "<td>closed</td><td>false_positive</td>" in rows[first]
    assert 'data-status="closed"' in rows[first]
    assert "<td>open</td><td>-</td>" in rows[second]
    # an alert the store lacks
    assert "<td>not stored</td><td>not stored</td>" in rows[det.alerts[2].alert_id]
    assert "from the alert store" in page
    # the status filter offers exactly the statuses present
    assert re.findall(r'data-filter="status">(.*?)</select>', page) == [
        '<option value="">all</option><option value="closed">closed</option>'
        '<option value="not stored">not stored</option><option value="open">open</option>'
    ]


def test_alert_list_escapes_desks_and_case_values(day):
    sc, det = day
    evil = "<img src=x onerror=alert(1)>\"'&"
    cases = {a.alert_id: {"status": evil, "disposition": evil} for a in det.alerts}
    page, _ = _render(sc, det, max_charts=0, desks=[evil] * len(det.alerts), cases=cases)
    assert "<img src=x" not in page
    esc = "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;"
    assert page.count(f'data-desk="{esc}"') == len(det.alerts)
    assert page.count(f"<td>{esc}</td>") == 3 * len(det.alerts)  # desk, status, disposition
    assert f'<option value="{esc}">{esc}</option>' in page


def test_run_report_reads_status_and_disposition_from_a_sqlite_store(tmp_path, monkeypatch):
    from surv_kernel.cli import main
    from surv_kernel.cli.demo import slug
    from surv_kernel.store import open_store

    monkeypatch.chdir(tmp_path)
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for desk, data in generate_day(1, n_traders=40, n_episodes=10).feeds().items():
        (feeds / f"{slug(desk)}.json").write_bytes(data)
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    out = tmp_path / "out"

    def run() -> str:
        args = ["run", str(feeds), "--out", str(out), "--store", url]
        assert main([*args, "--report", str(out / "report.html"), "--max-charts", "1"]) == 0
        return (out / "report.html").read_text()

    page = run()  # first run: every alert is a new, open case
    with open_store(url) as store:
        stored = store.list_alerts()
    assert len(stored) > 3
    rows = {r["alert_id"]: row for r in stored for row in _rows(page) if r["alert_id"] in row}
    assert len(rows) == len(stored) == len(_rows(page))
    for r in stored:
        assert f"<td>{r['desk']}</td><td>{r['trading_date']}</td>" in rows[r["alert_id"]]
        assert "<td>open</td><td>-</td>" in rows[r["alert_id"]]
    top = stored[0]["alert_id"]
    assert main(["alerts", "assign", top, "--to", "maria", "--store", url]) == 0
    assert (
        main(
            ["alerts", "close", top, "--store", url, "--disposition", "no_action"]
            + ["--reason", "hedge"]
        )
        == 0
    )
    page = run()  # the same day again: the report shows the decided case
    (row,) = [r for r in _rows(page) if top in r]
    assert "<td>closed</td><td>no_action</td>" in row
    assert sum("<td>open</td><td>-</td>" in r for r in _rows(page)) == len(stored) - 1
    assert "not stored" not in "".join(_rows(page))


def _browse(tmp_path, page: str, fragment: str) -> str:
    """The DOM after the page's script ran with ``#fragment``."""
    html_path = tmp_path / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return subprocess.run(
        _chromium_args(tmp_path, "--dump-dom", html_path.as_uri() + "#" + fragment),
        check=True,
        capture_output=True,
        timeout=90,
        text=True,
    ).stdout


def _shown(dom: str) -> list[str]:
    return [r for r in _rows(dom) if not re.match(r"<tr [^>]*\bhidden\b", r)]


@pytest.fixture(scope="module")
def browsable(day):
    """A report with desks and a few cases, so every filter has something to do."""
    sc, det = day
    desks = _home_desks(sc, det)
    assert len(set(desks)) >= 2, "the fixture day must spread its alerts over desks"
    cases = {
        a.alert_id: {"status": "closed" if i % 3 == 0 else "open", "disposition": None}
        for i, a in enumerate(det.alerts)
    }
    page, _ = _render(sc, det, max_charts=0, desks=desks, cases=cases)
    return sc, det, desks, cases, page


@needs_chromium
def test_filters_and_search_in_the_browser(browsable, tmp_path):
    from urllib.parse import quote

    sc, det, desks, cases, page = browsable
    desk = sorted(set(desks))[0]
    dom = _browse(tmp_path, page, f"filter=desk:{quote(desk)}")
    want = {a.alert_id for a, d in zip(det.alerts, desks, strict=True) if d == desk}
    shown = _shown(dom)
    assert {a.alert_id for a in det.alerts if any(a.alert_id in r for r in shown)} == want
    assert len(shown) == len(want) < len(det.alerts)
    assert f">{len(want)} of {len(det.alerts)} shown<" in dom

    # two filters at once: desk and status
    dom = _browse(tmp_path, page, f"filter=desk:{quote(desk)},status:closed")
    want2 = {i for i in want if cases[i]["status"] == "closed"}
    assert {i for i in want if any(i in r for r in _shown(dom))} == want2
    assert len(_shown(dom)) == len(want2)

    # free-text search: an alert id finds its row only
    target = det.alerts[-1]
    dom = _browse(tmp_path, page, f"q={target.alert_id[:10].upper()}")
    (only,) = _shown(dom)
    assert target.alert_id in only


@needs_chromium
def test_sort_sets_aria_sort_in_the_browser(browsable, tmp_path):
    sc, det, desks, cases, page = browsable
    dom = _browse(tmp_path, page, "sort=-peak%20window%20USD")
    heads = re.findall(
        r"<th [^>]*aria-sort=\"(\w+)\"[^>]*>([^<]*)</th>", dom.split('id="alerts"')[1]
    )
    assert ("descending", "peak window USD") in heads
    assert sum(s != "none" for s, _ in heads[:15]) == 1  # score no longer claims it
    got = [next(a for a in det.alerts if a.alert_id in r).peak_window_sum_usd for r in _rows(dom)]
    assert len(got) == len(det.alerts) and got == sorted(got, reverse=True)


@needs_chromium
def test_csv_export_of_the_filtered_rows_in_the_browser(browsable, tmp_path):
    import csv
    import html as html_mod
    import io
    from urllib.parse import quote

    sc, det, desks, cases, page = browsable
    desk = sorted(set(desks))[-1]
    dom = _browse(tmp_path, page, f"filter=desk:{quote(desk)}&sort=trader&export")
    text = html_mod.unescape(dom.split('<pre id="csv-out" hidden="">', 1)[1].split("</pre>", 1)[0])
    got = list(csv.DictReader(io.StringIO(text)))
    want = sorted(
        (a for a, d in zip(det.alerts, desks, strict=True) if d == desk),
        key=lambda a: a.trader_id,
    )
    assert [r["alert id"] for r in got] == [a.alert_id for a in want]
    assert all(r["desk"] == desk for r in got)
    for r, a in zip(got, want, strict=True):
        assert r["trader"] == a.trader_id and r["status"] == cases[a.alert_id]["status"]
        assert r["date"] == report.trading_date(a.start_ns) and r["score"] == f"{a.score:.1f}"
    # the download is a data: URL built in the page (nothing is fetched)
    assert "data:text/csv;charset=utf-8," in page
