"""The structuring detector: many trades each well under the floor adding up.

Its rule (``surv_kernel.model.structuring``) is the volume model on the
trades of at most ``structuring_trade_fraction`` x the floor, plus a minimum
number of pieces in the peak window; these tests check each step and that the
detector is on the pipeline seam (registry, config, run_detectors).
"""

from __future__ import annotations

import pytest

from batches import make_batch
from surv_kernel import dtypes
from surv_kernel.model import (
    DETECTORS,
    DetectionConfig,
    StructuringDetector,
    VolumeDetector,
    configured_detectors,
    detect,
    make_detector,
)
from surv_kernel.model.detector import run_detectors
from surv_kernel.model.structuring import small_trade_rows

MIN = dtypes.NS_PER_MINUTE
D0 = 1_709_942_400 * dtypes.NS_PER_SECOND  # a UTC midnight


def ordinary(trader, usd=250_000.0, every=20, desk="D1"):
    """08:00-16:00, one trade every ``every`` minutes (equity: floor 1M, x3)."""
    return [
        (f"{trader}-o{i}", trader, "equity", desk, D0 + (8 * 60 + every * i) * MIN, usd)
        for i in range(8 * 60 // every)
    ]


def pieces(trader, n, usd, at_min=11 * 60 + 5, spacing_s=40, tag="s"):
    return [
        (
            f"{trader}-{tag}{i}",
            trader,
            "equity",
            "D1",
            D0 + at_min * MIN + i * spacing_s * 10**9,
            usd,
        )
        for i in range(n)
    ]


def population():
    return [r for k in range(6) for r in ordinary(f"P{k}")]


def test_many_small_pieces_adding_up_are_structuring_with_their_own_id():
    rows = population() + ordinary("X") + pieces("X", 20, 250_000.0)  # 5M in ~13 minutes
    det = StructuringDetector().detect(make_batch(rows))
    assert [(a.trader_id, a.typology) for a in det.alerts] == [("X", "structuring")]
    a = det.alerts[0]
    assert len(a.trades) >= 8 and all(t.startswith("X-") for t in a.trades)
    assert a.explanation.window_sum_usd > a.explanation.floor_usd
    vol = detect(make_batch(rows))
    assert [x.trader_id for x in vol.alerts] == ["X"]
    assert vol.alerts[0].alert_id != a.alert_id  # two findings on the same trades
    both = run_detectors([VolumeDetector(), StructuringDetector()], make_batch(rows))
    assert sorted(x.typology for x in both.alerts) == ["structuring", "volume_burst"]


def test_a_few_fills_of_one_order_are_not_structuring_and_say_why():
    # 7 fills of 0.5M (= 0.5 x the floor, still small): over the floor, but few pieces
    # (X trades every two hours, none inside the fills' windows)
    rows = population() + ordinary("X", every=120) + pieces("X", 7, 500_000.0, 11 * 60, 60)
    det = StructuringDetector().detect(make_batch(rows))
    assert det.alerts == []
    (s,) = [s for s in det.suppressed if s.trader_id == "X"]
    assert s.typology == "structuring"
    assert s.reason.startswith("too few pieces: 7 trades") and ">= 8" in s.reason


def test_large_trades_are_not_pieces():
    rows = population() + ordinary("X") + pieces("X", 10, 600_000.0)  # > 0.5 x 1M each
    batch = make_batch(rows)
    small = set(batch.trade_id[small_trade_rows(batch, 0.5)].tolist())
    assert not any(t.startswith("X-s") for t in small)
    assert StructuringDetector().detect(batch).alerts == []
    assert [a.trader_id for a in detect(batch).alerts] == ["X"]  # the volume model sees it


def test_a_trader_who_always_trades_in_many_small_pieces_is_judged_on_that_normal():
    # every 2 minutes all day, 0.25M: each window holds ~16 pieces (4M, over the floor)
    rows = population() + ordinary("F", every=2)
    det = StructuringDetector().detect(make_batch(rows))
    assert det.alerts == []
    assert det.suppressed and all("within baseline" in s.reason for s in det.suppressed)


def test_structuring_is_registered_and_selectable_in_the_config():
    assert DETECTORS["structuring"] is StructuringDetector
    cfg = DetectionConfig(detectors=("volume_burst", "structuring"))
    assert [type(d) for d in configured_detectors(cfg)] == [VolumeDetector, StructuringDetector]
    assert [type(d) for d in configured_detectors()] == [VolumeDetector]
    assert make_detector("structuring", cfg).config is cfg
    with pytest.raises(ValueError, match="unknown .*known"):
        DetectionConfig(detectors=("volume_burst", "spoofing"))
    with pytest.raises(ValueError, match="structuring_min_trades"):
        DetectionConfig(structuring_min_trades=1)
    with pytest.raises(ValueError, match="structuring_trade_fraction"):
        DetectionConfig(structuring_trade_fraction=0.0)


def test_structuring_with_calibrated_baselines_of_its_own():
    hist = [
        (f"h{r[0]}", r[1], r[2], r[3], r[4] - 86_400 * 10**9, r[5])
        for r in population() + ordinary("X")
    ]
    det = StructuringDetector()
    base = det.calibrate(make_batch(hist))
    rows = population() + ordinary("X") + pieces("X", 20, 250_000.0)
    got = det.detect(make_batch(rows), base)
    assert [(a.trader_id, a.typology) for a in got.alerts] == [("X", "structuring")]


def test_the_cli_selects_detectors_by_name():
    import argparse

    from surv_kernel.cli.common import CliError, config_from_args

    args = argparse.Namespace(
        window_minutes=30.0,
        threshold_multiplier=3.0,
        policy="robust",
        detectors="volume_burst, structuring",
    )
    assert config_from_args(args).detectors == ("volume_burst", "structuring")
    args.detectors = "spoofing"
    with pytest.raises(CliError, match="unknown"):
        config_from_args(args)
