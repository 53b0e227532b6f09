"""The alert report: one self-contained HTML file an analyst can open anywhere.

What it holds, top to bottom:

- the run summary (desks, trades, quarantine, alerts, suppressed, lag, time
  per stage, configuration, and precision/recall when the day was labelled);
- the alert list: every alert, with its home desk, trading date, alert id
  and, when the run has an alert store, its case status and disposition
  ("not stored" otherwise); inline JavaScript sorts it by any column (click
  or keyboard, with ``aria-sort``; it starts sorted by score, highest
  first), filters it by desk / trader / asset class / status, searches it,
  and exports the rows shown as CSV (a ``data:`` URL, nothing leaves the
  page). The URL hash can preset all of that (``#sort=``, ``#filter=``,
  ``#q=``, ``#export``: see the script), which is how the headless-browser
  tests drive it;
- for each of the ``max_charts`` highest-scoring alerts: the explanation, a
  chart of the trader's rolling window notional over the day for that asset
  class, and the table of the trades in the peak window;
- the suppressed floor-passing episodes (the largest ones), so an analyst can
  see what the model chose not to alert and why.

Self-contained: CSS, JavaScript and images are inline; opening the file needs
no network and no server.

Charts. matplotlib (the ``report`` extra: ``pip install 'surv_kernel[report]'``)
draws them through its Agg renderer, using the object-oriented ``Figure`` API
(no ``pyplot``, so no global state, no GUI backend, safe in a library). They
are embedded as base64 PNG, not SVG, because a PNG's size does not grow with
the data: a busy trader's day has thousands of trades, and an SVG path with a
vertex per window would make each chart megabytes and the page slow, while a
PNG stays ~40-60 kB whatever the day looks like. The cost is that the chart
is not vector-sharp when zoomed; it is drawn at 110 dpi for that reason.
Without matplotlib the report still renders (summary, list, explanations,
trade tables) and says how to get the charts.

Size cap: only the ``max_charts`` (default 50) highest-scoring alerts get a
chart and a trade table; every alert is in the list. A noisy day of thousands
of alerts therefore gives a report of a few MB, not hundreds; the report says
how many alerts were left out of the charts.

The chart of an alert (one trader, one asset class, the whole day):

- the line is the window sum ``S(t)`` = USD notional of the group's trades in
  ``[t - W, t]``: it steps up at each trade and down ``W`` after it; dots mark
  the value at each trade, which is what the model scores, computed with
  :func:`surv_kernel.windows.rolling_window_sums`;
- the shaded band is the baseline the alert was judged against: median +/-
  ``z_level`` x scale, where scale is the sigma the model used for z (the
  explanation's ``scale_usd``: MAD x 1.4826, or the class dispersion, never
  below the relative and absolute floors; ``scale_source`` says which), with
  the median as a line;
- the red dashed line is the static floor (asset-class floor x threshold
  multiplier); the dotted black line is the level a window had to pass to
  alert: the largest of the floor, ``median + z_level x scale`` and
  ``ratio_level x median``;
- the orange span is the peak window ``[peak - W, peak]`` and the star its
  sum; the grey span is the whole episode.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import dtypes
from .windows import rolling_window_sums

__all__ = ["DEFAULT_MAX_CHARTS", "render_report", "write_report"]

#: Alerts charted (highest scores first) unless the caller says otherwise.
DEFAULT_MAX_CHARTS = 50
#: Suppressed episodes listed (largest peak window first).
MAX_SUPPRESSED_ROWS = 100

_INSTALL_HINT = "pip install 'surv_kernel[report]'"


def _matplotlib() -> Any:
    """matplotlib's Figure class, or None when the optional extra is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def write_report(path: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    """Render (see :func:`render_report`) and write the report to ``path``
    atomically; returns the render info (charts drawn, alerts left out, bytes)."""
    text, info = render_report(**kwargs)
    data = text.encode("utf-8")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    info["bytes"] = len(data)
    return info


def render_report(
    *,
    batch: Any,
    alerts: Sequence[Any],
    suppressed: Sequence[Any] = (),
    config: Any,
    summary: Mapping[str, Any] | None = None,
    max_charts: int = DEFAULT_MAX_CHARTS,
    title: str = "surv-kernel alert report",
    generated_at: _dt.datetime | None = None,
    desks: Sequence[str] | None = None,
    cases: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The report as an HTML string, and info about it.

    ``batch`` is the run's :class:`~surv_kernel.batch.TradeBatch` (the charts
    and trade tables are read from it), ``alerts`` and ``suppressed`` come
    from :func:`surv_kernel.model.detect`, ``config`` is its
    :class:`~surv_kernel.model.DetectionConfig`, and ``summary`` the run
    summary dict of :mod:`surv_kernel.cli` (any mapping; known keys are
    formatted, the rest ignored).

    ``desks`` is each alert's home desk, in the order of ``alerts``
    (:meth:`~surv_kernel.pipeline.RunResult.home_desks`); ``cases`` the
    store's case fields by alert id (:meth:`surv_kernel.store.Store.cases`):
    ``None`` when the run has no store, and then the status and disposition
    columns say "not stored" (as they do for an alert the store lacks).
    """
    if max_charts < 0:
        raise ValueError(f"max_charts must be >= 0, got {max_charts}")
    generated_at = generated_at or _dt.datetime.now(_dt.timezone.utc)
    if desks is not None and len(desks) != len(alerts):
        raise ValueError(f"desks must name one desk per alert: {len(desks)} for {len(alerts)}")
    desk_of = dict(zip((a.alert_id for a in alerts), desks or (), strict=False))
    ranked = sorted(alerts, key=lambda a: (-a.score, a.start_ns, a.trader_id, a.asset_class))
    detailed = ranked[:max_charts]
    Figure = _matplotlib() if detailed else None
    window_ns = int(config.window_ns)
    groups = _GroupIndex(batch)

    sections = []
    charts = 0
    for alert in detailed:
        rows = groups.rows(alert.trader_id, alert.asset_class)
        img = None
        if Figure is not None:
            img = _chart_png(Figure, alert, batch, rows, window_ns)
            charts += 1
        sections.append(_alert_section(alert, batch, rows, img))

    notes = []
    if len(ranked) > len(detailed):
        notes.append(
            f"Charts and trade tables are drawn for the {len(detailed)} highest-scoring of "
            f"{len(ranked):,} alerts (a cap that keeps this file small on a noisy day); every "
            "alert is in the list below and in the alerts JSON-lines file."
        )
    if detailed and Figure is None:
        notes.append(
            "Charts are not included because matplotlib is not installed. To get them: "
            f"<code>{html.escape(_INSTALL_HINT)}</code> and run again."
        )

    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">generated {generated_at.strftime("%Y-%m-%d %H:%M:%S %Z")} &middot; '
        f"window {config.window_minutes:g} min &middot; floor x {config.threshold_multiplier:g} "
        f"&middot; policy {html.escape(str(config.policy))}</p>",
    ]
    body += [f'<p class="note">{n}</p>' for n in notes]
    body.append(_summary_section(summary or {}, len(ranked), len(suppressed)))
    body.append(_alert_list(ranked, {a.alert_id for a in detailed}, desk_of, cases))
    if sections:
        body.append("<h2>Alerts in detail</h2>")
        body.append(
            '<p class="muted">Line: the trader\'s window notional S(t) for the asset class '
            "(USD in [t &minus; W, t]); dots: the value at each trade, as scored. Band: baseline "
            "median &plusmn; z-level &times; scale. Red dashed: static floor. Dotted: the level "
            "a window had to pass. Orange: the peak window; grey: the whole episode.</p>"
        )
        body += sections
    body.append(_suppressed_section(suppressed))
    page = _PAGE.format(title=html.escape(title), css=_CSS, js=_JS, body="\n".join(body))
    info = {
        "alerts": len(ranked),
        "detailed": len(detailed),
        "charts": charts,
        "left_out": len(ranked) - len(detailed),
        "matplotlib": Figure is not None,
    }
    return page, info


