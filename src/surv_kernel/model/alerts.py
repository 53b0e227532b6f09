"""Alert records: the explained alert, the suppressed episode, the detection.

Every detector and engine (batch, stream, the pipeline) builds its records
through :func:`episode_explanation`, :func:`episode_alert` and
:func:`episode_suppressed`, so an alert means the same wherever it was made.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from .baselines import FLOOR_ONLY, OWN, SOURCE_NAMES
from .config import DetectionConfig
from .scoring import EVIDENCE_WEIGHTS, SCALE_NAMES, evidence

__all__ = [
    "Alert",
    "Detection",
    "Explanation",
    "SuppressedEpisode",
    "alert_id",
    "episode_alert",
    "episode_explanation",
    "episode_suppressed",
    "detection_html",
    "fmt_usd",
    "verdict",
]


class Explanation(msgspec.Struct, frozen=True):
    """Why a window was (or was not) alerted, at the episode's peak window."""

    window_sum_usd: float  # the peak window's USD sum
    floor_usd: float  # asset-class floor x threshold multiplier
    asset_class_floor_usd: float
    threshold_multiplier: float
    baseline_source: str  # "own", "peer:desk", "peer:asset_class" or "floor-only"
    baseline_desk: str  # the peer desk for "peer:desk", else ""
    baseline_median_usd: float  # NaN for floor-only
    baseline_mad_usd: float  # raw MAD (x 1.4826 for sigma)
    baseline_n: int  # samples behind an own baseline, peer groups behind a peer one
    scale_usd: float  # the sigma used for z: max(sigma, scale_rel*median, scale_abs_usd)
    scale_source: str  # "MAD", "class dispersion", "relative floor", "absolute floor", ""
    z: float  # NaN for floor-only
    ratio: float  # window sum / baseline median; NaN for floor-only
    z_level: float
    ratio_level: float
    n_windows: int  # breaching windows (alerts) or floor-passing windows (suppressed)
    #: the desk's activity at the peak window's time of day over its typical time
    #: (1: no profile, or DetectionConfig.time_of_day off); the expected window is
    #: baseline_median_usd x this, and z and ratio are against it
    time_of_day_factor: float = 1.0
    #: the pieces of evidence of the breach test and their weights in the
    #: combined score (see surv_kernel.model.scoring.evidence): z / z_level and
    #: ratio / ratio_level, their weighted geometric mean, what it had to reach
    #: (1 + reliability_samples / samples for an own baseline, the baseline's
    #: reliability) and the floor each piece had to reach; NaN for floor-only
    evidence_z: float = math.nan
    evidence_ratio: float = math.nan
    weight_z: float = EVIDENCE_WEIGHTS["z"]
    weight_ratio: float = EVIDENCE_WEIGHTS["ratio"]
    evidence_score: float = math.nan
    evidence_required: float = math.nan
    evidence_floor: float = 1.0

    def evidence(self) -> list[dict[str, float | str]]:
        """Each piece of evidence with its value (1 = at its level) and weight."""
        return [
            {"name": "z", "value": self.evidence_z, "weight": self.weight_z},
            {"name": "ratio", "value": self.evidence_ratio, "weight": self.weight_ratio},
        ]

    def describe(self) -> str:
        """One human-readable sentence with every number of the decision."""
        head = (
            f"window sum {fmt_usd(self.window_sum_usd)} USD > floor {fmt_usd(self.floor_usd)} "
            f"({fmt_usd(self.asset_class_floor_usd)} x {self.threshold_multiplier:g})"
        )
        if self.baseline_source == SOURCE_NAMES[FLOOR_ONLY]:
            return f"{head}; no baseline (too little history, no peers): the floor alone decides"
        where = self.baseline_source + (f" {self.baseline_desk}" if self.baseline_desk else "")
        unit = "samples" if self.baseline_source == SOURCE_NAMES[OWN] else "peer groups"
        tod = (
            ""
            if self.time_of_day_factor == 1.0
            else f" x {self.time_of_day_factor:.2f} for the time of day"
        )
        return (
            f"{head}; {self.ratio:.1f}x the {where} baseline median "
            f"{fmt_usd(self.baseline_median_usd)}{tod} over {self.baseline_n} {unit} (MAD "
            f"{fmt_usd(self.baseline_mad_usd)}, sigma {fmt_usd(self.scale_usd)} from "
            f"{self.scale_source}); {verdict(self.z, self.ratio, self.z_level, self.ratio_level)}"
            f"; evidence z {self.evidence_z:.2f} (weight {self.weight_z:g}) and ratio "
            f"{self.evidence_ratio:.2f} (weight {self.weight_ratio:g}): score "
            f"{self.evidence_score:.2f} vs required {self.evidence_required:.2f}"
            f" (each >= {self.evidence_floor:g})"
        )


