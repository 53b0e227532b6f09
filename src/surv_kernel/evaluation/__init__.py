"""Evaluation: labelled synthetic days and the received rule to compare against.

- :mod:`.scenario`: ``generate_day`` (a labelled six-desk day) and
  ``evaluate_alerts`` (precision, recall, alerts per episode of any detector);
- :mod:`.received_rule`: the received O(n^2) pair rule, as it was, for the
  side-by-side tables.
"""