# -- data --------------------------------------------------------------------------------


class _GroupIndex:
    """Rows of the batch per (trader, asset class), found by dictionary code."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def rows(self, trader: str, asset_class: str) -> np.ndarray:
        key = (trader, asset_class)
        found = self._cache.get(key)
        if found is None:
            d = self.batch.dictionaries
            t, a = d.trader.get(trader), d.asset_class.get(asset_class)
            if t is None or a is None:
                found = np.empty(0, np.int64)
            else:
                found = np.flatnonzero((self.batch.trader == t) & (self.batch.asset_class == a))
            self._cache[key] = found
        return found


def _window_curve(ts: np.ndarray, usd: np.ndarray, window_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The step function S(u) = sum of usd[j] with u - W <= ts[j] <= u, at each
    of its change points: every trade time (a step up) and one nanosecond
    after every ``t + W`` (the trade leaves the window). ``ts`` sorted."""
    change = np.unique(np.concatenate([ts, ts + window_ns + 1]))
    csum = np.concatenate([[0.0], np.cumsum(usd)])
    hi = np.searchsorted(ts, change, side="right")
    lo = np.searchsorted(ts, change - window_ns, side="left")
    return change, csum[hi] - csum[lo]


def _to_datetime(ns: np.ndarray | int) -> Any:
    return np.asarray(ns, dtype=dtypes.TIMESTAMP).astype("datetime64[ns]")


