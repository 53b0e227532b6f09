"""One error tree for the package.

Every error surv_kernel raises on purpose derives from
:class:`SurveillanceError`, so a caller can catch them all with one ``except``
(bugs stay ordinary exceptions). Each also keeps the builtin base it had, so
code that caught ``ValueError`` or ``RuntimeError`` before still does:

- :class:`ConfigError` (``ValueError``): a setting or argument is unusable
  (an environment knob, a config value); the CLI exits 2;
- :class:`InputError` (``OSError``): an input is missing or unreadable; exit 3;
- ``surv_kernel.ingest.FeedError``, ``FeedUnavailableError``,
  ``DeskDeadlineError``, ``DeskFailuresError``: a desk feed failed; exit 4;
- :class:`DataError` (``ValueError``): a data file other than a feed
  (baselines, history, a checkpoint) is unusable; exit 5;
- :class:`OutputError` (``OSError``): an output could not be written; exit 6;
- ``surv_kernel.ReferenceDataError`` (``ValueError``): a value is missing from
  a reference table.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "InputError", "OutputError", "SurveillanceError"]


class SurveillanceError(Exception):
    """Base of every error the package raises on purpose."""


class ConfigError(SurveillanceError, ValueError):
    """A setting, argument or environment knob is unusable; the message says how to fix it."""


class InputError(SurveillanceError, OSError):
    """An input file or directory is missing or unreadable."""


class DataError(SurveillanceError, ValueError):
    """A data file other than a feed (baselines, history, checkpoint) is unusable."""


class OutputError(SurveillanceError, OSError):
    """An output (alerts, summary, report, metrics, store) could not be written."""
