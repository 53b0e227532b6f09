"""Reference data from files: FX rates by date, floors with effective dates,
versions, and ``reference check``."""

from __future__ import annotations

import numpy as np
import pytest

from surv_kernel.errors import DataError
from surv_kernel.reference import (
    ASSET_CLASS_FLOORS_USD,
    EMBEDDED,
    FX_RATES_USD,
    ReferenceDataError,
    UnknownAssetClassError,
    UnknownCurrencyError,
    active_reference,
    check_reference,
    fx_rate,
    load_reference,
    use_reference,
)


def day(iso: str) -> int:
    return int(np.datetime64(iso, "D").astype(np.int64))


FX = """date,currency,usd_per_unit,source
# a week of EUR, and CHF (a currency the embedded table does not have)
2024-03-11,EUR,1.0900,ECB
2024-03-12,EUR,1.0910,ECB
2024-03-13,EUR,1.0920,ECB
2024-03-14,EUR,1.0930,ECB
2024-03-15,EUR,1.0940,ECB
2024-03-11,CHF,1.1300,SNB
2024-03-12,CHF,1.1310,SNB
2024-03-13,CHF,1.1320,SNB
2024-03-14,CHF,1.1330,SNB
2024-03-15,CHF,1.1340,SNB
"""
FLOORS = """asset_class,floor_usd,effective_from,effective_to,source
equity,1000000,2024-01-01,2024-03-13,policy 2024-01
equity,1500000,2024-03-14,,policy 2024-03
fixed_income,5000000,2024-01-01,,policy 2024-01
derivative,2000000,,,received
"""


@pytest.fixture
def ref_dir(tmp_path):
    (tmp_path / "fx_rates.csv").write_text(FX)
    (tmp_path / "floors.csv").write_text(FLOORS)
    return tmp_path


def test_rates_by_date_with_weekend_carry_forward_and_no_guessing(ref_dir):
    ref = load_reference(ref_dir)
    assert check_reference(ref_dir) == []
    days = np.array([day("2024-03-12"), day("2024-03-16"), day("2024-03-19"), day("2024-03-10")])
    got = ref.usd_per_unit("EUR", days)
    # Tuesday's own rate; Saturday carries Friday's; Tuesday after is 4 days
    # past Friday (at most 4: a long weekend); before the first rate: none
    assert got[0] == 1.091 and got[1] == 1.094 and got[2] == 1.094 and np.isnan(got[3])
    assert np.isnan(ref.usd_per_unit("EUR", np.array([day("2024-03-20")])))[0]
    assert ref.fx_rate("CHF", day("2024-03-13")) == 1.132
    assert ref.fx_rate("USD") == 1.0  # implied
    with pytest.raises(UnknownCurrencyError, match="fx_rates.csv"):
        ref.fx_rate("JPY")  # not in this bank's tables: never 1.0
    with pytest.raises(ReferenceDataError, match="no FX rate for EUR on day 2024-03-25"):
        ref.fx_rate("EUR", day("2024-03-25"))


def test_rates_per_row_follow_each_trade_s_own_date(ref_dir):
    ref = load_reference(ref_dir)
    ns = np.array(["2024-03-11T23:59:59", "2024-03-12T00:00:00", "2024-03-14T12:00"], "M8[ns]")
    rates = ref.rates_for(("CHF", "EUR"), np.array([1, 1, 0]), ns.astype(np.int64))
    assert rates.tolist() == [1.09, 1.091, 1.133]


def test_floors_with_effective_dates(ref_dir):
    ref = load_reference(ref_dir)
    assert ref.floor("equity", day("2024-03-13")) == 1e6
    assert ref.floor("equity", day("2024-03-14")) == 1.5e6
    assert ref.floor("equity") == 1.5e6  # the latest period
    assert ref.floor("derivative", day("1999-01-01")) == 2e6  # open at both ends
    with pytest.raises(ReferenceDataError, match="floor changes between"):
        ref.floors_between("equity", day("2024-03-13"), day("2024-03-14"))
    with pytest.raises(UnknownAssetClassError):
        ref.floor("crypto")


def test_the_version_names_the_tables(ref_dir):
    v1 = load_reference(ref_dir).version
    assert v1.startswith("sha256:") and v1 != EMBEDDED.version
    (ref_dir / "fx_rates.csv").write_text(FX.replace("1.0930", "1.0931"))
    assert load_reference(ref_dir).version != v1