def _fmt_usd(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    for unit, scale in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:,.2f}{unit}"
    return f"{x:,.0f}"


def _fmt_axis_usd(x: float) -> str:
    """Tick labels: 12.5m, 250k, no trailing zeros."""
    for unit, scale in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{unit}"
    return f"{x:.4g}"


def _fmt_ts(ns: int, ms: bool = False) -> str:
    t = _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if ms else t.strftime("%Y-%m-%d %H:%M:%S")


def _fmt_num(x: float, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def _alert_level(e: Any) -> float:
    """The window sum an episode had to pass (robust policy): the largest of
    the floor, median + z_level * scale and ratio_level * median, the median
    being the expected value at the peak's time of day (median x factor)."""
    levels = [e.floor_usd]
    expected = e.baseline_median_usd * e.time_of_day_factor
    if math.isfinite(expected) and math.isfinite(e.scale_usd):
        levels.append(expected + e.z_level * e.scale_usd)
        levels.append(e.ratio_level * expected)
    return max(levels)


# -- chart -------------------------------------------------------------------------------


def _chart_png(Figure: Any, alert: Any, batch: Any, rows: np.ndarray, window_ns: int) -> str:
    """The alert's chart as a base64 PNG (see the module docstring)."""
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.ticker import FuncFormatter

    ts = batch.timestamp_ns[rows]
    usd = batch.notional_usd[rows]
    order = np.argsort(ts, kind="stable")
    ts, usd = ts[order], usd[order]
    # the scored values, as the model sees them (one group: all codes 0)
    sums, _ = rolling_window_sums(np.zeros(len(ts), dtypes.CODE), ts, usd, window_ns)
    curve_t, curve_s = _window_curve(ts, usd, window_ns)
    e = alert.explanation

    # fixed margins rather than constrained layout: the layout engine draws
    # every figure twice, and these charts all have the same furniture
    fig = Figure(figsize=(10, 3.9), dpi=110)
    fig.subplots_adjust(left=0.075, right=0.985, top=0.92, bottom=0.25)
    ax = fig.subplots()
    ax.axvspan(
        _to_datetime(alert.start_ns),
        _to_datetime(max(alert.end_ns, alert.start_ns + 1)),
        color="0.85",
        alpha=0.6,
        lw=0,
        label="episode",
    )
    ax.axvspan(
        _to_datetime(alert.peak_ns - window_ns),
        _to_datetime(alert.peak_ns),
        color="#ff9f1c",
        alpha=0.35,
        lw=0,
        label=f"peak window ({alert.window_minutes:g} min)",
    )
    x0, x1 = _to_datetime(curve_t[0]), _to_datetime(curve_t[-1])
    if math.isfinite(e.baseline_median_usd) and math.isfinite(e.scale_usd):
        # the expected window at the peak's time of day (median x factor)
        med, half = e.baseline_median_usd * e.time_of_day_factor, e.z_level * e.scale_usd
        ax.fill_between(
            [x0, x1],
            [max(med - half, 0.0)] * 2,
            [med + half] * 2,
            color="#4c78a8",
            alpha=0.18,
            lw=0,
            label=f"baseline ({e.baseline_source}) median \u00b1 {e.z_level:g}\u00b7scale",
        )
        ax.hlines(med, x0, x1, color="#4c78a8", lw=1)
    ax.hlines(
        e.floor_usd,
        x0,
        x1,
        color="#d62728",
        lw=1.2,
        ls="--",
        label=f"floor {_fmt_usd(e.floor_usd)}",
    )
    level = _alert_level(e)
    if level > e.floor_usd * 1.0001:
        ax.hlines(
            level, x0, x1, color="black", lw=1, ls=":", label=f"alert level {_fmt_usd(level)}"
        )
    ax.step(_to_datetime(curve_t), curve_s, where="post", color="#2f2f2f", lw=0.9)
    ax.plot(_to_datetime(ts), sums, "o", ms=2.2, color="#2f2f2f", label="window sum at a trade")
    ax.plot(
        _to_datetime(alert.peak_ns),
        alert.peak_window_sum_usd,
        "*",
        ms=13,
        color="#e4572e",
        mec="black",
        mew=0.6,
        label=f"peak {_fmt_usd(alert.peak_window_sum_usd)}",
    )
    # headroom above the peak so the star is never on the frame
    top = max(float(np.max(curve_s)), alert.peak_window_sum_usd, e.floor_usd, level)
    ax.set_ylim(0, top * 1.12)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_axis_usd(v)))
    ax.xaxis.set_major_locator(AutoDateLocator(maxticks=12))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("USD in window")
    ax.set_title(
        f"{alert.trader_id} \u00b7 {alert.asset_class} \u00b7 {len(ts):,} trades that day",
        fontsize=10,
        loc="left",
    )
    ax.grid(True, lw=0.3, alpha=0.5)
    # outside the axes: inside, it would cover the data wherever it sits
    fig.legend(loc="lower center", ncols=4, fontsize=7, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


# -- HTML pieces -------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _anchor(alert: Any) -> str:
    return "alert-" + "".join(c for c in alert.alert_id if c.isalnum() or c in "-_")


def _summary_section(s: Mapping[str, Any], n_alerts: int, n_suppressed: int) -> str:
    rows: list[tuple[str, str]] = []
    if "desks" in s:
        failed = s.get("desks_failed") or []
        partial = s.get("desks_partial") or []
        rows.append(
            (
                "desks",
                f"{s['desks']} ({s['desks'] - len(failed) - len(partial)} ok"
                + (f", <b class='bad'>{len(partial)} partial</b>" if partial else "")
                + (f", <b class='bad'>{len(failed)} failed</b>)" if failed else ")"),
            )
        )
        for p in partial:
            rows.append(
                (
                    "partial desk",
                    f"<b class='bad'>{_e(p.get('desk'))}</b>: "
                    + _e("; ".join(p.get("reasons") or ())),
                )
            )
        for f in failed:
            rows.append(
                (
                    "failed desk",
                    f"<b class='bad'>{_e(f.get('desk'))}</b> ({_e(f.get('path'))}): "
                    f"{_e(f.get('kind'))}: {_e(f.get('error'))}",
                )
            )
    if "trades" in s:
        rows.append(("trades", f"{s['trades']:,}"))
    if "quarantined" in s:
        by = s.get("quarantined_by_reason") or {}
        detail = ", ".join(f"{_e(k)} {v:,}" for k, v in by.items())
        rows.append(("quarantined", f"{s['quarantined']:,}" + (f" ({detail})" if detail else "")))
    rows.append(("alerts", f"{s.get('alerts', n_alerts):,}"))
    by = s.get("suppressed_by_reason") or {}
    rows.append(
        (
            "suppressed",
            f"{s.get('suppressed', n_suppressed):,} floor-passing episodes within the traders' "
            "baselines",
        )
    )
    if "lag_s" in s:
        rows.append(("lag", f"{s['lag_s']:.2f} s from opening the first feed to the last alert"))
    if s.get("stages_s"):
        rows.append(
            ("time per stage", " | ".join(f"{_e(k)} {v:.2f} s" for k, v in s["stages_s"].items()))
        )
    cfg = s.get("config")
    if cfg:
        rows.append(("baselines", _e(cfg.get("baselines", "-"))))
    ev = s.get("evaluation")
    if ev:
        rows.append(
            (
                "vs injected labels",
                f"precision {_fmt_num(ev.get('precision'), 2)}, recall "
                f"{_fmt_num(ev.get('recall'), 2)}: {ev.get('detected')} of "
                f"{ev.get('n_episodes')} injected episodes found; {ev.get('true_positives')} of "
                f"{ev.get('n_alerts')} alerts on injected trades",
            )
        )
    outs = s.get("outputs") or {}
    if outs:
        rows.append(("files", ", ".join(f"{_e(k)}: <code>{_e(v)}</code>" for k, v in outs.items())))
    trs = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<h2>Run summary</h2>\n<table class="kv">{trs}</table>' + _reconciliation(
        s.get("reconciliation") or ()
    )