class Alert(msgspec.Struct, frozen=True):
    alert_id: str  # sha256(trader|asset class|start_ns|first trade of the first breach), 24 hex
    trader_id: str
    asset_class: str
    start_ns: int  # first trade of the episode's first breaching window
    end_ns: int  # the episode's last breaching trade
    peak_ns: int  # the peak window's last trade
    peak_window_sum_usd: float
    trades: list[str]  # the peak window's trades, (timestamp, trade id) order
    score: float  # 0..100, see _score
    window_minutes: float
    policy: str
    explanation: Explanation
    #: The detector (typology) that raised it: its key in ``model.DETECTORS``.
    typology: str = "volume_burst"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the legacy keys (``trader_id``, ``trades``,
        ``combined_notional`` = peak window USD sum, ``window_minutes``), every
        field of the alert, and ``explanation["text"]``."""
        out = msgspec.to_builtins(self)
        out["combined_notional"] = self.peak_window_sum_usd
        out["explanation"]["text"] = self.explanation.describe()
        return out


class SuppressedEpisode(msgspec.Struct, frozen=True):
    """A floor-passing episode that was not alerted, and why.

    The peak window's trades are the group's trades with timestamps in
    ``[peak_ns - W, peak_ns]`` (``n_trades`` of them); they are not copied
    here because a busy institutional day has thousands of such episodes.
    """

    trader_id: str
    asset_class: str
    start_ns: int
    end_ns: int
    peak_ns: int
    peak_window_sum_usd: float
    n_trades: int
    reason: str
    explanation: Explanation
    #: The detector (typology) whose floor the episode passed.
    typology: str = "volume_burst"


class Detection(msgspec.Struct):
    """Result of :func:`detect`: the alerts, and the suppression report holding
    every floor-passing episode that was not alerted, both sorted by
    (start_ns, trader_id, asset_class). ``n_floor_episodes`` counts the
    floor-passing episodes: each one contains at least one alerted episode or
    is in ``suppressed`` (under ``policy="static"`` each is one alert)."""

    alerts: list[Alert]
    suppressed: list[SuppressedEpisode]
    n_trades: int
    n_floor_episodes: int

    def __repr__(self) -> str:
        # the default repr prints every alert and explanation (85 kB for 25
        # alerts); the records are one attribute (or to_polars()) away
        return (
            f"Detection(alerts={len(self.alerts)}, suppressed={len(self.suppressed)}, "
            f"n_trades={self.n_trades}, n_floor_episodes={self.n_floor_episodes})"
        )

    def _repr_html_(self) -> str:
        """Notebooks: the counts and the highest-scoring alerts as a table."""
        return detection_html(self)

    def to_arrow(self, what: str = "alerts") -> Any:
        """``alerts`` or ``suppressed`` as a pyarrow Table (needs pyarrow:
        ``pip install surv_kernel[arrow]``); see :mod:`surv_kernel.frames`."""
        from ..frames.output import detection_frame

        return detection_frame(self, what, "arrow")

    def to_polars(self, what: str = "alerts") -> Any:
        """``alerts`` or ``suppressed`` as a polars DataFrame (via Arrow)."""
        from ..frames.output import detection_frame

        return detection_frame(self, what, "polars")

    def to_pandas(self, what: str = "alerts") -> Any:
        """``alerts`` or ``suppressed`` as a pandas DataFrame (via Arrow)."""
        from ..frames.output import detection_frame

        return detection_frame(self, what, "pandas")


#: Alerts shown by ``Detection._repr_html_`` (the highest scores first).
HTML_ALERTS = 10


def detection_html(detection: Detection) -> str:
    """A small HTML summary: counts, then the top alerts by score."""
    import datetime as dt
    import html

    top = sorted(detection.alerts, key=lambda a: (-a.score, a.start_ns, a.alert_id))
    rows = []
    for a in top[:HTML_ALERTS]:
        start = dt.datetime.fromtimestamp(a.start_ns / 1e9, dt.timezone.utc)
        cells = (
            a.alert_id,
            a.trader_id,
            a.asset_class,
            start.strftime("%Y-%m-%d %H:%M:%S"),
            fmt_usd(a.peak_window_sum_usd),
            f"{a.score:g}",
            a.explanation.describe(),
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("alert id", "trader", "asset class", "start (UTC)", "peak USD", "score", "why")
    )
    more = len(top) - HTML_ALERTS
    return (
        f"<div><b>Detection</b>: {len(detection.alerts)} alerts, "
        f"{len(detection.suppressed)} suppressed episodes, {detection.n_trades} trades, "
        f"{detection.n_floor_episodes} floor episodes"
        + (f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "")
        + (
            f"<p>... and {more} more (<code>.alerts</code>, <code>.to_polars()</code>)</p>"
            if more > 0
            else ""
        )
        + "</div>"
    )


def fmt_usd(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    for unit, scale in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def verdict(z: float, ratio: float, z_level: float, ratio_level: float) -> str:
    zs = ">=" if z >= z_level else "<"
    rs = ">=" if ratio >= ratio_level else "<"
    return f"z={z:.1f} {zs} {z_level:g}, ratio {ratio:.1f} {rs} {ratio_level:g}"


def _score(
    z: float, ratio: float, s: float, floor: float, floor_only: bool, cfg: DetectionConfig
) -> float:
    """0..100: ``100 f^2 / (1 + f^2)`` with ``f = min(z / z_level, ratio /
    ratio_level)``, so 50 when the weaker test sits exactly at its level, 80
    at twice it, 90 at three times; static-policy alerts inside the baseline
    score below 50. Floor-only alerts use ``f = sum / floor``."""
    f = s / floor if floor_only else min(z / cfg.z_level, ratio / cfg.ratio_level)
    f = max(f, 0.0)
    if math.isinf(f):
        return 100.0
    return round(100.0 * f * f / (1.0 + f * f), 1)


def alert_id(trader: str, ac: str, start_ns: int, first_trade: str) -> str:
    key = f"{trader}|{ac}|{start_ns}|{first_trade}".encode()
    return hashlib.sha256(key).hexdigest()[:24]


# -- per-episode records: the one place batch and stream make them -------------------


def episode_explanation(
    cfg: DetectionConfig,
    window_sum: float,
    ac_floor: float,
    src: int,
    desk: str,
    median: float,
    mad: float,
    baseline_n: int,
    scale: float,
    scale_src: int,
    z: float,
    ratio: float,
    n_windows: int,
    time_of_day_factor: float = 1.0,
) -> Explanation:
    """The :class:`Explanation` of one episode from its peak window's plain
    values: ``src`` / ``scale_src`` are SOURCE_NAMES / SCALE_NAMES codes,
    ``desk`` the peer desk's name ("" for none)."""
    floor_only = src == FLOOR_ONLY
    ez, er, comb, need = evidence(z, ratio, baseline_n, src == OWN, cfg)
    # positional construction: ~3x cheaper than keywords, and a busy day
    # has tens of thousands of suppressed episodes (order: the fields)
    return Explanation(
        window_sum,  # window_sum_usd
        ac_floor * cfg.threshold_multiplier,  # floor_usd
        ac_floor,  # asset_class_floor_usd
        cfg.threshold_multiplier,
        SOURCE_NAMES[src],  # baseline_source
        desk,  # baseline_desk
        median,  # baseline_median_usd
        mad,  # baseline_mad_usd
        baseline_n,  # baseline_n
        math.nan if floor_only else scale,  # scale_usd
        "" if floor_only else SCALE_NAMES[scale_src],  # scale_source
        z,
        ratio,
        cfg.z_level,
        cfg.ratio_level,
        n_windows,
        time_of_day_factor,
        ez,
        er,
        EVIDENCE_WEIGHTS["z"],
        EVIDENCE_WEIGHTS["ratio"],
        comb,
        need,
        cfg.evidence_floor,
    )


