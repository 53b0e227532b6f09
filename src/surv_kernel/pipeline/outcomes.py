"""Per-desk outcomes of a run, in the order asked, and the error that carries
the healthy desks' results when some desk failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SurveillanceError

__all__ = ["DeskFailuresError", "DeskOutcome", "DeskRunReport", "TaskResult"]


@dataclass(frozen=True)
class TaskResult:
    """One desk's task on the pool: its value, or the error that stopped it."""

    key: Any
    value: Any  # None when the task failed (None is never "no alerts")
    error: BaseException | None
    #: "ok", "feed_unavailable", "bad_feed", "bad_result", "timeout" or "error"
    kind: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


class DeskOutcome(TaskResult):
    """What happened to one desk of a run: its alerts, or why it has none
    (``alerts`` is None for a failed desk, never ``[]``)."""

    @property
    def desk_id(self) -> Any:
        return self.key

    @property
    def alerts(self) -> list[dict[str, Any]] | None:
        return self.value


@dataclass(frozen=True)
class DeskRunReport:
    """Every desk's outcome, in the order of the ``desk_ids`` asked for."""

    outcomes: tuple[DeskOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def results(self) -> list[list[dict[str, Any]] | None]:
        """One entry per desk in order: its alert list, or None where it failed."""
        return [o.alerts for o in self.outcomes]

    @property
    def failures(self) -> dict[Any, BaseException]:
        """desk id -> the error that stopped it (failed desks only)."""
        return {o.desk_id: o.error for o in self.outcomes if o.error is not None}

    @property
    def alerts_by_desk(self) -> dict[Any, list[dict[str, Any]]]:
        """desk id -> alerts, healthy desks only."""
        return {o.desk_id: o.alerts for o in self.outcomes if o.alerts is not None}

    def raise_for_failures(self) -> list[list[dict[str, Any]]]:
        """The legacy result (list of alert lists) if every desk succeeded,
        else raise :class:`DeskFailuresError`."""
        if not self.ok:
            raise DeskFailuresError(self)
        return [o.alerts for o in self.outcomes]  # type: ignore[misc]


class DeskFailuresError(SurveillanceError, RuntimeError):
    """One or more desks failed; every other desk finished and its alerts are here.

    - ``results``: one entry per desk in the order asked, the alert list of a
      healthy desk or ``None`` for a failed one (never ``[]`` for a failure);
    - ``failures``: desk id -> exception; ``alerts_by_desk``: healthy desks only;
    - ``report``: the full :class:`DeskRunReport` (kinds and timings).
    """

    def __init__(self, report: DeskRunReport) -> None:
        self.report = report
        failed = [o for o in report.outcomes if not o.ok]
        parts = "; ".join(f"{o.desk_id!r} {o.kind}: {o.error}" for o in failed)
        super().__init__(
            f"{len(failed)} of {len(report.outcomes)} desk(s) failed ({parts}); the healthy "
            f"desks' alerts are in .results / .alerts_by_desk"
        )

    @property
    def results(self) -> list[list[dict[str, Any]] | None]:
        return self.report.results

    @property
    def failures(self) -> dict[Any, BaseException]:
        return self.report.failures

    @property
    def alerts_by_desk(self) -> dict[Any, list[dict[str, Any]]]:
        return self.report.alerts_by_desk

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))
