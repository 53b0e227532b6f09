"""A third labelled-day generator: desk session calendars over consecutive days.

Written apart from :mod:`surv_kernel.scenario` (U-shaped independent trades,
one day, discrete trader kinds) and ``tests/alt_scenarios.py`` (Hawkes
clusters, one day), so that a model fitted to either shows it here. What it
models instead:

- **A week, not a day.** :func:`generate_history` draws one population of
  traders and ``n_days`` consecutive business days of it (default six: five of
  history to :func:`surv_kernel.calibrate` on, the last one to test). Abuse is
  injected on the last day; ``history_episodes`` puts a few on every history
  day too, because real history is not clean. The ordinary trades of a day do
  not depend on the abuse drawn (separate random streams), so a day can be
  scored with and without it.
- **Session calendars.** Seven desks with their own UTC hours (January, no
  daylight saving): Tokyo equities 00:00-06:00 with the 02:30-03:30 lunch
  break, London equities 08:00-16:30, New York equities 14:30-21:00 with an
  hour of thin extended trading either side, London and New York rates
  (07:00-17:00, 12:00-21:00), New York listed options 14:30-21:00 and a
  round-the-clock global derivatives desk that follows the sun. Within a
  session the rate of new orders is ``1 + 2 e^{-m/12} + 1.2 e^{-(close-m)/20}``
  (``m`` minutes since the open: the first minutes run at ~3x the midday
  rate, the last at ~2.2x), times 0.35 over lunch; London equities pick up at
  the New York
  open. Equity desks print an opening and a closing auction: every
  participant's auction trade carries the same timestamp, the open or the
  close. Macro releases sit on a calendar (07:00, 09:30, 10:00, 13:30, 15:00,
  19:00 UTC, each scheduled on a given day with its own probability); a desk
  that watches one sees its order rate jump ~6x and decay over five minutes.
- **Day levels.** Each desk has a level per day (quiet 0.7x, normal 1x or
  busy 1.5x, with probabilities 0.2/0.6/0.2, jittered), each trader a
  lognormal day factor (sigma 0.3), and 1.5% of trader-days are *elevated*:
  2-3x the trader's usual rate all day.
- **Orders, not trades.** Traders send parent orders; each is worked as
  ``1 + Poisson(f)`` fills spread over an exponential working time of a few
  minutes (a worked order is a clump of trades with no branching: a
  Neyman-Scott process, not a Hawkes one). Fill sizes are lognormal around the
  book's median; 0.5-2% of a flow trader's orders are *large ordinary orders*
  whose one to three fills are 4-10x the median trade.
- **A heavy-tailed population.** Four styles: flow traders (78%) whose order
  rate is ``1.5 (1 + Pareto(1.1))`` per day (median ~3, the top 1% over 100),
  large traders (8%, a normal half hour of 0.4-3x the floor x multiplier),
  algorithmic executions (10%, dozens of orders a day, each cut into 7-21
  small fills) and block traders (4%, 0.5-4 orders a day, mostly one fill of
  0.2-1x the floor). A quarter of the traders also run a book on a second
  desk (60% of those in the same asset class in another region, the rest
  another asset class), some a third. 2% (at least six) are newcomers whose
  first day on the roster is the test day, as many joined during the history
  and as many are dormant (silent on every history day, back on the last
  one); anyone else is absent on 4% of days.

Abuse, each episode on one (trader, asset class) group and labelled with its
kind; ``I`` is drawn log-uniform in ``intensity`` (default 3-30) and the
injected trades' largest 30-minute USD sum is ``max(I x normal, U(1.1, 2) x
floor x multiplier)``: the brief keeps the static floor, so every episode
passes it in one window on its own. ``normal`` is the group's median trailing
30-minute sum at its ordinary trades over the history days (activity
weighted, the statistic a per-trader baseline estimates):

- ``burst``: one to five trades within a few minutes; 35% of them by a large
  trader at a moderate ``I`` in 3-8 (routine for the market, not for them);
- ``structuring``: 10-400 trades over 8-25 minutes, each at most 0.3x the
  asset-class floor (one trade of 0.15x the floor on average);
- ``cross_desk``: a burst split over the trader's books on two desks of one
  asset class that are open at the same time, so that each desk's feed alone
  (with the trader's other trades there that day) stays under floor x
  multiplier while the group's total passes it;
- ``open_close``: a block at the open or the close (auction print plus the
  first or last minutes) of ``I`` x the group's own median volume in that
  half hour of the session (if larger than ``normal``);
- ``off_session``: two to eight trades in 2-20 minutes while the desk is
  closed (more than an hour from its session and extended hours);
- ``newcomer`` / ``dormant``: a trader with no history, or silent through it,
  crosses ``max(I x normal, U(1.1, 3) x floor x multiplier)`` (a burst or a
  structuring shape), ``normal`` being its own ordinary trading of the test
  day (it has no other), so that "big" means big for the trader as well.

Benign look-alikes are left unlabelled on purpose and listed on the day
(:attr:`SessionDay.lookalikes`, ``elevated``, ``releases``) so that false
alarms can be attributed (with each trader's day factor, ``day_factor``, and
each desk's level, ``desk_level``): large ordinary orders, large traders'
busy half hours (one extra order of 1.5-2.5x their expected half-hour
volume, worked over 15-28 minutes, on 20% of their days), auction prints (every trader of
the desk at one timestamp; 15% of equity books are auction-heavy, 2-5x their
median trade at half or more of the auctions), macro spikes, block traders
with a handful of samples, elevated trader-days, benign newcomers and
returning dormant traders.

Output per day is what the desks send: ``SessionDay.feeds`` maps each desk to
its trades in time order in the feed schema (``trade_id``, ``asset_class``,
``notional`` in ``currency`` rounded to lots, ``currency`` in USD, EUR, GBP,
JPY, ``trader_id``, ``timestamp`` in epoch seconds, ``surveillance_required``);
trade ids are ``<desk>-<yymmdd>-<n>``, unique across days and numbered in
each desk's time order, so they carry no hint of the labels. A day quacks
like ``alt_scenarios.AltDay`` for ``surv_kernel.evaluate_alerts``. USD values
use the FX rates the package's ingest applies (read through
``columns_from_dicts``, so the labels and the batches agree); the floors are
the brief's (equity 1M, fixed income 5M, derivatives 2M USD), written here.

Generating a six-day history takes 1.3 s at 300 traders (56-66k trades a
day) and 7.2 s at 2000 (350-430k trades a day); the 2000-trader test day
then decodes in 0.4 s and ``detect`` takes 0.03 s (decoding the five prior
days and ``calibrate``: 2.3 s). ``python tests/session_scenarios.py --seed 0
--traders 2000`` prints what one history holds.

Measured by ``tests/quality_table.py --seeds 0-9 --traders 300,2000`` on the
model as of 072af84 (its docstring has the whole table and the commands), 28
episodes a test day, two per history day, all desks in one batch (per desk,
as ``analyze_desk`` runs, in brackets)::

    traders  baselines   precision  recall         false alarms / 1,000 trader-days
    300      day         0.833      0.961 (0.814)  19.9
    300      calibrated  0.754      0.975 (0.832)  32.8
    2000     day         0.476      0.968 (0.821)  16.5
    2000     calibrated  0.319      0.975 (0.825)  32.2

Recall by kind at 2000 traders, day baselines: burst 36/40, structuring
37/40, cross_desk 39/40 (0/40 per desk), open_close 40/40, off_session
39/40, newcomer 40/40, dormant 40/40. Neither trivially easy nor impossible,
and for reasons one can name:

- most injected windows are far above their trader's normal (230 of 280 at
  >= 10x at n=2000) because the floor, not ``I``, sets their size: a small
  trader's normal half hour is a few percent of the floor. The hard episodes
  are the large traders' at the 3-8x drawn for them: 6 of the 9 misses at
  n=2000 (day baselines) and 7 of 7 (calibrated), all suppressed on their
  own baseline with z < 6 (a large book's spread is wide), about a third
  with ratio < 4 as well;
- with calibrated baselines a third of the false alarms (201 of 583 at
  n=2000) are large newcomers and large dormant traders back: no history,
  so a peer baseline of the desk's lower quartile (35-160k USD) that their
  ordinary trading exceeds 100-1000x, several times a day; an elevated-day
  large trader alerts up to five times on the day (TRD00397, seed 0);
- the other false alarms are what the look-alikes were built for: ordinary
  worked orders of flow traders over own baselines of tens of samples (seed
  1, calibrated: one order's six fills at 16.8x a 0.29M median over 17
  samples), large ordinary orders, open and close half hours (seed 0,
  calibrated: a large rates trader at 07:31 whose window holds the open and
  the 07:00 release, 4.2x, z 6.7), block traders on peer baselines (day).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from surv_kernel import Dictionaries, TradeBatch, columns_from_dicts

NS_PER_MS = 1_000_000
MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: The brief's asset-class floors in USD. Stated here rather than read from
#: the package: the floor rule is part of what this yardstick asserts, so a
#: change of the model's table shows as a changed measurement.
FLOORS_USD: Mapping[str, float] = {"equity": 1e6, "fixed_income": 5e6, "derivative": 2e6}
CURRENCIES = ("USD", "EUR", "GBP", "JPY")
#: notional rounding in units of the trade currency (JPY lots are 100x these)
LOTS: Mapping[str, float] = {"equity": 1.0, "fixed_income": 1000.0, "derivative": 10.0}

#: Macro releases (UTC hour) and the probability one is scheduled on a given day.
RELEASES: Mapping[float, float] = {7.0: 0.5, 9.5: 0.4, 10.0: 0.3, 13.5: 0.6, 15.0: 0.5, 19.0: 0.1}


@dataclass(frozen=True)
class SessionDesk:
    name: str
    code: str  # trade id prefix
    asset_class: str
    hours_utc: tuple[float, float]  # (open, close); (0, 24) trades round the clock
    lunch_utc: tuple[float, float] | None
    auctions: bool  # opening and closing prints at exactly the open and the close
    extended_h: float  # thin trading this long before the open and after the close
    currencies: tuple[tuple[str, float], ...]
    watches: tuple[float, ...]  # the macro releases (UTC hours) the desk trades on
    pickups: tuple[float, ...]  # another market's open (UTC hours) that lifts this desk
    stamp_ms: int  # timestamp resolution of the desk's booking system
    weight: float  # share of home desks in the population

    @property
    def round_the_clock(self) -> bool:
        return self.hours_utc == (0.0, 24.0)


SESSION_DESKS: tuple[SessionDesk, ...] = (
    SessionDesk("TKY-EQ", "TKEQ", "equity", (0.0, 6.0), (2.5, 3.5), True, 0.0,
                (("JPY", 0.9), ("USD", 0.1)), (), (), 1000, 0.12),
    SessionDesk("LDN-EQ", "LNEQ", "equity", (8.0, 16.5), (11.5, 13.0), True, 0.5,
                (("GBP", 0.6), ("EUR", 0.3), ("USD", 0.1)), (), (14.5,), 1, 0.17),
    SessionDesk("NY-EQ", "NYEQ", "equity", (14.5, 21.0), (16.5, 18.0), True, 1.0,
                (("USD", 1.0),), (), (), 1, 0.20),
    SessionDesk("LDN-RATES", "LNFI", "fixed_income", (7.0, 17.0), (11.5, 13.0), False, 0.0,
                (("EUR", 0.55), ("GBP", 0.45)), (7.0, 9.5, 10.0, 13.5), (), 1, 0.13),
    SessionDesk("NY-RATES", "NYFI", "fixed_income", (12.0, 21.0), (16.5, 17.5), False, 0.0,
                (("USD", 0.95), ("EUR", 0.05)), (13.5, 15.0, 19.0), (), 1, 0.15),
    SessionDesk("NY-OPT", "NYDV", "derivative", (14.5, 21.0), (16.5, 18.0), False, 0.0,
                (("USD", 1.0),), (15.0, 19.0), (), 1, 0.10),
    SessionDesk("GLB-DRV", "GLDV", "derivative", (0.0, 24.0), None, False, 0.0,
                (("USD", 0.5), ("EUR", 0.3), ("JPY", 0.2)), (7.0, 13.5), (), 1, 0.13),
)  # fmt: skip

STYLES = ("flow", "large", "algo", "block")
STYLE_MIX = (0.78, 0.08, 0.10, 0.04)
FLOW, LARGE, ALGO, BLOCK = range(4)
ABUSE_KINDS = (
    "burst",
    "structuring",
    "cross_desk",
    "open_close",
    "off_session",
    "newcomer",
    "dormant",
)
#: kinds that need a trader without history: only on the test day
_COLD_KINDS = ("newcomer", "dormant")
# look-alike codes per trade
_NONE, _LARGE_ORDER, _BUSY, _AUCTION = range(4)
LOOKALIKE_NAMES = ("", "large_order", "busy_half_hour", "auction")


@dataclass(frozen=True)
class SessionTrader:
    trader_id: str
    style: str
    desks: tuple[str, ...]  # home desk first
    start_day: int  # first day on the roster
    dormant: bool  # silent through the history, back on the last day


@dataclass(frozen=True)
class SessionEpisode:
    kind: str
    actor: str  # "large", "any", "newcomer" or "dormant"
    trader_id: str
    asset_class: str
    desk: str  # the book's desk (cross_desk: the first of ``desks``)
    desks: tuple[str, ...]
    day: int
    trade_ids: frozenset[str]
    intensity_drawn: float  # I
    intensity: float  # injected_usd / normal_usd (NaN when normal_usd is 0)
    injected_usd: float  # largest 30-minute USD sum of the injected trades alone
    normal_usd: float  # the normal ``intensity`` refers to (see the module docstring)
    floor_usd: float  # floor x multiplier
    floor_multiple: float  # injected_usd / floor_usd
    desk_max_usd: float  # cross_desk: the largest one-desk window of the group that day


@dataclass
class SessionDay:
    """One business day of a :class:`SessionHistory` (quacks like ``AltDay``)."""

    index: int
    date: str
    window_minutes: float
    feeds: dict[str, list[dict[str, Any]]]
    episodes: tuple[SessionEpisode, ...]
    lookalikes: dict[str, str]  # trade id -> "large_order" / "busy_half_hour" / "auction"
    elevated: frozenset[str]  # traders on an elevated (2-3x) day
    day_factor: dict[str, float]  # trader -> its order-rate factor today (elevated included)
    releases: tuple[float, ...]  # UTC hours of today's macro releases
    desk_level: dict[str, float]
    traders: Mapping[str, SessionTrader] = field(repr=False)
    _ids: list[str] = field(repr=False)
    _ns: np.ndarray = field(repr=False)

    @property
    def labels(self) -> list[frozenset[str]]:
        return [e.trade_ids for e in self.episodes]

    def trades(self) -> list[dict[str, Any]]:
        """The desk feeds concatenated (what the legacy entry point receives)."""
        return [t for feed in self.feeds.values() for t in feed]

    @functools.cached_property
    def _ts_of(self) -> dict[str, int]:
        return dict(zip(self._ids, self._ns.tolist(), strict=True))

    def timestamps_by_trade_id(self) -> dict[str, int]:
        """Trade id -> int ns, exactly what ingest reads from the float seconds."""
        return self._ts_of

    def batch(self, dictionaries: Dictionaries | None = None) -> TradeBatch:
        """The desk feeds through ingest, one shared Dictionaries, with their desks."""
        d = Dictionaries() if dictionaries is None else dictionaries
        parts = [columns_from_dicts(f, desk=name, dictionaries=d) for name, f in self.feeds.items()]
        return TradeBatch.concat(parts)


@dataclass
class SessionHistory:
    seed: int
    window_minutes: float
    threshold_multiplier: float
    traders: tuple[SessionTrader, ...]
    days: list[SessionDay]

    def batch(self, days: Sequence[int] | None = None) -> TradeBatch:
        """Several days (default: all but the last) as one batch for ``calibrate``."""
        picked = range(len(self.days) - 1) if days is None else days
        d = Dictionaries()
        return TradeBatch.concat([self.days[i].batch(d) for i in picked])


@functools.lru_cache(maxsize=1)
def fx_usd() -> dict[str, float]:
    """USD per unit of each currency, as ingest converts: one probe trade per
    currency with notional 1 decoded by ``columns_from_dicts``."""
    probe = [
        {
            "trade_id": f"fx-{c}",
            "asset_class": "equity",
            "notional": 1.0,
            "currency": c,
            "trader_id": "fx",
            "timestamp": 1.7e9,
            "surveillance_required": False,
        }
        for c in CURRENCIES
    ]
    b = columns_from_dicts(probe)
    names = b.dictionaries.currency.decode(b.currency)
    return {c: float(u) for c, u in zip(names, b.notional_usd.tolist(), strict=True)}


def ingest_ns(seconds: np.ndarray) -> np.ndarray:
    """The nearest int64 ns of float seconds, split like ingest's
    ``seconds_to_ns`` (whole seconds apart) so the two agree to the ns."""
    whole = np.floor(seconds)
    return whole.astype(np.int64) * 1_000_000_000 + np.rint((seconds - whole) * 1e9).astype(
        np.int64
    )


# -- window statistics (generator side; small, exact in ms) ---------------------------


def trailing_sums(key: np.ndarray, t_ms: np.ndarray, usd: np.ndarray, w_ms: int) -> np.ndarray:
    """Per row, the sum over rows of its ``key`` with time in ``[t - W, t]`` (both ends,
    equal timestamps included), in input order. Keys are laid end to end on one
    axis ``key * span + t`` with a gap of more than W between keys, so one
    searchsorted serves every group."""
    if len(t_ms) == 0:
        return np.empty(0)
    o = np.lexsort((t_ms, key))
    t0 = int(t_ms.min())
    span = int(t_ms.max()) - t0 + 2 * w_ms + 1
    k = key[o].astype(np.int64) * span + (t_ms[o] - t0) + w_ms
    c = np.concatenate(([0.0], np.cumsum(usd[o])))
    lo = np.searchsorted(k, k - w_ms, "left")
    hi = np.searchsorted(k, k, "right")
    out = np.empty(len(t_ms))
    out[o] = c[hi] - c[lo]
    return out


def _group_median(key: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(values) == 0:
        return out
    o = np.lexsort((values, key))
    v = values[o]
    counts = np.bincount(key, minlength=n)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    lo = start + (counts - 1) // 2
    hi = start + counts // 2
    out[has] = 0.5 * (v[lo[has]] + v[hi[has]])
    return out


def _group_max(key: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    np.maximum.at(out, key, values)
    return out


# -- the population -------------------------------------------------------------------


class _Books(NamedTuple):
    """Per book (trader x desk) arrays; a group is (trader, asset class)."""

    trader: np.ndarray
    desk: np.ndarray
    group: np.ndarray
    home: np.ndarray  # the trader's first book
    floor: np.ndarray  # asset-class floor, USD
    floor_x: np.ndarray  # floor x multiplier of the book's asset class
    orders: np.ndarray  # parent orders per day
    fills: np.ndarray  # mean extra fills per order (Poisson)
    median: np.ndarray  # median fill, USD
    sigma: np.ndarray
    p_large: np.ndarray  # share of large ordinary orders
    work_min: np.ndarray  # mean working time of an order, minutes
    p_open: np.ndarray
    p_close: np.ndarray
    auction_mult: np.ndarray
    half_hour: np.ndarray  # expected USD per session half hour


class _Population(NamedTuple):
    traders: tuple[SessionTrader, ...]
    style: np.ndarray
    start: np.ndarray
    dormant: np.ndarray
    books: _Books
    group_trader: np.ndarray
    group_ac: np.ndarray  # asset class name per group


def _loguniform(rng, lo: float, hi: float, n: int | None = None):
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _population(rng, n_traders: int, n_days: int, multiplier: float) -> _Population:
    desks = SESSION_DESKS
    w = np.array([d.weight for d in desks])
    home = rng.choice(len(desks), n_traders, p=w / w.sum())
    style = rng.choice(len(STYLES), n_traders, p=STYLE_MIX)
    # fixed counts, not rates: even 300 traders must hold a few of each for the episodes
    n_cold = max(6, round(0.02 * n_traders))
    life = rng.permutation(n_traders)
    start = np.zeros(n_traders, np.int64)
    start[life[:n_cold]] = n_days - 1  # newcomers
    joined = life[n_cold : 2 * n_cold]
    start[joined] = rng.integers(1, max(n_days - 1, 2), len(joined))
    dormant = np.zeros(n_traders, bool)
    dormant[life[2 * n_cold : 3 * n_cold]] = True
    book_trader, book_desk = [], []
    traders = []
    for t in range(n_traders):
        own = [int(home[t])]
        if style[t] != BLOCK and rng.random() < 0.25:
            ac = desks[own[0]].asset_class
            same = [k for k in range(len(desks)) if k != own[0] and desks[k].asset_class == ac]
            other = [k for k in range(len(desks)) if desks[k].asset_class != ac]
            pool = same if rng.random() < 0.6 else other
            own.append(pool[int(rng.integers(len(pool)))])
            if rng.random() < 0.2:
                rest = [k for k in range(len(desks)) if k not in own]
                own.append(rest[int(rng.integers(len(rest)))])
        book_trader += [t] * len(own)
        book_desk += own
        traders.append(
            SessionTrader(
                f"TRD{t:05d}",
                STYLES[style[t]],
                tuple(desks[k].name for k in own),
                int(start[t]),
                bool(dormant[t]),
            )
        )
    bt = np.array(book_trader)
    bd = np.array(book_desk)
    n = len(bt)
    st = style[bt]
    secondary = np.concatenate(([False], bt[1:] == bt[:-1]))
    floor = np.array([FLOORS_USD[desks[k].asset_class] for k in bd])
    session_h = np.array([desks[k].hours_utc[1] - desks[k].hours_utc[0] for k in bd])

    orders = np.minimum(1.5 * (1.0 + rng.pareto(1.1, n)), 400.0)
    fills = rng.uniform(0.2, 3.0, n)
    median = floor * np.clip(10.0 ** rng.normal(-1.4, 0.4, n), 0.003, 0.5)
    sigma = rng.uniform(0.4, 0.9, n)
    p_large = rng.uniform(0.005, 0.02, n)
    work = rng.uniform(1.0, 15.0, n)

    lg = st == LARGE
    k = int(lg.sum())
    orders[lg] = _loguniform(rng, 40, 250, k)
    fills[lg] = rng.uniform(1.0, 4.0, k)
    sigma[lg] = rng.uniform(0.3, 0.7, k)
    work[lg] = rng.uniform(5.0, 25.0, k)
    p_large[lg] = rng.uniform(0.005, 0.015, k)
    # the fill size that gives them a normal half hour of 0.4-3x the floor x multiplier
    per_hh = orders[lg] / (2 * session_h[lg]) * (1 + fills[lg]) * np.exp(sigma[lg] ** 2 / 2)
    median[lg] = _loguniform(rng, 0.4, 3.0, k) * multiplier * floor[lg] / per_hh

    al = st == ALGO
    k = int(al.sum())
    orders[al] = _loguniform(rng, 30, 200, k)
    fills[al] = rng.uniform(6.0, 20.0, k)
    median[al] = floor[al] * 10.0 ** rng.uniform(-2.7, -2.0, k)
    sigma[al] = rng.uniform(0.2, 0.5, k)
    p_large[al] = 0.0
    work[al] = rng.uniform(2.0, 10.0, k)

    bl = st == BLOCK
    k = int(bl.sum())
    orders[bl] = _loguniform(rng, 0.5, 4.0, k)
    fills[bl] = 0.2
    median[bl] = floor[bl] * rng.uniform(0.2, 1.0, k)
    sigma[bl] = rng.uniform(0.6, 1.0, k)
    p_large[bl] = 0.0
    work[bl] = rng.uniform(1.0, 3.0, k)

    k = int(secondary.sum())
    orders[secondary] = np.maximum(orders[secondary] * rng.uniform(0.1, 0.6, k), 0.5)
    median[secondary] *= rng.lognormal(0.0, 0.3, k)
    heavy = rng.random(n) < 0.15
    p_open = np.where(heavy, rng.uniform(0.5, 0.95, n), rng.uniform(0.0, 0.3, n))
    p_close = np.where(heavy, rng.uniform(0.5, 0.95, n), rng.uniform(0.0, 0.3, n))
    auction_mult = np.where(heavy, rng.uniform(2.0, 5.0, n), rng.uniform(0.5, 1.5, n))
    half_hour = orders / (2 * session_h) * (1 + fills) * median * np.exp(sigma**2 / 2)

    pairs = {}
    group = np.empty(n, np.int64)
    for b in range(n):
        group[b] = pairs.setdefault((int(bt[b]), desks[bd[b]].asset_class), len(pairs))
    group_trader = np.array([t for t, _ in pairs], np.int64)
    group_ac = np.array([ac for _, ac in pairs], object)
    books = _Books(
        bt, bd, group, ~secondary, floor, floor * multiplier, orders, fills, median, sigma, p_large,
        work, p_open, p_close, auction_mult, half_hour,
    )  # fmt: skip
    return _Population(tuple(traders), style, start, dormant, books, group_trader, group_ac)


# -- one ordinary day -------------------------------------------------------------------


def _session_ms(desk: SessionDesk) -> tuple[int, int]:
    return round(desk.hours_utc[0] * HOUR_MS), round(desk.hours_utc[1] * HOUR_MS)


def _hump(h: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(h - a) / 0.25)) / (1.0 + np.exp(-(b - h) / 0.25))


def minute_profile(desk: SessionDesk, releases: Sequence[float]) -> np.ndarray:
    """Relative rate of new orders in each minute of the UTC day (not normalised)."""
    m = np.arange(1440) + 0.5
    o, c = (x * 60 for x in desk.hours_utc)
    if desk.round_the_clock:  # follows the sun: Tokyo, London, New York humps
        h = m / 60
        lam = 0.1 + 0.5 * _hump(h, 0.0, 6.0) + 1.0 * _hump(h, 7.0, 16.5)
        lam += 1.2 * _hump(h, 13.5, 21.0)
        live = np.ones(1440, bool)
        jump = 2.5
    else:
        live = (m >= o) & (m < c)
        since, until = np.maximum(m - o, 0.0), np.maximum(c - m, 0.0)
        lam = np.where(live, 1.0 + 2.0 * np.exp(-since / 12) + 1.2 * np.exp(-until / 20), 0.0)
        if desk.lunch_utc is not None:
            lam[(m >= desk.lunch_utc[0] * 60) & (m < desk.lunch_utc[1] * 60)] *= 0.35
        for p in desk.pickups:
            after = np.maximum(m - p * 60, 0.0)
            lam += live * (m >= p * 60) * 0.6 * np.exp(-after / 20)
        ext = desk.extended_h * 60
        if ext:
            lam[((m >= o - ext) & (m < o)) | ((m >= c) & (m < c + ext))] = 0.03
        jump = 5.0
    for r in releases:
        if r in desk.watches:
            after = np.maximum(m - r * 60, 0.0)
            lam += live * (m >= r * 60) * jump * np.exp(-after / 5)
    return lam


class _Rows(NamedTuple):
    t_ms: np.ndarray  # int64 epoch ms
    usd: np.ndarray
    book: np.ndarray
    look: np.ndarray  # look-alike code
    episode: np.ndarray  # -1: ordinary


def _rows(t, usd, book, look=_NONE, episode=-1) -> _Rows:
    n = len(t)
    return _Rows(
        np.asarray(t, np.int64),
        np.asarray(usd, float),
        np.broadcast_to(np.asarray(book, np.int64), (n,)).copy(),
        np.full(n, look, np.int8),
        np.full(n, episode, np.int64),
    )


def _concat(parts: Sequence[_Rows]) -> _Rows:
    return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Rows._fields))


class _Day(NamedTuple):
    d: int
    day0_ms: int
    releases: tuple[float, ...]
    level: np.ndarray  # per desk
    present: np.ndarray  # per trader
    factor: np.ndarray  # per trader
    elevated: np.ndarray  # per trader
    cdf: np.ndarray  # per desk x minute, the desks' order-time CDFs end to end
    rows: _Rows


def _ordinary_day(rng, pop: _Population, d: int, n_days: int, day0_ms: int) -> _Day:
    b = pop.books
    desks = SESSION_DESKS
    releases = tuple(h for h, p in RELEASES.items() if rng.random() < p)
    level = rng.choice([0.7, 1.0, 1.5], len(desks), p=[0.2, 0.6, 0.2])
    level = level * rng.lognormal(0.0, 0.08, len(desks))
    n_tr = len(pop.traders)
    present = (rng.random(n_tr) >= 0.04) & (pop.start <= d)
    if d == n_days - 1:  # newcomers start, dormant traders come back
        present |= (pop.start == d) | pop.dormant
    else:
        present &= ~pop.dormant
    factor = rng.lognormal(-0.045, 0.3, n_tr)
    elevated = present & (rng.random(n_tr) < 0.015) & (pop.style != BLOCK)
    factor[elevated] *= rng.uniform(2.0, 3.0, int(elevated.sum()))

    # parent orders: times by the inverse CDF of the desk's minute profile, every
    # desk in one searchsorted (desk k's CDF is shifted to (k, k + 1])
    n_par = rng.poisson(b.orders * level[b.desk] * factor[b.trader] * present[b.trader])
    par = np.repeat(np.arange(len(n_par)), n_par)
    prof = np.stack([minute_profile(dk, releases) for dk in desks])
    cdf = np.cumsum(prof, axis=1)
    cdf /= cdf[:, -1:]
    flat = (cdf + np.arange(len(desks))[:, None]).ravel()
    pd = b.desk[par]
    minute = np.minimum(np.searchsorted(flat, rng.random(len(par)) + pd, "right") - pd * 1440, 1439)
    t_par = day0_ms + ((minute + rng.random(len(par))) * MIN_MS).astype(np.int64)
    large = rng.random(len(par)) < b.p_large[par]
    k = 1 + rng.poisson(np.where(large, 0.7, b.fills[par]))
    fill = np.repeat(np.arange(len(par)), k)
    fb = par[fill]
    work = rng.exponential(b.work_min[par] * MIN_MS)
    t = t_par[fill] + (rng.random(len(fill)) * work[fill]).astype(np.int64)
    lf = large[fill]
    size = np.where(lf, rng.uniform(4.0, 10.0, len(fill)), rng.lognormal(0.0, b.sigma[fb]))
    last = np.array(
        [min(_session_ms(dk)[1] + round(dk.extended_h * HOUR_MS), DAY_MS - 1) for dk in desks]
    )
    keep = t <= day0_ms + last[b.desk[fb]]  # a worked order stops when the desk does
    parts = [_rows(t[keep], (b.median[fb] * size)[keep], fb[keep])]
    parts[0].look[lf[keep]] = _LARGE_ORDER

    for kd, dk in enumerate(desks):  # auction prints: one timestamp for every participant
        if not dk.auctions:
            continue
        on = np.flatnonzero((b.desk == kd) & present[b.trader])
        for p, at in ((b.p_open, _session_ms(dk)[0]), (b.p_close, _session_ms(dk)[1])):
            who = on[rng.random(len(on)) < p[on] * min(level[kd], 1.2)]
            usd = b.median[who] * b.auction_mult[who] * rng.lognormal(0.0, 0.4, len(who))
            parts.append(_rows(np.full(len(who), day0_ms + at), usd, who, _AUCTION))

    # large books' ordinary busy half hour: one extra order worked over 15-28 minutes
    busy = (b.half_hour >= 0.3 * b.floor_x) & present[b.trader]
    for bk in np.flatnonzero(busy & (rng.random(len(busy)) < 0.2)):
        dk = desks[b.desk[bk]]
        span = rng.uniform(15, 28) * MIN_MS
        lo, hi = (7 * HOUR_MS, 20 * HOUR_MS) if dk.round_the_clock else _session_ms(dk)
        t0 = day0_ms + rng.uniform(lo, max(hi - 30 * MIN_MS, lo + 1))
        n = int(rng.integers(8, 26))
        w = rng.lognormal(0.0, 0.3, n)
        q = rng.uniform(1.5, 2.5) * b.half_hour[bk] * level[b.desk[bk]] * factor[b.trader[bk]]
        parts.append(_rows(t0 + np.sort(rng.uniform(0, span, n)), q * w / w.sum(), bk, _BUSY))
    return _Day(d, day0_ms, releases, level, present, factor, elevated, cdf, _concat(parts))


# -- the groups' normals over the history -------------------------------------------------


class _Normals(NamedTuple):
    group: np.ndarray  # median trailing window at the group's history trades; NaN: none
    open: np.ndarray  # per book: median over present history days of its first half hour
    close: np.ndarray  # ... and of its last half hour


def _normals(pop: _Population, days: Sequence[_Day], w_ms: int) -> _Normals:
    b = pop.books
    n_books, n_groups = len(b.trader), len(pop.group_trader)
    if not days:
        nan = np.full(n_books, np.nan)
        return _Normals(np.full(n_groups, np.nan), nan, nan.copy())
    rows = _concat([day.rows for day in days])
    g = b.group[rows.book]
    normal = _group_median(g, trailing_sums(g, rows.t_ms, rows.usd, w_ms), n_groups)
    edges = np.array([_session_ms(dk) for dk in SESSION_DESKS])
    vol = np.zeros((2, len(days), n_books))
    for i, day in enumerate(days):
        r = day.rows
        tod = r.t_ms - day.day0_ms
        o, c = edges[b.desk[r.book], 0], edges[b.desk[r.book], 1]
        for j, inside in enumerate(((tod >= o) & (tod < o + w_ms), (tod > c - w_ms) & (tod <= c))):
            vol[j, i] = np.bincount(r.book[inside], r.usd[inside], minlength=n_books)
    there = np.stack([day.present[b.trader] for day in days])
    out = []
    for j in range(2):
        # books whose trader was never there get 0s (NaN below), so no all-NaN column
        v = np.where(there | ~there.any(axis=0), vol[j], np.nan)
        med = np.nanmedian(v, axis=0)
        clock = np.array([SESSION_DESKS[k].round_the_clock for k in b.desk])
        out.append(np.where(clock | ~there.any(axis=0), np.nan, med))
    return _Normals(normal, out[0], out[1])


# -- abuse ------------------------------------------------------------------------------


class _Meta(NamedTuple):
    kind: str
    actor: str
    group: int
    books: tuple[int, ...]
    drawn: float  # I, NaN for newcomer / dormant
    normal: float  # the group's history normal (NaN: none)


def _in_session(rng, kd: int, day: _Day, span_ms: float) -> int:
    """An episode's start inside the desk's session: half the time where the desk is
    busy (abuse hides in volume), half the time anywhere."""
    dk = SESSION_DESKS[kd]
    lo, hi = (0, DAY_MS) if dk.round_the_clock else _session_ms(dk)
    hi = max(hi - int(span_ms) - 1, lo + 1)
    if rng.random() < 0.5:
        m = int(np.searchsorted(day.cdf[kd], rng.random(), "right"))
        t = int((m + rng.random()) * MIN_MS)
        if lo <= t < hi:
            return day.day0_ms + t
    return day.day0_ms + int(rng.uniform(lo, hi))


def _off_session(rng, kd: int, day: _Day, span_ms: float) -> int:
    """A start more than an hour from the desk's session and extended hours."""
    dk = SESSION_DESKS[kd]
    o, c = _session_ms(dk)
    pad = round((dk.extended_h + 1.0) * HOUR_MS)
    m = np.arange(30, 1410, dtype=np.int64) * MIN_MS
    ok = m[((m < o - pad) | (m > c + pad)) & (m + span_ms < DAY_MS - 30 * MIN_MS)]
    return day.day0_ms + int(ok[rng.integers(len(ok))]) + int(rng.integers(MIN_MS))