def _reconciliation(desks: Sequence[Mapping[str, Any]]) -> str:
    """Per desk and asset class: where every record went (seen = analysed + quarantined)."""
    if not desks:
        return ""
    head = (
        "<tr><th>desk</th><th>asset class</th><th>status</th><th>seen</th><th>parsed</th>"
        "<th>quarantined</th><th>analysed</th><th>alerts</th><th>suppressed</th></tr>"
    )
    trs = []
    for d in desks:
        status = _e(d["status"])
        if d["status"] != "ok":
            status = f"<b class='bad'>{status}</b>"
        by = d.get("quarantined_by_reason") or {}
        quarantined = f"{d['quarantined']:,}" + (
            " (" + ", ".join(f"{_e(k)} {v:,}" for k, v in by.items()) + ")" if by else ""
        )
        trs.append(
            f"<tr><td>{_e(d['desk'])}</td><td>all</td><td>{status}</td><td>{d['seen']:,}</td>"
            f"<td>{d['parsed']:,}</td><td>{quarantined}</td><td>{d['analysed']:,}</td>"
            f"<td>{d['alerts']:,}</td><td>{d['suppressed']:,}</td></tr>"
        )
        for ac, c in (d.get("by_asset_class") or {}).items():
            trs.append(
                f"<tr><td></td><td>{_e(ac)}</td><td></td><td></td><td></td><td></td>"
                f"<td>{c['analysed']:,}</td><td>{c['alerts']:,}</td><td>{c['suppressed']:,}</td></tr>"
            )
    return (
        "<h2>Reconciliation</h2>\n<p>Every record of every desk: seen by ingest = analysed + "
        "quarantined (checked by the run).</p>\n<table>" + head + "\n".join(trs) + "</table>"
    )


