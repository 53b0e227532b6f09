"""The alert model: robust baselines, breaching windows, episodes, explained alerts.

Modules, in the order data flows through them: :mod:`.config` (settings),
:mod:`.baselines` (what is normal: the statistics, resolve), :mod:`.profiles`
(each desk's normal day), :mod:`.calibrate` (both from history), :mod:`.scoring` (the
breach test), :mod:`.episodes` (the merge rule and peaks), :mod:`.alerts`
(the records), :mod:`.volume` (the volume-window detector), :mod:`.detector`
(the Detector seam and the registry).

Data flow: TradeBatch -> window statistics (:func:`surv_kernel.window_stats`,
one sort) -> static-floor test of every window (one jitted pass) -> baseline
test of the floor-breaching windows only -> episodes -> one alert per episode,
and a suppression report for every floor-breaching episode that is not alerted.

Group
    (trader, asset class). The static floors are per asset class, and one
    trader's equity and rates books have different normal sizes (a 20M
    rates half hour is routine where a 20M equity half hour is not), so a
    baseline mixing them would be too wide for one and too tight for the other.

Window
    The window of a trade at time ``t`` is the group's trades with timestamp in
    ``[t - W, t]`` (both ends inclusive, every trade at an equal timestamp
    included); its sum is in USD (ingest converted the notionals).

Breach
    A window *passes the floor* when its sum is ``> floor(asset class) *
    threshold_multiplier`` (the received rule's meaning, now on USD window
    sums instead of raw pairs). It *breaches* when it also stands out from its
    baseline: robust ``z = (sum - median) / scale >= z_level`` AND ``sum /
    median >= ratio_level`` (defaults 6 and 4: at least four times the
    group's normal, more for groups whose windows vary a lot). ``scale =
    max(sigma, scale_rel * median, scale_abs_usd)`` with ``sigma = MAD *
    1.4826``: the MAD of a trader whose every window is one trade of the same
    size is 0, so the scale never drops below a tenth of the median.
    With ``time_of_day`` (off by default) the median and sigma are first
    multiplied by the window's desk's activity at that time of day over its
    typical time, in [1, 1.5] (:mod:`.profiles`): from the calibrated desk
    profiles, or from the day itself leaving the group's own trades out.
    The two tests are one combined score (:func:`.scoring.evidence`): the
    geometric mean of ``z / z_level`` and ``ratio / ratio_level`` must reach
    ``1 + reliability_samples / samples`` with each piece at least
    ``evidence_floor`` of its level; the defaults (1, 0) are the AND above.
    Every explanation lists the pieces, their weights, the score and what it
    had to reach.

Baseline
    Per group, a median and MAD of its window sums (:func:`baseline_stats`:
    thinned to disjoint windows so a group's own burst cannot become its
    normal, then median and MAD re-taken over all windows under an outlier
    fence so they are activity-weighted like the windows tested: a trader
    whose trades come in clusters has busy windows in its normal, and its
    spread says so). Without ``baselines`` (the
    legacy entry point) they come from the batch itself; otherwise from
    :func:`calibrate` on history. A group with fewer than ``min_windows``
    samples (cold start) uses a peer baseline: the lower quartile
    (``peer_quantile``) over the peer groups of their thinned medians and
    thinned MADs, peers being the groups of the same asset class whose main
    desk is the trade's desk, else the same asset class on any desk (each
    level needs ``min_peer_groups`` groups with ``min_windows`` samples). A
    group with fewer than ``stable_windows`` samples keeps its own median but
    takes sigma = (its asset class's typical thinned MAD / time median) x
    its own time median: three samples give almost any MAD. With no usable baseline
    at all the floor alone decides (source ``"floor-only"``): the model never
    goes quieter than the static rule for lack of data. Alerts name the
    baseline they used (``explanation.baseline_source``, ``.scale_source``).

Episode
    Breaching windows of one group, in time order, belong to the same episode
    while each breach's window overlaps the previous breach's window, i.e. the
    gap between consecutive breach timestamps is ``<= W``
    (:func:`episode_starts`). One alert per episode: its peak is the breaching
    window with the largest sum (on ties the earliest, then the one whose
    own trade has the smallest id: never the input order), its trades are the trades
    of the peak window in (timestamp, trade id) order; ``start_ns`` is the
    first trade of the first breaching window and ``end_ns`` the last breach.
    The alert id is the episode's identity, ``sha256(trader | asset class |
    start_ns | first trade id of the first breaching window in (timestamp,
    trade id) order)``: fixed when the episode opens, it does not change as
    the episode grows or its peak moves. Only trades of the group arriving
    out of order can move an episode's start earlier and so give it a new
    id (a stream then withdraws the old id, see :mod:`surv_kernel.stream`).
    Floor episodes are built the same way over floor-passing windows; a floor
    episode without any breach goes to :attr:`Detection.suppressed` with the
    reason. ``policy="static"`` alerts every floor episode instead.

Locality (for streaming). With ``baselines`` given, whether a window breaches
and everything an alert carries depend only on the baselines and the group's
trades in ``[t - W, t]`` of the windows involved (a cold group's peer lookup
uses the trade's own desk), so a stream holding the last ``W`` of each group,
plus O(1) state per open episode (first window start, peak, last flagged
time), reproduces batch detection exactly; an episode closes once the
group's time passes its last flagged window by more than ``W``. Alert ids hash
strings and timestamps only (never dictionary codes or row positions), so the
same trades give the same ids whatever the input order or chunking.
"""

from __future__ import annotations

from .alerts import Alert, Detection, Explanation, SuppressedEpisode
from .baselines import (
    FENCE_RATIO,
    FENCE_Z,
    FLOOR_ONLY,
    OWN,
    PEER_CLASS,
    PEER_DESK,
    SOURCE_NAMES,
    Baselines,
    BaselineStat,
    baseline_stats,
    group_codes,
)
from .calibrate import calibrate
from .config import POLICIES, DetectionConfig
from .detector import (
    DETECTORS,
    Detector,
    StructuringDetector,
    VolumeDetector,
    configured_detectors,
    make_detector,
)
from .episodes import episode_starts
from .profiles import DeskProfile
from .scoring import SCALE_NAMES
from .volume import detect, detect_from_stats

__all__ = [
    "DETECTORS",
    "FENCE_RATIO",
    "FENCE_Z",
    "FLOOR_ONLY",
    "OWN",
    "PEER_CLASS",
    "PEER_DESK",
    "POLICIES",
    "SCALE_NAMES",
    "SOURCE_NAMES",
    "Alert",
    "BaselineStat",
    "Baselines",
    "DeskProfile",
    "Detection",
    "DetectionConfig",
    "Detector",
    "Explanation",
    "StructuringDetector",
    "SuppressedEpisode",
    "VolumeDetector",
    "baseline_stats",
    "calibrate",
    "configured_detectors",
    "detect",
    "detect_from_stats",
    "episode_starts",
    "group_codes",
    "make_detector",
]
