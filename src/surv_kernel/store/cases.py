"""The case workflow: an alert's status machine, every step in the audit log.

::

    open ──assign──▶ under_review ──close (false_positive | no_action | reported)──▶ closed
                          │  ▲                                                         │
                          │  └──────────────────reopen (reason)────────────────────────┘
                          └──escalate / close --disposition escalated──▶ escalated ──close──▶ closed

- ``assign``: open -> under_review (someone is looking at it); on an alert
  under review or escalated it hands the case to another analyst (status
  unchanged). A closed case must be reopened first.
- ``close``: under_review or escalated -> closed with a disposition
  (``false_positive``, ``no_action``, ``reported``), or under_review ->
  escalated with the disposition ``escalated``. A reason is required: it is
  what MAR asks to be kept for the decision to report or not.
- ``escalate``: ``close --disposition escalated``.
- ``reopen``: closed -> under_review, with a reason.

Anything else (closing an open alert nobody reviewed, escalating twice) is a
:class:`TransitionError` naming the allowed next steps. Each step is one
transaction: the case row changes only if its status is still the one read
(a concurrent analyst's change makes the second one fail, never both land),
and the audit row is written in the same transaction. The audit log has no
update or delete in this API, and triggers refuse them in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend import StoreConfigError, StoreDataError, StoreWriteError, driver_errors
from .store import Store, default_user

__all__ = [
    "DISPOSITIONS",
    "STATUSES",
    "TransitionError",
    "assign",
    "close",
    "escalate",
    "reopen",
]

STATUSES = ("open", "under_review", "escalated", "closed")
DISPOSITIONS = ("false_positive", "no_action", "escalated", "reported")

#: status -> the actions allowed from it (for the error message and the docs)
NEXT = {
    "open": ("assign",),
    "under_review": ("assign", "close", "escalate"),
    "escalated": ("assign", "close"),
    "closed": ("reopen",),
}


class TransitionError(StoreConfigError):
    """A case step not allowed from the alert's status, or missing its reason
    (a usage error to the CLI: exit 2, like a bad option)."""


def _refuse(alert_id: str, status: str, action: str) -> TransitionError:
    allowed = ", ".join(NEXT[status])
    return TransitionError(
        f"alert {alert_id} is {status}: cannot {action} it (from {status}: {allowed}; "
        "open -> under_review -> closed/escalated)"
    )


def _step(
    store: Store,
    alert_id: str,
    action: str,
    who: str | None,
    *,
    allowed_from: tuple[str, ...],
    to_status: str | None | Callable[[str], str],
    assignee: Any = ...,
    disposition: Any = ...,
    reason: str | None,
) -> dict[str, Any]:
    """One checked transition; ``to_status`` None keeps the status, ``...``
    leaves a column as it is. Returns the audit entry written."""
    alert_id = store.resolve_id(alert_id)
    who = default_user(who)
    b = store.backend
    try:
        with b.transaction():
            row = b.query("SELECT status FROM dispositions WHERE alert_id = ?", (alert_id,))
            if not row:
                raise StoreDataError(
                    f"alert {alert_id} has no case row: run 'surv-kernel store check'"
                )
            status = row[0][0]
            if status not in allowed_from:
                raise _refuse(alert_id, status, action)
            new = to_status(status) if callable(to_status) else (to_status or status)
            sets, params = (
                ["status = ?", "updated_at = ?", "updated_by = ?"],
                [new, store.now(), who],
            )
            if assignee is not ...:
                sets.append("assignee = ?")
                params.append(assignee)
            if disposition is not ...:
                sets.append("disposition = ?")
                params.append(disposition)
            cur = b.execute(
                f"UPDATE dispositions SET {', '.join(sets)} WHERE alert_id = ? AND status = ?",
                (*params, alert_id, status),
            )
            if cur.rowcount != 1:  # another analyst changed it between our read and write
                raise StoreWriteError(
                    f"alert {alert_id} changed while this step ran; look at "
                    f"'surv-kernel alerts history {alert_id}' and try again"
                )
            entry = {
                "alert_id": alert_id,
                "at": store.now(),
                "who": who,
                "action": action,
                "from_status": status,
                "to_status": new,
                "reason": reason,
            }
            b.execute(
                "INSERT INTO audit_log (alert_id, at, who, action, from_status, to_status, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuple(entry.values()),
            )
    except driver_errors() as exc:
        raise StoreWriteError(f"cannot update alert {alert_id} in {store.url}: {exc}") from None
    return entry


def _need_reason(reason: str | None, action: str) -> str:
    if reason is None or not reason.strip():
        raise TransitionError(f"{action} needs --reason TEXT: the reason is kept in the audit log")
    return reason.strip()


def assign(
    store: Store, alert_id: str, to: str, *, who: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """Give the case to ``to``: open -> under_review, or hand over a case in review."""
    if not to or not to.strip():
        raise TransitionError("assign needs --to NAME")
    return _step(
        store,
        alert_id,
        "assign",
        who,
        allowed_from=("open", "under_review", "escalated"),
        to_status=lambda status: "under_review" if status == "open" else status,
        assignee=to.strip(),
        reason=reason or f"assigned to {to.strip()}",
    )


def close(
    store: Store, alert_id: str, disposition: str, reason: str | None, *, who: str | None = None
) -> dict[str, Any]:
    """Decide the case: closed with ``disposition``, or escalated."""
    if disposition not in DISPOSITIONS:
        raise TransitionError(
            f"disposition must be one of {', '.join(DISPOSITIONS)}, got {disposition!r}"
        )
    reason = _need_reason(reason, "close" if disposition != "escalated" else "escalate")
    if disposition == "escalated":
        return _step(
            store,
            alert_id,
            "escalate",
            who,
            allowed_from=("under_review",),
            to_status="escalated",
            disposition="escalated",
            reason=reason,
        )
    return _step(
        store,
        alert_id,
        "close",
        who,
        allowed_from=("under_review", "escalated"),
        to_status="closed",
        disposition=disposition,
        reason=reason,
    )


def escalate(
    store: Store, alert_id: str, reason: str | None, *, who: str | None = None
) -> dict[str, Any]:
    return close(store, alert_id, "escalated", reason, who=who)


def reopen(
    store: Store, alert_id: str, reason: str | None, *, who: str | None = None
) -> dict[str, Any]:
    """A closed case back to under_review (its disposition is cleared)."""
    reason = _need_reason(reason, "reopen")
    return _step(
        store,
        alert_id,
        "reopen",
        who,
        allowed_from=("closed",),
        to_status="under_review",
        disposition=None,
        reason=reason,
    )