def _shape(rng, shape: str, target: float, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(ms offsets, USD) of an injected run whose total is ``target``, all within 25 min."""
    if shape == "burst":
        n = int(rng.integers(1, 6))
        span = rng.uniform(1, 6) * MIN_MS
        w = rng.lognormal(0.0, 0.35, n)
    else:  # structuring: every trade at most 0.3x the asset-class floor
        n = min(max(int(rng.integers(10, 41)), math.ceil(target / (0.15 * floor))), 400)
        span = rng.uniform(8, 25) * MIN_MS
        w = rng.uniform(0.6, 1.4, n)
        while (w / w.sum() * target).max() > 0.3 * floor:
            n += 1
            w = rng.uniform(0.6, 1.4, n)
    return np.sort(rng.uniform(0, span, n)).astype(np.int64), w / w.sum() * target


def _inject(
    rng,
    pop: _Population,
    day: _Day,
    normals: _Normals,
    kinds: Sequence[str],
    n_episodes: int,
    intensity: tuple[float, float],
    w_ms: int,
    n_days: int,
) -> tuple[list[_Rows], list[_Meta]]:
    b = pop.books
    desks = SESSION_DESKS
    ng = normals.group
    cold = (pop.start == n_days - 1) | pop.dormant
    base = day.present[b.trader] & ~cold[b.trader] & np.isfinite(ng[b.group])
    clock = np.array([desks[k].round_the_clock for k in b.desk])
    # each book's largest ordinary window today (cross_desk keeps each desk under the floor)
    r = day.rows
    book_max = _group_max(r.book, trailing_sums(r.book, r.t_ms, r.usd, w_ms), len(b.trader))
    # a cold trader's "normal" is its own ordinary trading today (all a detector can see)
    g = b.group[r.book]
    today = _group_median(g, trailing_sums(g, r.t_ms, r.usd, w_ms), len(ng))
    used = np.zeros(len(pop.traders), bool)
    parts: list[_Rows] = []
    metas: list[_Meta] = []
    for e in range(n_episodes):
        kind = kinds[e % len(kinds)]
        actor = "any"
        drawn = float(_loguniform(rng, *intensity))
        # a large trader at a moderate multiple: routine for the market, not for them
        if rng.random() < {"burst": 0.35, "structuring": 0.25}.get(kind, 0.0):
            actor, drawn = "large", float(_loguniform(rng, 3.0, 8.0))
        ok = ~used[b.trader]
        if kind in _COLD_KINDS:
            actor = kind
            life = (pop.start == n_days - 1) if kind == "newcomer" else pop.dormant
            ok &= day.present[b.trader] & life[b.trader] & b.home
        else:
            ok &= base
        if actor == "large":
            ok &= pop.style[b.trader] == LARGE
        if kind == "structuring":
            ok &= drawn * ng[b.group] <= 60 * b.floor  # at most 400 trades of 0.15x the floor
        if kind in ("open_close", "off_session"):
            ok &= ~clock
        cand = np.flatnonzero(ok)
        if kind == "cross_desk":
            cand = np.array([bk for bk in cand if _partner(pop, bk) is not None], np.int64)
        if len(cand) == 0:
            continue
        if kind == "cross_desk":
            got = _cross_desk(rng, pop, day, ng, book_max, cand, drawn)
            if got is None:
                continue
            bks, rows = got
            normal = float(ng[b.group[bks[0]]])
        else:
            bk = int(cand[rng.integers(len(cand))])
            rows, normal = _single_book(rng, kind, pop, day, normals, today, bk, drawn)
            bks = (bk,)
        for rr in rows:
            rr.episode[:] = len(metas)
        parts += rows
        used[b.trader[bks[0]]] = True
        metas.append(_Meta(kind, actor, int(b.group[bks[0]]), bks, drawn, normal))
    return parts, metas


def _partner(pop: _Population, bk: int) -> int | None:
    """Another book of the same group on a desk open at least 45 minutes at the same time."""
    b = pop.books
    o1, c1 = _session_ms(SESSION_DESKS[b.desk[bk]])
    for other in np.flatnonzero(b.group == b.group[bk]):
        if other != bk:
            o2, c2 = _session_ms(SESSION_DESKS[b.desk[other]])
            if min(c1, c2) - max(o1, o2) >= 45 * MIN_MS:
                return int(other)
    return None


def _cross_desk(rng, pop, day, ng, book_max, cand, drawn):
    """Two bursts on two desks of one group, each desk (with the group's other trades
    there today) at most 0.95x the floor, the total past it."""
    b = pop.books
    for bk in rng.permutation(cand):
        other = _partner(pop, int(bk))
        fx_ = b.floor_x[bk]
        lim = np.array([0.95 * fx_ - book_max[bk], 0.95 * fx_ - book_max[other]])
        target = max(drawn * ng[b.group[bk]], rng.uniform(1.1, 1.5) * fx_)
        if lim.min() <= 0 or lim.sum() < target:
            continue
        span = rng.uniform(3, 12) * MIN_MS
        (o1, c1), (o2, c2) = (_session_ms(SESSION_DESKS[b.desk[k]]) for k in (bk, other))
        t0 = day.day0_ms + int(rng.uniform(max(o1, o2), min(c1, c2) - span - 1))
        rows = []
        for k, part in zip((int(bk), other), target * lim / lim.sum(), strict=True):
            n = int(rng.integers(2, 7))
            w = rng.lognormal(0.0, 0.35, n)
            rows.append(_rows(t0 + np.sort(rng.uniform(0, span, n)), part * w / w.sum(), k))
        return (int(bk), other), rows
    return None


def _single_book(rng, kind, pop, day, normals, today, bk, drawn) -> tuple[list[_Rows], float]:
    """The injected rows of a one-book episode and the normal its intensity refers to."""
    b = pop.books
    kd = int(b.desk[bk])
    dk = SESSION_DESKS[kd]
    normal = float(normals.group[b.group[bk]])
    if kind in _COLD_KINDS:  # big for the floor and for its own trading today
        normal = float(today[b.group[bk]]) if math.isfinite(today[b.group[bk]]) else 0.0
        target = max(drawn * normal, rng.uniform(1.1, 3.0) * b.floor_x[bk])
        many = rng.random() < 0.5 and target <= 60 * b.floor[bk]  # at most 400 trades
        off, usd = _shape(rng, "structuring" if many else "burst", target, b.floor[bk])
        return [_rows(_in_session(rng, kd, day, off[-1]) + off, usd, bk)], normal
    if kind == "open_close":  # against the trader's own share of that half hour
        at_open = rng.random() < 0.5
        own = (normals.open if at_open else normals.close)[bk]
        normal = max(normal, float(own) if math.isfinite(own) else 0.0)
        target = max(drawn * normal, rng.uniform(1.1, 2.0) * b.floor_x[bk])
        o, c = _session_ms(dk)
        span = rng.uniform(3, 12) * MIN_MS
        n = int(rng.integers(3, 11))
        w = rng.lognormal(0.0, 0.35, n)
        share = rng.uniform(0.3, 0.6) if dk.auctions else 0.0
        off = np.sort(rng.uniform(0, span, n))
        t = day.day0_ms + (o + off if at_open else c - span + off)
        rows = [_rows(t, (1 - share) * target * w / w.sum(), bk)]
        if share:
            rows.append(_rows([day.day0_ms + (o if at_open else c)], [share * target], bk))
        return rows, normal
    target = max(drawn * normal, rng.uniform(1.1, 2.0) * b.floor_x[bk])
    if kind == "off_session":
        n = int(rng.integers(2, 9))
        span = rng.uniform(2, 20) * MIN_MS
        w = rng.lognormal(0.0, 0.35, n)
        t0 = _off_session(rng, kd, day, span)
        return [_rows(t0 + np.sort(rng.uniform(0, span, n)), target * w / w.sum(), bk)], normal
    off, usd = _shape(rng, "burst" if kind == "burst" else "structuring", target, b.floor[bk])
    return [_rows(_in_session(rng, kd, day, off[-1]) + off, usd, bk)], normal


# -- feeds and labels -------------------------------------------------------------------


def _finish(
    rng,
    pop: _Population,
    day: _Day,
    injected: Sequence[_Rows],
    metas: Sequence[_Meta],
    date: str,
    window_minutes: float,
    traders: Mapping[str, SessionTrader],
) -> SessionDay:
    b = pop.books
    desks = SESSION_DESKS
    rows = _concat([day.rows, *injected])
    # currencies, flags and tie order are drawn for the ordinary rows first and the
    # injected ones after, so a day's ordinary trades are the same whatever abuse it holds
    n = len(rows.t_ms)
    parts = [slice(0, len(day.rows.t_ms)), slice(len(day.rows.t_ms), n)]
    kd = b.desk[rows.book]
    stamp = np.array([dk.stamp_ms for dk in desks])[kd]
    t = rows.t_ms // stamp * stamp
    cur = np.empty(n, np.int64)
    surveillance = np.empty(n, bool)
    tie = np.empty(n)
    for part in parts:
        for k, dk in enumerate(desks):
            r = np.flatnonzero(kd[part] == k) + part.start
            names = np.array([CURRENCIES.index(c) for c, _ in dk.currencies])
            p = np.array([w for _, w in dk.currencies])
            cur[r] = names[rng.choice(len(names), len(r), p=p / p.sum())]
        surveillance[part] = rng.random(part.stop - part.start) < 0.12
        tie[part] = rng.random(part.stop - part.start)
    fx = fx_usd()
    rate = np.array([fx[c] for c in CURRENCIES])[cur]
    lot = np.array([LOTS[dk.asset_class] for dk in desks])[kd]
    lot = lot * np.where(cur == CURRENCIES.index("JPY"), 100.0, 1.0)
    local = np.maximum(np.round(rows.usd / rate / lot), 1.0) * lot
    usd = local * rate  # what ingest computes from the feed
    # arrival order: desk by desk, time order within a desk, equal timestamps (the
    # auction prints) in a random order; ids are numbered in that order
    o = np.lexsort((tie, t, kd))
    kd, t, local, usd, cur, surveillance = kd[o], t[o], local[o], usd[o], cur[o], surveillance[o]
    book, look, episode = rows.book[o], rows.look[o], rows.episode[o]
    first = np.searchsorted(kd, np.arange(len(desks)))
    seq = np.arange(n) - first[kd] + 1
    stamp_day = date[2:4] + date[5:7] + date[8:10]
    codes = [dk.code for dk in desks]
    ids = [
        f"{codes[k]}-{stamp_day}-{s:07d}" for k, s in zip(kd.tolist(), seq.tolist(), strict=True)
    ]
    seconds = t / 1000.0
    names = np.array([tr.trader_id for tr in pop.traders], object)[b.trader[book]]
    feeds: dict[str, list[dict[str, Any]]] = {}
    sec_l, local_l, cur_l, surv_l = seconds.tolist(), local.tolist(), cur.tolist(), surveillance
    for k, dk in enumerate(desks):
        lo, hi = first[k], (first[k + 1] if k + 1 < len(desks) else n)
        feeds[dk.name] = [
            {
                "trade_id": ids[i],
                "asset_class": dk.asset_class,
                "notional": local_l[i],
                "currency": CURRENCIES[cur_l[i]],
                "trader_id": names[i],
                "timestamp": sec_l[i],
                "surveillance_required": bool(surv_l[i]),
            }
            for i in range(lo, hi)
        ]
    ns = ingest_ns(seconds)
    w_ns = round(window_minutes * MIN_MS) * NS_PER_MS
    episodes = []
    for e, m in enumerate(metas):
        r = np.flatnonzero(episode == e)
        injected_usd = float(trailing_sums(np.zeros(len(r), np.int64), ns[r], usd[r], w_ns).max())
        floor_x = float(b.floor_x[m.books[0]])
        desk_max = math.nan
        if m.kind == "cross_desk":  # each desk alone: every trade of the group there today
            g = np.flatnonzero(b.group[book] == m.group)
            sums = trailing_sums(kd[g], ns[g], usd[g], w_ns)
            desk_max = float(sums.max())
            if desk_max >= floor_x:
                raise RuntimeError(f"cross_desk episode passes the floor on one desk: {m}")
        if injected_usd <= floor_x:
            raise RuntimeError(f"injected episode under the floor x multiplier: {m}")
        trader = pop.traders[pop.group_trader[m.group]]
        episodes.append(
            SessionEpisode(
                kind=m.kind,
                actor=m.actor,
                trader_id=trader.trader_id,
                asset_class=str(pop.group_ac[m.group]),
                desk=desks[b.desk[m.books[0]]].name,
                desks=tuple(desks[b.desk[k]].name for k in m.books),
                day=day.d,
                trade_ids=frozenset(ids[i] for i in r.tolist()),
                intensity_drawn=m.drawn,
                intensity=injected_usd / m.normal if m.normal > 0 else math.nan,
                injected_usd=injected_usd,
                normal_usd=m.normal,
                floor_usd=floor_x,
                floor_multiple=injected_usd / floor_x,
                desk_max_usd=desk_max,
            )
        )
    return SessionDay(
        index=day.d,
        date=date,
        window_minutes=window_minutes,
        feeds=feeds,
        episodes=tuple(episodes),
        lookalikes={ids[i]: LOOKALIKE_NAMES[look[i]] for i in np.flatnonzero(look).tolist()},
        elevated=frozenset(pop.traders[i].trader_id for i in np.flatnonzero(day.elevated)),
        day_factor={
            pop.traders[i].trader_id: float(day.factor[i]) for i in np.flatnonzero(day.present)
        },
        releases=day.releases,
        desk_level={dk.name: float(day.level[k]) for k, dk in enumerate(desks)},
        traders=traders,
        _ids=ids,
        _ns=ns,
    )


def generate_history(
    seed: int = 0,
    *,
    n_days: int = 6,
    n_traders: int = 300,
    n_episodes: int = 28,
    history_episodes: int = 0,
    kinds: Sequence[str] = ABUSE_KINDS,
    intensity: tuple[float, float] = (3.0, 30.0),
    start: str = "2024-01-15",
    window_minutes: float = 30.0,
    threshold_multiplier: float = 3.0,
) -> SessionHistory:
    """``n_days`` consecutive business days of one population from ``start``.

    ``n_episodes`` abuse episodes on the last day, kinds taken in turn from
    ``kinds`` (so each kind gets its share); ``history_episodes`` on each
    earlier day (no newcomer / dormant kinds there: those need a history).
    Deterministic in ``seed``; see the module docstring for the model.
    """
    if n_days < 2:
        raise ValueError(f"n_days must be >= 2 (history and a test day), got {n_days}")
    if n_traders < 10:
        raise ValueError(f"n_traders must be >= 10, got {n_traders}")
    if n_episodes < 0 or history_episodes < 0:
        raise ValueError("n_episodes and history_episodes must be >= 0")
    unknown = set(kinds) - set(ABUSE_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {ABUSE_KINDS}, got {kinds}")
    lo, hi = intensity
    if not 1.0 <= lo <= hi:
        raise ValueError(f"intensity must be (low, high) with 1 <= low <= high, got {intensity}")
    w_ms = round(window_minutes * MIN_MS)
    pop = _population(np.random.default_rng([seed, 0x5E55, 0]), n_traders, n_days,
                      threshold_multiplier)  # fmt: skip
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(n_days), roll="forward")
    days = [
        _ordinary_day(
            np.random.default_rng([seed, 0x5E55, 1, d]),
            pop,
            d,
            n_days,
            int(dates[d].astype("datetime64[ms]").astype(np.int64)),
        )
        for d in range(n_days)
    ]
    normals = _normals(pop, days[:-1], w_ms)
    traders = {tr.trader_id: tr for tr in pop.traders}
    out = []
    for day in days:
        last = day.d == n_days - 1
        ks = list(kinds) if last else [k for k in kinds if k not in _COLD_KINDS]
        n = (n_episodes if last else history_episodes) if ks else 0
        rng = np.random.default_rng([seed, 0x5E55, 2, day.d])
        injected, metas = _inject(rng, pop, day, normals, ks, n, (lo, hi), w_ms, n_days)
        rng = np.random.default_rng([seed, 0x5E55, 3, day.d])
        out.append(_finish(rng, pop, day, injected, metas, str(dates[day.d]), window_minutes,
                           traders))  # fmt: skip
    return SessionHistory(seed, window_minutes, threshold_multiplier, pop.traders, out)


def main(argv: Sequence[str] | None = None) -> None:
    """Print what one history holds, day by day."""
    import argparse
    import collections
    import time

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--traders", type=int, default=300)
    ap.add_argument("--days", type=int, default=6)
    ap.add_argument("--history-episodes", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    h = generate_history(
        args.seed, n_days=args.days, n_traders=args.traders, history_episodes=args.history_episodes
    )
    print(f"generated in {time.perf_counter() - t0:.1f} s")
    print("styles:", dict(collections.Counter(t.style for t in h.traders)))
    for day in h.days:
        trades = day.trades()
        looks = collections.Counter(day.lookalikes.values())
        kinds = collections.Counter(e.kind for e in day.episodes)
        levels = " ".join(f"{k}={v:.2f}" for k, v in day.desk_level.items())
        print(
            f"{day.date} trades {len(trades)} traders {len({t['trader_id'] for t in trades})}"
            f" releases {list(day.releases)} elevated {len(day.elevated)} {dict(looks)}"
        )
        print(f"    levels {levels}")
        for e in day.episodes:
            print(
                f"    {e.kind:<12}{e.actor:<9}{e.trader_id} {e.asset_class:<13}"
                f"{'+'.join(e.desks):<18} n={len(e.trade_ids):<4} I={e.intensity_drawn:5.1f}"
                f" got={e.intensity:6.1f} x floor {e.floor_multiple:5.2f}"
            )
        if kinds:
            print(f"    episodes {dict(kinds)}")


if __name__ == "__main__":
    main()
