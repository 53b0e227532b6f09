"""Structured logging: the JSON formatter and :func:`configure_logging`."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, TextIO

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO-8601), level, logger, message,
    every ``extra=`` field, and the formatted traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(
    level: int | str = "INFO",
    *,
    json_format: bool = True,
    stream: TextIO | None = None,
    logger: str = "surv_kernel",
) -> logging.Handler:
    """Send ``logger``'s records (default: the whole package) to ``stream``
    (default stderr) as JSON lines (or plain text with ``json_format=False``).

    Idempotent: a handler installed by an earlier call is replaced, never
    doubled. Returns the handler.
    """
    target = logging.getLogger(logger)
    for old in list(target.handlers):
        if getattr(old, "_surv_kernel_handler", False):
            target.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler._surv_kernel_handler = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(level)
    return handler