#: What the status and disposition columns say when the run has no store
#: (or the store lacks the alert).
NOT_STORED = "not stored"

#: The alert list's filters: (row attribute, label).
_FILTERS = (("desk", "desk"), ("trader", "trader"), ("asset", "asset class"), ("status", "status"))


def trading_date(ns: int) -> str:
    """The alert's trading date: the UTC date of its start (the store's
    ``trading_date`` column is the same)."""
    return _fmt_ts(ns)[:10]


def _alert_list(
    ranked: Sequence[Any],
    detailed: set[str],
    desk_of: Mapping[str, str],
    cases: Mapping[str, Mapping[str, Any]] | None,
) -> str:
    """Every alert, one row each; the row's attributes hold what the
    filters match (escaped like every cell), the page's script does the rest."""
    if not ranked:
        return "<h2>Alerts</h2><p>No alerts.</p>"
    cols = (
        ("score", "num"),
        ("trader", ""),
        ("asset class", ""),
        ("desk", ""),
        ("date", ""),
        ("alert id", ""),
        ("status", ""),
        ("disposition", ""),
        ("start (UTC)", "num"),
        ("peak (UTC)", "num"),
        ("peak window USD", "num"),
        ("z", "num"),
        ("x median", "num"),
        ("baseline", ""),
        ("trades", "num"),
    )
    head = (
        "<tr>"
        + "".join(
            f"<th tabindex='0'{' data-type=' + repr(t) if t else ''}"
            + (" class='desc' aria-sort='descending'" if name == "score" else " aria-sort='none'")
            + f">{name}</th>"
            for name, t in cols
        )
        + "</tr>"
    )
    body = []
    seen: dict[str, set[str]] = {k: set() for k, _ in _FILTERS}
    for a in ranked:
        e = a.explanation
        desk = desk_of.get(a.alert_id, "")
        case = (cases or {}).get(a.alert_id)
        status = str(case.get("status") or NOT_STORED) if case is not None else NOT_STORED
        disposition = str(case.get("disposition") or "-") if case is not None else NOT_STORED
        values = {"desk": desk, "trader": a.trader_id, "asset": a.asset_class, "status": status}
        for k, v in values.items():
            seen[k].add(str(v))
        name = _e(a.trader_id)
        ident = _e(a.alert_id)
        if a.alert_id in detailed:
            name = f'<a href="#{_anchor(a)}">{name}</a>'
            ident = f'<a href="#{_anchor(a)}">{ident}</a>'
        attrs = "".join(f' data-{k}="{_e(v)}"' for k, v in values.items())
        body.append(
            f"<tr{attrs}>"
            f"<td data-v='{a.score}'>{a.score:.1f}</td>"
            f"<td>{name}</td><td>{_e(a.asset_class)}</td>"
            f"<td>{_e(desk)}</td><td>{trading_date(a.start_ns)}</td><td>{ident}</td>"
            f"<td>{_e(status)}</td><td>{_e(disposition)}</td>"
            f"<td data-v='{a.start_ns}'>{_fmt_ts(a.start_ns)}</td>"
            f"<td data-v='{a.peak_ns}'>{_fmt_ts(a.peak_ns)}</td>"
            f"<td data-v='{a.peak_window_sum_usd}'>{_fmt_usd(a.peak_window_sum_usd)}</td>"
            f"<td data-v='{_sortable(e.z)}'>{_fmt_num(e.z)}</td>"
            f"<td data-v='{_sortable(e.ratio)}'>{_fmt_num(e.ratio)}</td>"
            f"<td>{_e(e.baseline_source)}</td>"
            f"<td data-v='{len(a.trades)}'>{len(a.trades)}</td>"
            "</tr>"
        )
    controls = []
    for key, label in _FILTERS:
        options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(seen[key]))
        controls.append(
            f'<label>{label} <select data-filter="{key}"><option value="">all</option>'
            f"{options}</select></label>"
        )
    controls.append('<label>search <input type="search" id="alert-search"></label>')
    controls.append('<button type="button" id="alert-export">export CSV</button>')
    note = (
        "status and disposition from the alert store"
        if cases is not None
        else "status and disposition: not stored (run with --store URL to see the cases)"
    )
    return (
        f"<h2>Alerts ({len(ranked):,})</h2>\n"
        '<p class="muted">Every alert of the run. Click a column heading (or focus it and '
        "press Enter) to sort; filter and search narrow the list, export CSV saves the rows "
        f"shown; a trader links to the alert's chart when it has one. {_e(note)}.</p>\n"
        f'<div class="filters">{"".join(controls)} '
        f'<span class="muted" id="alert-count" aria-live="polite">{len(ranked):,} of '
        f"{len(ranked):,} shown</span></div>\n"
        f'<table class="sortable" id="alerts"><thead>{head}</thead><tbody>'
        + "\n".join(body)
        + '</tbody></table><pre id="csv-out" hidden></pre>'
    )


