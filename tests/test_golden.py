"""Every golden output (``tests/golden.py``) is unchanged: a refactor or a
faster kernel must not move a single alert, id, suppressed episode,
quarantine record, stream event or summary count."""

import json

import pytest

import golden


@pytest.mark.slow
def test_golden_outputs_unchanged():
    want = json.loads(golden.HASHES.read_text())
    got = golden.compute()
    assert sorted(got) == sorted(want), "the set of golden cases changed"
    assert {k: v for k, v in got.items() if want[k] != v} == {}
