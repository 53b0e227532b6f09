"""The Detector seam: one typology of detection, and the registry of them.

A detector takes a columnar :class:`~surv_kernel.batch.TradeBatch` (and,
optionally, baselines from history) and returns a
:class:`~surv_kernel.model.Detection`: explained alerts and the suppression
report. The pipeline runs every configured detector over the same batch; the
stream needs to know how far back a window's verdict looks
(``horizon_ns``: with baselines given, a verdict depends only on the group's
trades in ``[t - horizon, t]``), which is what makes streaming and
partitioning exact. A new typology is one class here and one entry in
:data:`DETECTORS`; nothing else in the package names detectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..batch import TradeBatch
from .alerts import Detection
from .baselines import Baselines
from .calibrate import calibrate
from .config import DetectionConfig, resolve_config
from .volume import detect

__all__ = [
    "DETECTORS",
    "Detector",
    "StructuringDetector",
    "VolumeDetector",
    "configured_detectors",
    "make_detector",
    "run_detectors",
]


@runtime_checkable
class Detector(Protocol):
    """What the pipeline and the engines need of a detector."""

    #: The typology its alerts carry (and its key in :data:`DETECTORS`).
    name: str
    config: Any

    def detect(self, batch: TradeBatch, baselines: Baselines | None = None) -> Detection:
        """Alerts and suppressed episodes of ``batch``."""
        ...

    def calibrate(self, history: TradeBatch) -> Baselines:
        """Baselines from past days, for :meth:`detect` and the stream."""
        ...

    @property
    def horizon_ns(self) -> int:
        """How far back (ns) a window's verdict looks, given baselines."""
        ...


class VolumeDetector:
    """Bursts of USD volume against the trader's own normal (and its peers'):
    the rolling-window model of :mod:`surv_kernel.model`."""

    name = "volume_burst"

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.config = resolve_config(config)

    def detect(self, batch: TradeBatch, baselines: Baselines | None = None) -> Detection:
        return detect(batch, self.config, baselines)

    def calibrate(self, history: TradeBatch) -> Baselines:
        return calibrate(history, self.config)

    @property
    def horizon_ns(self) -> int:
        return self.config.window_ns

    def __repr__(self) -> str:
        return f"VolumeDetector({self.config!r})"


from .structuring import StructuringDetector  # noqa: E402 (uses detect, like VolumeDetector)

#: Typology name -> detector class (constructed with a DetectionConfig).
DETECTORS: dict[str, type] = {
    VolumeDetector.name: VolumeDetector,
    StructuringDetector.name: StructuringDetector,
}


def make_detector(name: str, config: DetectionConfig | None = None) -> Detector:
    """The detector registered as ``name``; a clear error naming the known ones."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}") from None
    return cls(config)


def configured_detectors(config: DetectionConfig | None = None) -> list[Detector]:
    """The detectors ``config.detectors`` names, in that order."""
    cfg = resolve_config(config)
    return [make_detector(name, cfg) for name in cfg.detectors]


def run_detectors(
    detectors: Sequence[Detector], batch: TradeBatch, baselines: Baselines | None = None
) -> Detection:
    """Every detector over ``batch``, as one :class:`Detection`: alerts and
    suppressed episodes in (start, trader, asset class) order, counts summed."""
    if not detectors:
        raise ValueError("no detector to run; pass at least one (see DETECTORS)")
    if len(detectors) == 1:
        return detectors[0].detect(batch, baselines)
    parts = [d.detect(batch, baselines) for d in detectors]

    def key(x: Any) -> tuple[Any, ...]:
        return (x.start_ns, x.trader_id, x.asset_class)

    return Detection(
        sorted((a for p in parts for a in p.alerts), key=lambda a: (*key(a), a.alert_id)),
        sorted((s for p in parts for s in p.suppressed), key=key),
        len(batch),
        sum(p.n_floor_episodes for p in parts),
    )