def _sortable(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else "-1e308"


def _alert_section(alert: Any, batch: Any, rows: np.ndarray, img: str | None) -> str:
    e = alert.explanation
    chart = (
        f'<img class="chart" alt="rolling {alert.window_minutes:g}-minute notional of '
        f'{_e(alert.trader_id)} in {_e(alert.asset_class)}" src="data:image/png;base64,{img}">'
        if img is not None
        else f'<p class="note">No chart: matplotlib is not installed '
        f"(<code>{html.escape(_INSTALL_HINT)}</code>).</p>"
    )
    facts = (
        f"score <b>{alert.score:.1f}</b> &middot; peak window <b>{_fmt_usd(alert.peak_window_sum_usd)}"
        f" USD</b> at {_fmt_ts(alert.peak_ns)} &middot; episode {_fmt_ts(alert.start_ns)} to "
        f"{_fmt_ts(alert.end_ns)} ({e.n_windows} breaching windows) &middot; baseline "
        f"{_e(e.baseline_source)}{(' ' + _e(e.baseline_desk)) if e.baseline_desk else ''}: median "
        f"{_fmt_usd(e.baseline_median_usd)}, MAD {_fmt_usd(e.baseline_mad_usd)}, scale "
        f"{_fmt_usd(e.scale_usd)}"
        + (f" ({_e(e.scale_source)})" if e.scale_source else "")
        + f", n={e.baseline_n}"
    )
    return (
        f'<section class="alert" id="{_anchor(alert)}">'
        f"<h3>{_e(alert.trader_id)} &middot; {_e(alert.asset_class)} "
        f'<span class="muted">alert {_e(alert.alert_id)}</span></h3>'
        f"<p>{facts}</p><p class='expl'>{_e(e.describe())}</p>{chart}"
        f"{_trade_table(alert, batch, rows)}</section>"
    )


def _trade_table(alert: Any, batch: Any, rows: np.ndarray) -> str:
    ids = batch.trade_id[rows]
    wanted = set(alert.trades)
    row_of = {t: int(r) for t, r in zip(ids.tolist(), rows.tolist(), strict=True) if t in wanted}
    d = batch.dictionaries
    body = []
    for tid in alert.trades:
        r = row_of.get(tid)
        if r is None:
            body.append(f"<tr><td>{_e(tid)}</td><td colspan='6'>not in this batch</td></tr>")
            continue
        body.append(
            "<tr>"
            f"<td>{_e(tid)}</td><td>{_fmt_ts(int(batch.timestamp_ns[r]), ms=True)}</td>"
            f"<td>{_e(d.desk[batch.desk[r]])}</td><td>{_e(d.currency[batch.currency[r]])}</td>"
            f"<td class='num'>{batch.notional[r]:,.2f}</td>"
            f"<td class='num'>{batch.notional_usd[r]:,.2f}</td>"
            f"<td>{'yes' if batch.surveillance_required[r] else 'no'}</td>"
            "</tr>"
        )
    total = sum(float(batch.notional_usd[r]) for r in row_of.values())
    return (
        f"<details open><summary>{len(alert.trades)} trade(s) in the peak window, "
        f"{_fmt_usd(total)} USD</summary>"
        '<table class="trades"><thead><tr><th>trade</th><th>time (UTC)</th><th>desk</th>'
        "<th>currency</th><th>notional</th><th>USD</th><th>surveillance required</th></tr>"
        "</thead><tbody>" + "\n".join(body) + "</tbody></table></details>"
    )


def _suppressed_section(suppressed: Sequence[Any]) -> str:
    if not suppressed:
        return "<h2>Suppressed episodes</h2><p>None: every floor-passing episode was alerted.</p>"
    reasons = Counter(s.reason.split(":", 1)[0] for s in suppressed)
    top = sorted(suppressed, key=lambda s: -s.peak_window_sum_usd)[:MAX_SUPPRESSED_ROWS]
    rows = "\n".join(
        "<tr>"
        f"<td>{_e(s.trader_id)}</td><td>{_e(s.asset_class)}</td>"
        f"<td data-v='{s.peak_ns}'>{_fmt_ts(s.peak_ns)}</td>"
        f"<td data-v='{s.peak_window_sum_usd}'>{_fmt_usd(s.peak_window_sum_usd)}</td>"
        f"<td data-v='{_sortable(s.explanation.baseline_median_usd)}'>"
        f"{_fmt_usd(s.explanation.baseline_median_usd)}</td>"
        f"<td>{_e(s.reason)}</td></tr>"
        for s in top
    )
    more = (
        f" The {len(top)} largest are listed; the rest are in the suppressed JSON-lines file."
        if len(suppressed) > len(top)
        else ""
    )
    return (
        f"<h2>Suppressed episodes ({len(suppressed):,})</h2>"
        f"<p class='muted'>Windows that passed the static floor but stayed within the "
        f"trader's own normal, so no alert: "
        + ", ".join(f"{_e(k)} {v:,}" for k, v in reasons.most_common())
        + f".{more}</p>"
        '<table class="sortable"><thead><tr><th>trader</th><th>asset class</th>'
        "<th data-type='num'>peak (UTC)</th><th data-type='num'>peak window USD</th>"
        "<th data-type='num'>baseline median</th><th>reason</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1180px;padding:0 16px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:0 0 6px}.muted{color:#666;font-size:12px;font-weight:normal}
.note{background:#fff6e0;border-left:4px solid #f0a500;padding:6px 10px}
.bad{color:#b00020}code{background:#f3f3f3;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
table.kv th{width:170px;color:#444;font-weight:600}
table.sortable th{cursor:pointer;user-select:none;background:#f7f7f7;position:sticky;top:0}
table.sortable th:hover{background:#ececec}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td.num,table.trades td:nth-child(5),table.trades td:nth-child(6){text-align:right;
font-variant-numeric:tabular-nums}
section.alert{border:1px solid #ddd;border-radius:6px;padding:12px 14px;margin:16px 0}
.expl{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;background:#fafafa;
padding:6px 8px}
img.chart{width:100%;max-width:1100px;height:auto;display:block;margin:8px 0}
details summary{cursor:pointer;color:#333;margin:4px 0}
.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:6px 0 10px}
.filters label{font-size:13px}th:focus-visible{outline:2px solid #4c78a8}
"""

_JS = r"""
// sortable tables: click a heading, or focus it (Tab) and press Enter or
// Space; the sorted heading carries aria-sort for screen readers
function sortBy(table, th, desc) {
  var ths = Array.prototype.slice.call(table.querySelectorAll('thead th'));
  var col = ths.indexOf(th), num = th.dataset.type === 'num';
  ths.forEach(function (h) {
    h.classList.remove('asc', 'desc');
    h.setAttribute('aria-sort', 'none');
  });
  th.classList.add(desc ? 'desc' : 'asc');
  th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  function key(r) {
    var c = r.cells[col];
    var v = c.getAttribute('data-v');
    return num ? parseFloat(v === null ? c.textContent : v) : c.textContent.toLowerCase();
  }
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    var c = x < y ? -1 : x > y ? 1 : 0;
    return desc ? -c : c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th) {
    th.tabIndex = 0;
    if (!th.hasAttribute('aria-sort')) th.setAttribute('aria-sort', 'none');
    function toggle() { sortBy(table, th, !th.classList.contains('desc')); }
    th.addEventListener('click', toggle);
    th.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); toggle(); }
    });
  });
});

// the alert list's filters (desk, trader, asset class, status: exact) and
// search (any cell, case-insensitive); rows that do not match are hidden
var surv = (function () {
  var table = document.getElementById('alerts');
  if (!table) return null;
  var selects = document.querySelectorAll('select[data-filter]');
  var search = document.getElementById('alert-search');
  function apply() {
    var want = {};
    selects.forEach(function (s) { if (s.value) want[s.dataset.filter] = s.value; });
    var q = search.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], ok = true;
      for (var k in want) if (r.dataset[k] !== want[k]) ok = false;
      if (ok && q && r.textContent.toLowerCase().indexOf(q) < 0) ok = false;
      r.hidden = !ok;
      if (ok) shown++;
    }
    document.getElementById('alert-count').textContent =
      shown + ' of ' + rows.length + ' shown';
  }
  function setFilter(key, value) {
    selects.forEach(function (s) { if (s.dataset.filter === key) s.value = value; });
  }
  // the rows shown, as CSV (every field quoted; a cell that a spreadsheet
  // would run as a formula gets a leading apostrophe)
  function csv() {
    function field(t) {
      t = t.trim();
      if (/^[=+@]/.test(t) || /^-[^0-9.]/.test(t)) t = "'" + t;
      return '"' + t.replace(/"/g, '""') + '"';
    }
    function line(cells) {
      return Array.prototype.map.call(cells, function (c) {
        return field(c.textContent);
      }).join(',');
    }
    var out = [line(table.tHead.rows[0].cells)];
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      if (!r.hidden) out.push(line(r.cells));
    });
    return out.join('\r\n') + '\r\n';
  }
  function download() {
    var a = document.createElement('a');
    a.href = 'data:text/csv;charset=utf-8,' + encodeURIComponent(csv());
    a.download = 'alerts.csv';
    document.body.appendChild(a);
    a.click();
    a.remove();
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  search.addEventListener('input', apply);
  document.getElementById('alert-export').addEventListener('click', download);
  return { apply: apply, setFilter: setFilter, csv: csv, download: download, table: table };
})();

