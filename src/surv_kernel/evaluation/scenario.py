"""Labelled synthetic trading days and the evaluation that scores any detector.

:func:`generate_day` draws one trading day of six desks (New York, London and
Tokyo sessions, equities / fixed income / derivatives, USD, EUR, GBP and JPY
notionals) from heterogeneous traders and injects abuse episodes whose trade
ids are the labels:

- ``burst``: one to four trades within a few minutes, far above the trader's
  own normal window volume;
- ``structuring``: many mid-size trades inside one window, each unremarkable,
  together far above normal (the pattern the received pair rule misses);
- ``ramp``: a slow build of growing trades over one to two windows.

Normal activity is deliberately awkward: lognormal trade sizes with per-trader
dispersion, U-shaped intraday intensity (busy open and close), institutional
traders whose ordinary half hour already exceeds the static floor, algorithmic
traders with thousands of small trades, sparse traders with a handful (cold
start), optional block traders (few, large, very dispersed trades: the
hardest population for any volume rule), and JPY books whose raw notionals
are ~150x their USD value. Every knob of the day is a keyword of
:func:`generate_day` so a detector can be checked across trader mixes and
intensities, not tuned to one seed.

Run the side-by-side table (received pair rule vs model, per mix and seed,
with pooled figures)::

    PYTHONPATH=src python -m surv_kernel.evaluation.scenario [--seeds 0-5] [--mix default]
        [--no-received] [--knob sigma_scale=1.3]

:func:`evaluate_alerts` scores a list of alerts (model :class:`Alert` objects
or legacy dicts with a ``"trades"`` key): an alert is a true positive when it
names at least one injected trade and its trades span at most two windows;
recall counts injected episodes named by at least one true-positive alert.
:func:`compare_rules` prints the received pair rule beside the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from .. import dtypes
from ..batch import Dictionaries, TradeBatch
from ..reference import asset_class_floor, fx_rate

__all__ = [
    "ABUSE_KINDS",
    "DESKS",
    "TRADER_KINDS",
    "DeskSpec",
    "EvalResult",
    "InjectedEpisode",
    "Scenario",
    "TraderProfile",
    "compare_rules",
    "evaluate_alerts",
    "generate_day",
]


@dataclass(frozen=True)
class DeskSpec:
    name: str
    code: str  # short prefix of the desk's trade ids
    session_utc: tuple[float, float]  # trading hours, UTC, as fractional hours
    asset_classes: tuple[str, ...]
    currencies: tuple[tuple[str, float], ...]  # (currency, share of trades)


DESKS: tuple[DeskSpec, ...] = (
    DeskSpec("NY Equities", "NYEQ", (13.5, 20.0), ("equity",), (("USD", 1.0),)),
    DeskSpec("NY Rates", "NYFI", (12.0, 20.0), ("fixed_income",), (("USD", 0.9), ("EUR", 0.1))),
    DeskSpec("London Equities", "LNEQ", (8.0, 16.5), ("equity",), (("GBP", 0.6), ("EUR", 0.4))),
    DeskSpec(
        "London Derivatives",
        "LNDV",
        (7.0, 16.5),
        ("derivative",),
        (("EUR", 0.5), ("GBP", 0.3), ("USD", 0.2)),
    ),
    DeskSpec("Tokyo Equities", "TKEQ", (0.0, 6.0), ("equity", "derivative"), (("JPY", 1.0),)),
    DeskSpec(
        "Multi-Asset",
        "MULT",
        (12.0, 20.0),
        ("equity", "fixed_income", "derivative"),
        (("USD", 0.7), ("EUR", 0.3)),
    ),
)


@dataclass(frozen=True)
class _KindSpec:
    """How one kind of trader behaves, per asset class book.

    ``median_of_floor``: range of the median trade size as a fraction of the
    asset class floor (so a fixed-income trade is ~5x an equity trade);
    ``sigma``: range of the lognormal dispersion of trade sizes;
    ``trades_per_day``: range of the expected number of trades per book.
    """

    median_of_floor: tuple[float, float]
    sigma: tuple[float, float]
    trades_per_day: tuple[float, float]


TRADER_KINDS: Mapping[str, _KindSpec] = {
    "small": _KindSpec((0.01, 0.08), (0.5, 1.0), (10, 120)),
    "medium": _KindSpec((0.08, 0.30), (0.5, 0.9), (30, 250)),
    # ordinary half hours of these books exceed floor x 3 all day
    "institutional": _KindSpec((0.5, 2.0), (0.4, 0.8), (80, 350)),
    "algo": _KindSpec((0.003, 0.02), (0.3, 0.6), (500, 2000)),
    # a handful of trades: tiny own baselines or cold start
    "sparse": _KindSpec((0.05, 0.6), (0.4, 0.8), (2, 7)),
    # occasional block traders: few, large, very dispersed trades, so their
    # ordinary day holds windows many times their own median that pass the
    # floor (not in the default mix; the hardest population for any
    # volume-based detector, see MIXES["block-traders"])
    "block": _KindSpec((0.1, 1.0), (0.5, 1.0), (2, 7)),
}

DEFAULT_TRADER_MIX: Mapping[str, float] = {
    "small": 0.30,
    "medium": 0.28,
    "institutional": 0.15,
    "algo": 0.07,
    "sparse": 0.20,
}

ABUSE_KINDS = ("burst", "structuring", "ramp")
DEFAULT_ABUSE_MIX: Mapping[str, float] = {"burst": 0.4, "structuring": 0.35, "ramp": 0.25}


@dataclass(frozen=True)
class TraderProfile:
    trader_id: str
    desk: str
    kind: str
    # per asset class book: (median trade USD, sigma, expected trades per day)
    books: Mapping[str, tuple[float, float, float]]


@dataclass(frozen=True)
class InjectedEpisode:
    kind: str
    trader_id: str
    asset_class: str
    desk: str
    start_ns: int
    end_ns: int
    trade_ids: frozenset[str]
    injected_usd: float  # the largest window sum of the injected trades alone
    normal_window_usd: float  # the book's mean window sum without abuse


@dataclass
class Scenario:
    """One labelled day. Columns are in arrival order: desk by desk, each desk's
    trades in time order (how six desk feeds concatenate)."""

    seed: int
    window_minutes: float
    desks: tuple[DeskSpec, ...]
    traders: tuple[TraderProfile, ...]
    episodes: tuple[InjectedEpisode, ...]
    trade_id: np.ndarray  # object array of str
    timestamp_ns: np.ndarray
    notional: np.ndarray  # in the trade's currency
    notional_usd: np.ndarray
    currency: np.ndarray  # object array of str
    asset_class: np.ndarray  # object array of str
    trader_id: np.ndarray  # object array of str
    desk: np.ndarray  # object array of str
    surveillance_required: np.ndarray
    batch: TradeBatch = field(repr=False)

    @property
    def labels(self) -> list[frozenset[str]]:
        """Injected trade ids, one set per episode."""
        return [e.trade_ids for e in self.episodes]

    def __len__(self) -> int:
        return len(self.trade_id)

    def trades(self) -> list[dict[str, Any]]:
        """The day as legacy trade dicts (the concatenated desk feeds)."""
        seconds = self.timestamp_ns / dtypes.NS_PER_SECOND
        return [
            {
                "trade_id": tid,
                "asset_class": ac,
                "notional": float(notional),
                "currency": cur,
                "trader_id": trader,
                "timestamp": float(ts),
                "surveillance_required": bool(sr),
            }
            for tid, ac, notional, cur, trader, ts, sr in zip(
                self.trade_id,
                self.asset_class,
                self.notional,
                self.currency,
                self.trader_id,
                seconds,
                self.surveillance_required,
                strict=True,
            )
        ]

    def feeds(self) -> dict[str, bytes]:
        """Desk name -> JSON array in the feed schema, trades in time order."""
        trades = self.trades()
        out: dict[str, list[dict[str, Any]]] = {d.name: [] for d in self.desks}
        for desk, trade in zip(self.desk, trades, strict=True):
            out[desk].append(trade)
        return {name: msgspec.json.encode(rows) for name, rows in out.items()}

    def timestamps_by_trade_id(self) -> dict[str, int]:
        return dict(zip(self.trade_id.tolist(), self.timestamp_ns.tolist(), strict=True))


def _u_shaped_times(rng: np.random.Generator, n: int, u_shape: float) -> np.ndarray:
    """``n`` points in [0, 1) with density proportional to ``1 + u_shape*(2x-1)^2``
    (busy open and close, quiet midday), by rejection sampling."""
    out = np.empty(0)
    while len(out) < n:
        x = rng.random(2 * (n - len(out)) + 16)
        keep = rng.random(len(x)) * (1.0 + u_shape) < 1.0 + u_shape * (2.0 * x - 1.0) ** 2
        out = np.concatenate([out, x[keep]])
    return out[:n]


def _normal_window_sum(ts_ns: np.ndarray, usd: np.ndarray, window_ns: int) -> float:
    """The book's normal window volume: the mean over its trades of the sum
    over [t - W, t] (reference semantics, computed directly with searchsorted:
    books are small). The mean, not the median: "normal volume" should count
    the book's ordinary large trades, or a volatile trader's routine day would
    read as many times its normal."""
    if len(ts_ns) == 0:
        return 0.0
    o = np.argsort(ts_ns, kind="stable")
    t, v = ts_ns[o], usd[o]
    c = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.searchsorted(t, t - window_ns, side="left")
    hi = np.searchsorted(t, t, side="right")
    return float(np.mean(c[hi] - c[lo]))


def _max_window_sum(ts_ns: np.ndarray, usd: np.ndarray, window_ns: int) -> float:
    o = np.argsort(ts_ns, kind="stable")
    t, v = ts_ns[o], usd[o]
    c = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.searchsorted(t, t - window_ns, side="left")
    hi = np.searchsorted(t, t, side="right")
    return float(np.max(c[hi] - c[lo]))


def _choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[k] for k in names], float)
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _check_range(name: str, value: tuple[float, float], low: float = 0.0) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (low <= lo <= hi and math.isfinite(hi)):
        raise ValueError(
            f"{name} must be a (low, high) pair with {low} <= low <= high, got {value}"
        )
    return lo, hi


def generate_day(
    seed: int = 0,
    *,
    n_traders: int = 120,
    trader_mix: Mapping[str, float] | None = None,
    n_episodes: int = 24,
    abuse_mix: Mapping[str, float] | None = None,
    intensity: tuple[float, float] = (6.0, 20.0),
    floor_excess: tuple[float, float] = (1.3, 3.0),
    sigma_scale: float = 1.0,
    activity_scale: float = 1.0,
    u_shape: float = 3.0,
    window_minutes: float = 30.0,
    threshold_multiplier: float = 3.0,
    date: str = "2024-03-14",
    desks: Sequence[DeskSpec] = DESKS,
    population_seed: int | None = None,
    dictionaries: Dictionaries | None = None,
) -> Scenario:
    """Draw one labelled trading day.

    Knobs:
    - ``n_traders`` traders, kinds drawn from ``trader_mix`` (weights over
      ``TRADER_KINDS``), assigned round-robin to ``desks``; a multi-asset desk's
      trader runs one to three asset-class books.
    - ``n_episodes`` abuse episodes, kinds drawn from ``abuse_mix`` (weights
      over ``ABUSE_KINDS``), each on a distinct (trader, asset class) book.
    - ``intensity``: the injected trades' largest window sum is at least
      ``U(*intensity)`` times the book's mean window sum ("far above its own
      normal") and at least ``U(*floor_excess)`` times the static floor
      (asset class floor x ``threshold_multiplier``) so a floor-gated detector
      can see it at all.
    - ``population_seed`` (default ``seed``) draws the traders and their books;
      days with the same population seed and different ``seed`` are different
      days of the same desks (history for :func:`surv_kernel.calibrate`; give
      each day its own ``date`` so their windows do not overlap).
    - ``dictionaries``: encode ``Scenario.batch`` with these (shared by several
      days, their batches can be concatenated with ``TradeBatch.concat``).
    - ``sigma_scale`` multiplies every trader's lognormal size dispersion,
      ``activity_scale`` every trade rate, ``u_shape`` the open/close peak
      (intensity at open = ``1 + u_shape`` times midday).
    """
    rng = np.random.default_rng(seed)
    pop = np.random.default_rng(seed if population_seed is None else population_seed)
    if n_traders < 1:
        raise ValueError(f"n_traders must be >= 1, got {n_traders}")
    if n_episodes < 0:
        raise ValueError(f"n_episodes must be >= 0, got {n_episodes}")
    mix = dict(DEFAULT_TRADER_MIX if trader_mix is None else trader_mix)
    unknown = set(mix) - set(TRADER_KINDS)
    if unknown:
        raise ValueError(f"unknown trader kinds {sorted(unknown)}; known: {sorted(TRADER_KINDS)}")
    amix = dict(DEFAULT_ABUSE_MIX if abuse_mix is None else abuse_mix)
    unknown = set(amix) - set(ABUSE_KINDS)
    if unknown:
        raise ValueError(f"unknown abuse kinds {sorted(unknown)}; known: {list(ABUSE_KINDS)}")
    intensity = _check_range("intensity", intensity, 1.0)
    floor_excess = _check_range("floor_excess", floor_excess, 1.0)
    if not (sigma_scale > 0 and activity_scale > 0 and u_shape >= 0 and window_minutes > 0):
        raise ValueError("sigma_scale, activity_scale, window_minutes must be > 0, u_shape >= 0")
    desks = tuple(desks)
    window_ns = round(window_minutes * dtypes.NS_PER_MINUTE)
    day0_ns = int(np.datetime64(date, "ns").astype(np.int64))

    # -- traders and their books ------------------------------------------
    traders: list[TraderProfile] = []
    for i in range(n_traders):
        desk = desks[i % len(desks)]
        kind = _choice(pop, mix)
        spec = TRADER_KINDS[kind]
        if len(desk.asset_classes) == 1:
            classes = desk.asset_classes
        else:
            k = int(pop.integers(1, len(desk.asset_classes) + 1))
            picked = pop.choice(len(desk.asset_classes), size=k, replace=False)
            classes = tuple(desk.asset_classes[j] for j in sorted(picked))
        books = {}
        for ac in classes:
            median = asset_class_floor(ac) * pop.uniform(*spec.median_of_floor)
            sigma = pop.uniform(*spec.sigma) * sigma_scale
            rate = math.exp(pop.uniform(*np.log(spec.trades_per_day))) * activity_scale
            books[ac] = (median, sigma, rate)
        traders.append(TraderProfile(f"TR{i:04d}", desk.name, kind, books))

    # -- normal trades ------------------------------------------------------
    desk_of = {d.name: d for d in desks}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "usd", "trader", "ac", "desk")}
    abuse_flag: list[np.ndarray] = []
    book_rows: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for tp in traders:
        desk = desk_of[tp.desk]
        start_h, end_h = desk.session_utc
        span_ns = int((end_h - start_h) * 3600 * dtypes.NS_PER_SECOND)
        for ac, (median, sigma, rate) in tp.books.items():
            n = max(1, int(rng.poisson(rate)))
            x = _u_shaped_times(rng, n, u_shape)
            # millisecond resolution, as desk systems stamp trades
            ts = (
                day0_ns
                + int(start_h * 3600 * dtypes.NS_PER_SECOND)
                + (x * span_ns).astype(np.int64)
            )
            ts = ts // 1_000_000 * 1_000_000
            usd = median * rng.lognormal(0.0, sigma, n)
            book_rows[(tp.trader_id, ac)] = (ts, usd)
            for key, val in (("ts", ts), ("usd", usd)):
                cols[key].append(val)
            cols["trader"].append(np.full(n, tp.trader_id, object))
            cols["ac"].append(np.full(n, ac, object))
            cols["desk"].append(np.full(n, tp.desk, object))
            abuse_flag.append(np.full(n, -1, np.int64))

    # -- abuse episodes -------------------------------------------------------
    books_all = sorted(book_rows)
    chosen = rng.choice(len(books_all), size=min(n_episodes, len(books_all)), replace=False)
    trader_by_id = {t.trader_id: t for t in traders}
    episode_meta = []
    for e, b in enumerate(chosen):
        trader_id, ac = books_all[int(b)]
        tp = trader_by_id[trader_id]
        desk = desk_of[tp.desk]
        median, sigma, _ = tp.books[ac]
        normal_ts, normal_usd = book_rows[(trader_id, ac)]
        normal_window = _normal_window_sum(normal_ts, normal_usd, window_ns)
        static_floor = asset_class_floor(ac) * threshold_multiplier
        target = max(
            rng.uniform(*intensity) * normal_window, rng.uniform(*floor_excess) * static_floor
        )
        kind = _choice(rng, amix)
        if kind == "burst":
            n = int(rng.integers(1, 5))
            offsets = np.sort(rng.uniform(0, 5 * 60, n))
            weights = rng.lognormal(0, 0.3, n)
        elif kind == "structuring":
            n = int(rng.integers(8, 31))
            duration = rng.uniform(0.3, 0.85) * window_minutes * 60
            offsets = np.sort(rng.uniform(0, duration, n))
            weights = rng.lognormal(0, 0.25, n)
        else:  # ramp: growing trades over one to two windows
            n = int(rng.integers(6, 16))
            duration = rng.uniform(1.0, 1.8) * window_minutes * 60
            offsets = np.sort(rng.uniform(0, duration, n))
            weights = (0.2 + offsets / duration) ** 2 * rng.lognormal(0, 0.15, n)
        start_h, end_h = desk.session_utc
        session = (end_h - start_h) * 3600
        t0 = rng.uniform(0.05, 0.95) * max(session - offsets[-1], 1.0)
        ts = day0_ns + ((start_h * 3600 + t0 + offsets) * dtypes.NS_PER_SECOND).astype(np.int64)
        ts = ts // 1_000_000 * 1_000_000
        usd = weights * (target / _max_window_sum(ts, weights, window_ns))
        cols["ts"].append(ts)
        cols["usd"].append(usd)
        cols["trader"].append(np.full(n, trader_id, object))
        cols["ac"].append(np.full(n, ac, object))
        cols["desk"].append(np.full(n, tp.desk, object))
        abuse_flag.append(np.full(n, e, np.int64))
        episode_meta.append((kind, trader_id, ac, tp.desk, target, normal_window))

    ts = np.concatenate(cols["ts"])
    usd = np.concatenate(cols["usd"])
    trader = np.concatenate(cols["trader"])
    ac = np.concatenate(cols["ac"])
    desk = np.concatenate(cols["desk"])
    episode_of = np.concatenate(abuse_flag)
    n = len(ts)

    # currency per trade from the desk's mix; notional in that currency,
    # rounded to cents as a booking system would
    currency = np.empty(n, object)
    for d in desks:
        rows = np.flatnonzero(desk == d.name)
        names = [c for c, _ in d.currencies]
        p = np.array([w for _, w in d.currencies], float)
        currency[rows] = np.array(names, object)[rng.choice(len(names), len(rows), p=p / p.sum())]
    rate = np.array([fx_rate(c) for c in currency], float)
    notional = np.round(usd / rate, 2)
    notional_usd = notional * rate
    surveillance_required = rng.random(n) < 0.1

    # arrival order: desk by desk (DESKS order), time order inside a desk;
    # trade ids numbered in that order so they carry no hint of the labels
    desk_rank = {d.name: i for i, d in enumerate(desks)}
    order = np.lexsort((ts, np.array([desk_rank[d] for d in desk])))
    ts, notional, notional_usd = ts[order], notional[order], notional_usd[order]
    currency, trader, ac, desk = currency[order], trader[order], ac[order], desk[order]
    episode_of, surveillance_required = episode_of[order], surveillance_required[order]
    code_of = {d.name: d.code for d in desks}
    seq: dict[str, int] = {}
    trade_id = np.empty(n, object)
    for i, d in enumerate(desk):
        k = seq.get(d, 0) + 1
        seq[d] = k
        trade_id[i] = f"{code_of[d]}-{seed % 1000:03d}-{k:07d}"

    episodes = []
    for e, (kind, trader_id, book_ac, desk_name, target, normal_window) in enumerate(episode_meta):
        rows = np.flatnonzero(episode_of == e)
        episodes.append(
            InjectedEpisode(
                kind=kind,
                trader_id=trader_id,
                asset_class=book_ac,
                desk=desk_name,
                start_ns=int(ts[rows].min()),
                end_ns=int(ts[rows].max()),
                trade_ids=frozenset(trade_id[rows].tolist()),
                injected_usd=float(target),
                normal_window_usd=float(normal_window),
            )
        )

    dicts = Dictionaries() if dictionaries is None else dictionaries
    batch = TradeBatch(
        timestamp_ns=ts,
        notional_usd=notional_usd,
        notional=notional,
        trader=dicts.trader.encode(trader),
        asset_class=dicts.asset_class.encode(ac),
        currency=dicts.currency.encode(currency),
        desk=dicts.desk.encode(desk),
        surveillance_required=surveillance_required,
        trade_id=trade_id,
        dictionaries=dicts,
    )
    return Scenario(
        seed=seed,
        window_minutes=window_minutes,
        desks=desks,
        traders=tuple(traders),
        episodes=tuple(episodes),
        trade_id=trade_id,
        timestamp_ns=ts,
        notional=notional,
        notional_usd=notional_usd,
        currency=currency,
        asset_class=ac,
        trader_id=trader,
        desk=desk,
        surveillance_required=surveillance_required,
        batch=batch,
    )


# -- evaluation ---------------------------------------------------------------


class EvalResult(msgspec.Struct, frozen=True):
    n_alerts: int
    true_positives: int
    false_positives: int
    n_episodes: int
    detected: int
    precision: float  # true positives / alerts (NaN when there are no alerts)
    recall: float  # detected episodes / injected episodes (NaN when none injected)
    alerts_per_detected_episode: float  # mean true-positive alerts naming a detected episode
    recall_by_kind: dict[str, float]
    missed: list[int]  # indices of undetected episodes


def _alert_trades(alert: Any) -> list[str]:
    if isinstance(alert, Mapping):
        return list(alert["trades"])
    return list(alert.trades)


def evaluate_alerts(
    alerts: Iterable[Any], scenario: Scenario, window_minutes: float | None = None
) -> EvalResult:
    """Score ``alerts`` (objects with ``.trades`` or dicts with ``"trades"``).

    True positive: the alert names at least one injected trade and the
    timestamps of its trades span at most two windows. An episode is detected
    when a true-positive alert names one of its trades. Alerts per detected
    episode counts, for each detected episode, the true-positive alerts that
    name it (so the received rule's duplicate pairs show up here).
    """
    wm = scenario.window_minutes if window_minutes is None else window_minutes
    window_ns = round(wm * dtypes.NS_PER_MINUTE)
    ts_of = scenario.timestamps_by_trade_id()
    episode_of: dict[str, int] = {}
    for e, ep in enumerate(scenario.episodes):
        for tid in ep.trade_ids:
            episode_of[tid] = e
    hits = np.zeros(len(scenario.episodes), np.int64)
    n_alerts = tp = 0
    for alert in alerts:
        n_alerts += 1
        ids = _alert_trades(alert)
        try:
            times = [ts_of[t] for t in ids]
        except KeyError as exc:
            raise ValueError(f"alert names trade {exc.args[0]!r}, not in the scenario") from None
        named = {episode_of[t] for t in ids if t in episode_of}
        if named and times and max(times) - min(times) <= 2 * window_ns:
            tp += 1
            for e in named:
                hits[e] += 1
    n_ep = len(scenario.episodes)
    detected = int(np.count_nonzero(hits))
    by_kind: dict[str, list[bool]] = {}
    for e, ep in enumerate(scenario.episodes):
        by_kind.setdefault(ep.kind, []).append(bool(hits[e]))
    return EvalResult(
        n_alerts=n_alerts,
        true_positives=tp,
        false_positives=n_alerts - tp,
        n_episodes=n_ep,
        detected=detected,
        precision=tp / n_alerts if n_alerts else math.nan,
        recall=detected / n_ep if n_ep else math.nan,
        alerts_per_detected_episode=float(hits[hits > 0].mean()) if detected else math.nan,
        recall_by_kind={k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        missed=[int(e) for e in np.flatnonzero(hits == 0)],
    )


#: Trader mixes used by :func:`compare_rules` to check robustness.
MIXES: Mapping[str, Mapping[str, float] | None] = {
    "default": None,
    "institutional-heavy": {"small": 0.15, "medium": 0.25, "institutional": 0.4, "sparse": 0.2},
    "retail-heavy": {"small": 0.55, "medium": 0.25, "sparse": 0.15, "algo": 0.05},
    "sparse-heavy": {"small": 0.2, "medium": 0.2, "institutional": 0.1, "sparse": 0.5},
    "block-traders": {**DEFAULT_TRADER_MIX, "sparse": 0.1, "block": 0.1},
}


def compare_rules(
    seeds: Sequence[int] = (0, 1, 2, 3, 4, 5),
    mixes: Mapping[str, Mapping[str, float] | None] | None = None,
    *,
    received: bool = True,
    config: Any = None,
    file: Any = None,
    **knobs: Any,
) -> list[tuple[str, int, EvalResult, EvalResult | None]]:
    """Print precision / recall / alerts per detected episode of the model and
    the received pair rule, one line per (trader mix, seed); returns the rows."""
    from ..model import DetectionConfig, detect
    from .received_rule import received_rule

    cfg = config if config is not None else DetectionConfig()
    mixes = MIXES if mixes is None else mixes

    def fmt(r: EvalResult | None) -> str:
        if r is None:
            return f"{'-':>27}"
        return (
            f"{r.precision:6.3f} {r.recall:6.3f} {r.alerts_per_detected_episode:7.2f}"
            f" {r.n_alerts:7d}"
        )

    print(
        f"{'mix':<20}{'seed':>5}{'trades':>8}{'eps':>4} | model: {'prec':>6} {'recall':>6}"
        f" {'al/ep':>7} {'alerts':>7} | received: {'prec':>6} {'recall':>6} {'al/ep':>7}"
        f" {'alerts':>7}",
        file=file,
    )
    rows = []
    for name, mix in mixes.items():
        for seed in seeds:
            sc = generate_day(
                seed,
                trader_mix=mix,
                window_minutes=cfg.window_minutes,
                threshold_multiplier=cfg.threshold_multiplier,
                **knobs,
            )
            model = evaluate_alerts(detect(sc.batch, cfg).alerts, sc)
            old = None
            if received:
                old = evaluate_alerts(
                    received_rule(sc.trades(), cfg.window_minutes, cfg.threshold_multiplier), sc
                )
            rows.append((name, seed, model, old))
            print(
                f"{name:<20}{seed:>5}{len(sc):>8}{model.n_episodes:>4} |        {fmt(model)} |"
                f"           {fmt(old)}",
                file=file,
                flush=True,
            )
    for label, pick in (("model", 2), ("received", 3)):
        results = [r[pick] for r in rows if r[pick] is not None]
        if results:
            print(f"pooled {label:<9}" + _pooled(results), file=file)
    return rows


def _pooled(results: Sequence[EvalResult]) -> str:
    """Precision, recall and alerts per detected episode over all the days,
    and the days meeting precision >= 0.9, recall >= 0.95, <= 1.2 al/ep."""
    n_alerts = sum(r.n_alerts for r in results)
    tp = sum(r.true_positives for r in results)
    eps = sum(r.n_episodes for r in results)
    found = sum(r.detected for r in results)
    hits = sum(r.alerts_per_detected_episode * r.detected for r in results if r.detected)
    ok = sum(
        r.precision >= 0.9 and r.recall >= 0.95 and r.alerts_per_detected_episode <= 1.2
        for r in results
    )
    return (
        f" precision {tp / n_alerts if n_alerts else math.nan:.3f}  recall "
        f"{found / eps if eps else math.nan:.3f}  al/ep {hits / found if found else math.nan:.2f}"
        f"  alerts {n_alerts}  days meeting all three targets {ok}/{len(results)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m surv_kernel.evaluation.scenario [--seeds 0-5] [--mix NAME] [--no-received]
    [--knob NAME=VALUE ...]``: the received rule vs model table."""
    import argparse
    import ast

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 1,4,9")
    parser.add_argument("--mix", action="append", choices=sorted(MIXES), help="default: all")
    parser.add_argument("--no-received", action="store_true", help="model only (faster)")
    parser.add_argument(
        "--knob", action="append", default=[], help="generate_day knob, e.g. sigma_scale=1.3"
    )
    args = parser.parse_args(argv)
    seeds: list[int] = []
    for part in args.seeds.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    knobs = {}
    for item in args.knob:
        key, _, value = item.partition("=")
        knobs[key] = ast.literal_eval(value)
    mixes = {m: MIXES[m] for m in args.mix} if args.mix else MIXES
    compare_rules(seeds, mixes, received=not args.no_received, **knobs)


if __name__ == "__main__":  # python -m surv_kernel.evaluation.scenario
    main()
