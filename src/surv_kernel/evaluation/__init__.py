"""Evaluation: labelled synthetic days and the received rule to compare against.

- :mod:`.scenario`: ``generate_day`` (a labelled six-desk day) and
  ``evaluate_alerts`` (precision, recall, alerts per episode of any detector);
- :mod:`.sweep`: the alert model over labelled days for a grid of thresholds
  (precision, recall, alerts per 1,000 trader-days) and the recommended
  config with its rationale (``surv-kernel calibrate --sweep``);
- :mod:`.received_rule`: the received O(n^2) pair rule, as it was, for the
  side-by-side tables.
"""