// a link to the report can say how to open the alert list:
//   #sort=trader (ascending) or #sort=-score (descending)
//   #filter=desk:NY,status:open (values URI-encoded)   #q=search%20text
//   #export: also write the CSV of the rows shown into <pre id="csv-out">
(function () {
  if (!surv) return;
  var args = {};
  location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
    var i = kv.indexOf('=');
    if (kv) args[i < 0 ? kv : kv.slice(0, i)] = i < 0 ? '' : kv.slice(i + 1);
  });
  if (args.sort) {
    var m = /^(-?)(.+)$/.exec(decodeURIComponent(args.sort));
    surv.table.querySelectorAll('thead th').forEach(function (th) {
      if (th.textContent.split(' (')[0].trim() === m[2]) sortBy(surv.table, th, !!m[1]);
    });
  }
  if (args.filter) {
    args.filter.split(',').forEach(function (f) {
      var i = f.indexOf(':');
      if (i > 0) surv.setFilter(decodeURIComponent(f.slice(0, i)), decodeURIComponent(f.slice(i + 1)));
    });
  }
  if (args.q !== undefined) document.getElementById('alert-search').value = decodeURIComponent(args.q);
  surv.apply();
  if ('export' in args) document.getElementById('csv-out').textContent = surv.csv();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
<script>{js}</script>
</body></html>
"""