@pytest.mark.parametrize(
    "fx, floors, problem",
    [
        (FX.replace("CHF", "CHX"), FLOORS, "'CHX' is not an ISO 4217 currency code"),
        (FX.replace("1.0920", "-1.0920"), FLOORS, "must be a positive finite number"),
        (FX.replace("1.0920", "nan"), FLOORS, "must be a positive finite number"),
        (
            FX.replace("2024-03-13,EUR,1.0920,ECB\n", ""),
            FLOORS,
            "no rate on business day 2024-03-13",
        ),
        (FX + "2024-03-14,EUR,1.1,ECB\n", FLOORS, "EUR on 2024-03-14 is also on line"),
        (FX, FLOORS.replace("2024-03-14,,policy", "2024-03-13,,policy"), "overlap"),
        (FX, "asset_class,floor_usd,effective_from\n", "no floors"),
        (FX, FLOORS.replace("1500000", "0"), "floor_usd '0' must be a positive finite number"),
        ("day,ccy,rate\n", FLOORS, "missing column(s)"),
    ],
)
def test_reference_check_refuses_what_would_mislead(tmp_path, fx, floors, problem):
    (tmp_path / "fx_rates.csv").write_text(fx)
    (tmp_path / "floors.csv").write_text(floors)
    problems = check_reference(tmp_path)
    assert any(problem in p for p in problems), problems
    with pytest.raises(DataError, match="reference check"):
        load_reference(tmp_path)


def test_embedded_default_keeps_the_received_values():
    assert EMBEDDED.version == "embedded-1"
    for c, r in FX_RATES_USD.items():
        assert EMBEDDED.fx_rate(c) == r and EMBEDDED.fx_rate(c, day("1990-01-01")) == r
    for ac, f in ASSET_CLASS_FLOORS_USD.items():
        assert EMBEDDED.floor(ac, day("2030-06-01")) == f


def test_surv_reference_and_use_reference_change_the_tables_in_force(ref_dir, monkeypatch):
    assert active_reference() is EMBEDDED
    monkeypatch.setenv("SURV_REFERENCE", str(ref_dir))
    assert active_reference().version == load_reference(ref_dir).version
    assert fx_rate("CHF") == 1.134  # the library's lookups follow it
    with pytest.raises(UnknownCurrencyError):
        fx_rate("JPY")
    monkeypatch.delenv("SURV_REFERENCE")
    try:
        assert use_reference(ref_dir).version.startswith("sha256:")
        assert fx_rate("CHF") == 1.134
    finally:
        use_reference(None)
    assert active_reference() is EMBEDDED


def test_reference_check_command(ref_dir, tmp_path):
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "surv_kernel", "reference", "check", str(ref_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and load_reference(ref_dir).version in ok.stdout, ok.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fx_rates.csv").write_text(FX.replace("CHF", "CHX"))
    (bad / "floors.csv").write_text(FLOORS)
    r = subprocess.run(
        [sys.executable, "-m", "surv_kernel", "reference", "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 5 and "'CHX' is not an ISO 4217 currency code" in r.stderr
    run = subprocess.run(
        [sys.executable, "-m", "surv_kernel", "--help"], capture_output=True, text=True, check=False
    )
    assert "reference" in run.stdout


def test_every_run_records_the_reference_it_used(ref_dir):
    """summary.json (and so the store's run record) names the tables in force."""
    import json

    from surv_kernel.pipeline import BytesSource, run, summary_dict

    feed = json.dumps(
        [
            {"trade_id": f"T{i}", "trader_id": "A", "timestamp": 1_710_400_000.0 + i,
             "notional": 1e5, "currency": "EUR", "asset_class": "equity",
             "surveillance_required": True}
            for i in range(5)
        ]
    )  # fmt: skip
    s = summary_dict(run([BytesSource("EQ", feed)]))
    assert s["config"]["reference"] == {"version": EMBEDDED.version, "source": EMBEDDED.source}
    try:
        ref = use_reference(ref_dir)
        s = summary_dict(run([BytesSource("EQ", feed)]))
        assert s["config"]["reference"]["version"] == ref.version
        assert s["config"]["reference"]["version"].startswith("sha256:")
    finally:
        use_reference(None)
