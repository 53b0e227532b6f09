"""Desk profiles: each desk's normal day by time of day, from calibration history.

A feed that arrives whole but short (the desk sent the morning only, a
filter upstream dropped half the book) decodes cleanly: nothing in the bytes
says trades are missing. Only history does. :func:`desk_profiles` records,
per desk, the mean number of records and of USD notional in each
``BUCKET_MINUTES`` bucket of the UTC day over the history's days, how quiet
its quietest day was relative to the mean, and how many floor-passing
episodes (alerted or suppressed) a day normally has there. The pipeline
compares a run with it (:mod:`surv_kernel.pipeline.plausibility`).
"""

from __future__ import annotations

import msgspec
import numpy as np

from .. import dtypes
from ..batch import TradeBatch

__all__ = ["BUCKET_MINUTES", "N_BUCKETS", "DeskProfile", "desk_profiles", "utc_bucket"]

BUCKET_MINUTES = 30
N_BUCKETS = 24 * 60 // BUCKET_MINUTES
_DAY_NS = 86_400 * dtypes.NS_PER_SECOND
_BUCKET_NS = BUCKET_MINUTES * dtypes.NS_PER_MINUTE


class DeskProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One desk's normal day (means over the history days it traded)."""

    days: int  # history days (UTC dates) with trades on the desk
    records: list[float]  # mean records per day in each UTC bucket
    notional_usd: list[float]  # mean USD notional per day in each UTC bucket
    #: the quietest history day's records over the mean day's (1.0: one day)
    min_day_ratio: float
    #: floor-passing episodes (alerted or suppressed) per day, by the group's main desk
    floor_episodes_per_day: float
    bucket_minutes: int = BUCKET_MINUTES


def utc_bucket(timestamps_ns: np.ndarray) -> np.ndarray:
    """The time-of-day bucket (0..N_BUCKETS-1, UTC) of each timestamp."""
    return (timestamps_ns % _DAY_NS) // _BUCKET_NS


def desk_profiles(batch: TradeBatch, episode_desk: np.ndarray) -> dict[str, DeskProfile]:
    """Profiles of every desk in ``batch`` (history of one or more days);
    ``episode_desk`` holds the desk code of each floor-passing episode."""
    names = batch.dictionaries.desk.values
    if not len(batch):
        return {}
    day = batch.timestamp_ns // _DAY_NS
    bucket = utc_bucket(batch.timestamp_ns)
    n_desk = len(names)
    days, day_code = np.unique(day, return_inverse=True)
    # per desk x history day: records (which days a desk traded, and how much)
    per_day = np.zeros((n_desk, len(days)), np.int64)
    np.add.at(per_day, (batch.desk, day_code), 1)
    records = np.zeros((n_desk, N_BUCKETS))
    np.add.at(records, (batch.desk, bucket), 1.0)
    notional = np.zeros((n_desk, N_BUCKETS))
    np.add.at(notional, (batch.desk, bucket), batch.notional_usd)
    episodes = np.bincount(episode_desk[episode_desk >= 0], minlength=n_desk)
    out = {}
    for k, name in enumerate(names):
        active = per_day[k][per_day[k] > 0]
        if not len(active):
            continue
        n_days = len(active)
        out[name] = DeskProfile(
            days=n_days,
            records=(records[k] / n_days).tolist(),
            notional_usd=(notional[k] / n_days).tolist(),
            min_day_ratio=float(active.min() / active.mean()),
            floor_episodes_per_day=float(episodes[k] / n_days),
        )
    return out
