"""Value checks and time conversion on trade columns: jitted code only.

Format-independent: the JSON scanner's rows and the columnar readers'
(:mod:`surv_kernel.validate`) go through the same two kernels, so every
reader applies the same rules in the same order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, _nrt=False)
def seconds_to_ns(seconds, rows, out):
    """``out[r]`` = the nearest int64 nanosecond of ``seconds[rows[r]]``.

    ``t * 1e9`` would round at ~1.7e18 (an ulp there is 256 ns); splitting off
    the whole seconds first is exact (``t - floor(t)`` is representable), so
    only the final rounding to a nanosecond remains. The caller has checked
    that every value is finite and well inside int64 nanoseconds.
    """
    for r in range(rows.shape[0]):
        t = seconds[rows[r]]
        whole = math.floor(t)
        out[r] = np.int64(whole) * 1_000_000_000 + np.int64(np.rint((t - whole) * 1e9))


@njit(cache=True, nogil=True, _nrt=False)
def check_values(
    skip,
    lengths,
    max_length,
    id_len,
    trader_len,
    currency,
    rate,
    asset_class,
    asset_known,
    notional,
    timestamp,
    max_usd,
    min_time,
    max_time,
    reason,
    usd,
):
    """One pass of the value checks; ``reason[i]`` = the first failing check
    (1 too long, 2 empty id, 3 unknown currency, 4 unknown asset class, 5 bad
    notional, 6 USD amount too large, 7 bad timestamp) or 0, and ``usd[i]`` =
    ``notional * rate`` (NaN when the currency is unknown). Comparisons are
    written so that NaN fails them. Rows with ``skip`` (already rejected; their
    fields are not set) get reason 255 and are not read."""
    for i in range(lengths.shape[0]):
        if skip[i]:
            reason[i] = 255
            usd[i] = np.nan
            continue
        r = 0
        x = notional[i]
        fx = rate[currency[i]]
        u = x * fx
        usd[i] = u
        if lengths[i] > max_length:
            r = 1
        elif id_len[i] == 0 or trader_len[i] == 0:
            r = 2
        elif np.isnan(fx):
            r = 3
        elif not asset_known[asset_class[i]]:
            r = 4
        elif not (x > 0.0) or not np.isfinite(x):
            r = 5
        elif not (u <= max_usd):
            r = 6
        elif not (timestamp[i] >= min_time and timestamp[i] < max_time):
            r = 7
        reason[i] = r
