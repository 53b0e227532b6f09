"""Is a desk's feed plausibly whole? Its volume against its normal day.

A desk feed cut short upstream (the morning only, half the book filtered
away) decodes without a single bad byte. With baselines from history (they
carry each desk's profile, :mod:`surv_kernel.model.profiles`), every desk of
a run is compared with its normal volume for the part of the UTC day the run
covers (up to its newest trade): a desk whose record count **or** USD
notional is below ``min_ratio`` times normal is *partial*, with the figures.

Thresholds (documented in README "Operations"):

- ``min_ratio``: default 0.5 (:data:`DEFAULT_MIN_VOLUME_RATIO`), ``SURV_MIN_VOLUME_RATIO``
  or ``--min-volume-ratio``; 0 turns the check off. Desks vary from day to day
  (a quiet day is 0.6-0.8 of a mean one); each desk's quietest history day is
  shown next to the verdict so an operator can judge a borderline case.
- A desk normally expected to have fewer than :data:`MIN_EXPECTED_RECORDS`
  records by then is not judged: too little is normal to tell.
- A desk whose history shows at least :data:`MIN_EPISODES_PER_DAY`
  floor-passing episodes a day, where this run gave the detector none
  (neither an alert nor a suppressed episode) over at least half a normal
  day, is flagged ``detector_silent``: not partial (a quiet day is possible),
  but worth a look.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..batch import TradeBatch
from ..errors import ConfigError
from ..model.profiles import BUCKET_MINUTES, DeskProfile, utc_bucket
from .totals import DayTotals

__all__ = [
    "DEFAULT_MIN_VOLUME_RATIO",
    "ENV_MIN_VOLUME_RATIO",
    "MIN_EPISODES_PER_DAY",
    "MIN_EXPECTED_RECORDS",
    "VolumeCheck",
    "check_volumes",
    "min_volume_ratio",
]

DEFAULT_MIN_VOLUME_RATIO = 0.5
ENV_MIN_VOLUME_RATIO = "SURV_MIN_VOLUME_RATIO"
MIN_EXPECTED_RECORDS = 50
MIN_EPISODES_PER_DAY = 3.0
_DAY_NS = 86_400 * dtypes.NS_PER_SECOND


def min_volume_ratio(given: float | None = None) -> float:
    """``given``, else ``SURV_MIN_VOLUME_RATIO``, else the default; in [0, 1]."""
    if given is None:
        env = os.environ.get(ENV_MIN_VOLUME_RATIO, "").strip()
        if not env:
            return DEFAULT_MIN_VOLUME_RATIO
        try:
            given = float(env)
        except ValueError:
            raise ConfigError(f"{ENV_MIN_VOLUME_RATIO}={env!r} is not a number") from None
    if not 0.0 <= given <= 1.0:
        raise ConfigError(f"the minimum volume ratio must be in [0, 1] (0: off), got {given!r}")
    return float(given)


@dataclass(frozen=True)
class VolumeCheck:
    """One desk's volume in a run against its normal for the same span."""

    desk: str
    records: int
    expected_records: float
    notional_usd: float
    expected_notional_usd: float
    until_utc: str  # "HH:MM": the span compared ends there (the run's newest trade)
    threshold: float
    quietest_history_day: float  # that desk's quietest history day / its mean day
    floor_episodes: int | None  # this run's (alerted or suppressed); None: not counted
    expected_floor_episodes: float

    @property
    def ratio(self) -> float:
        return min(
            self.records / self.expected_records if self.expected_records else 1.0,
            self.notional_usd / self.expected_notional_usd if self.expected_notional_usd else 1.0,
        )

    @property
    def judged(self) -> bool:
        return self.threshold > 0 and self.expected_records >= MIN_EXPECTED_RECORDS

    @property
    def short(self) -> bool:
        """Implausibly short: the desk is partial."""
        return self.judged and self.ratio < self.threshold

    @property
    def detector_silent(self) -> bool:
        return (
            self.floor_episodes == 0
            and self.expected_floor_episodes >= MIN_EPISODES_PER_DAY / 2
            and self.judged
        )

    def line(self) -> str:
        head = (
            f"{self.records:,} records and {self.notional_usd / 1e6:,.1f}M USD up to "
            f"{self.until_utc} UTC against a normal {self.expected_records:,.0f} and "
            f"{self.expected_notional_usd / 1e6:,.1f}M ({self.ratio:.0%}; "
        )
        if self.short:
            return (
                head + f"below {self.threshold:.0%} of normal, the quietest history day was "
                f"{self.quietest_history_day:.0%}): the feed looks cut short"
            )
        return head + f"threshold {self.threshold:.0%})"


def check_volumes(
    batch: TradeBatch | DayTotals,
    profiles: Mapping[str, DeskProfile],
    desks: Sequence[str],
    *,
    min_ratio: float,
    floor_episodes: Mapping[str, int] | None = None,
) -> list[VolumeCheck]:
    """A :class:`VolumeCheck` for every desk of ``desks`` that has a profile.

    The span compared is every UTC day the run touches: whole days before
    the newest trade's day, and that day up to the newest trade's bucket (a
    run in the middle of the day is compared with the morning, not the day).
    """
    # a batch, or the run's DayTotals (all this check reads of the day)
    day = batch if isinstance(batch, DayTotals) else DayTotals.from_batch(batch)
    if not day.n or day.ts_min is None or day.ts_max is None:
        return []
    newest = day.ts_max
    first_day = day.ts_min // _DAY_NS
    whole_days = newest // _DAY_NS - first_day
    last_bucket = int(utc_bucket(np.array([newest]))[0])
    minutes = (last_bucket + 1) * BUCKET_MINUTES
    until = f"{minutes // 60:02d}:{minutes % 60:02d}" if minutes < 1440 else "24:00"
    names = day.dictionaries.desk
    out = []
    for desk in desks:
        prof = profiles.get(desk)
        if prof is None:
            continue
        rec = np.asarray(prof.records)
        notional = np.asarray(prof.notional_usd)
        code = names.get(desk)
        expected_share = whole_days + (
            float(rec[: last_bucket + 1].sum() / rec.sum()) if rec.sum() else 0.0
        )
        out.append(
            VolumeCheck(
                desk=desk,
                records=int(day.desk_rows.get(code, 0)) if code is not None else 0,
                expected_records=float(whole_days * rec.sum() + rec[: last_bucket + 1].sum()),
                notional_usd=float(day.desk_usd.get(code, 0.0)) if code is not None else 0.0,
                expected_notional_usd=float(
                    whole_days * notional.sum() + notional[: last_bucket + 1].sum()
                ),
                until_utc=until,
                threshold=min_ratio,
                quietest_history_day=prof.min_day_ratio,
                floor_episodes=None if floor_episodes is None else floor_episodes.get(desk, 0),
                expected_floor_episodes=prof.floor_episodes_per_day * expected_share,
            )
        )
    return out