def _evidence_reason(expl: Explanation) -> str:
    """The combined-evidence part of a suppression reason ("" when the rule is
    the plain AND of the two levels, which ``verdict`` already says)."""
    if expl.evidence_floor == 1.0 and expl.evidence_required == 1.0:
        return ""
    if math.isnan(expl.evidence_score):
        return ""
    return (
        f", evidence score {expl.evidence_score:.2f} vs required {expl.evidence_required:.2f}"
        f" (each piece >= {expl.evidence_floor:g})"
    )


def episode_suppressed(
    cfg: DetectionConfig,
    trader: str,
    ac: str,
    start_ns: int,
    end_ns: int,
    peak_ns: int,
    n_trades: int,
    expl: Explanation,
) -> SuppressedEpisode:
    """A floor-passing episode that was not alerted, explained by ``expl``
    (from :func:`episode_explanation`)."""
    return SuppressedEpisode(
        trader,  # trader_id
        ac,  # asset_class
        start_ns,
        end_ns,
        peak_ns,
        expl.window_sum_usd,  # peak_window_sum_usd
        n_trades,
        "within baseline: "
        + verdict(expl.z, expl.ratio, cfg.z_level, cfg.ratio_level)
        + _evidence_reason(expl),
        expl,
    )


def episode_alert(
    cfg: DetectionConfig,
    trader: str,
    ac: str,
    start_ns: int,
    first_trade: str,
    end_ns: int,
    peak_ns: int,
    trades: list[str],
    expl: Explanation,
) -> Alert:
    """An alerted episode: its id is the episode's (start and the first
    trade, in (timestamp, trade id) order, of its first breaching window);
    ``trades`` are the peak window's trades; ``expl`` from
    :func:`episode_explanation`."""
    s = expl.window_sum_usd
    floor_only = expl.baseline_source == SOURCE_NAMES[FLOOR_ONLY]
    return Alert(
        alert_id=alert_id(trader, ac, start_ns, first_trade),
        trader_id=trader,
        asset_class=ac,
        start_ns=start_ns,
        end_ns=end_ns,
        peak_ns=peak_ns,
        peak_window_sum_usd=s,
        trades=trades,
        score=_score(expl.z, expl.ratio, s, expl.floor_usd, floor_only, cfg),
        window_minutes=cfg.window_minutes,
        policy=cfg.policy,
        explanation=expl,
    )
