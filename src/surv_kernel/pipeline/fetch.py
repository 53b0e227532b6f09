"""Fetching a desk feed: the legacy ``_api_call`` black box, with retries.

The received ``fetch_trade_feed`` printed a failure and returned None, which
became "no anomalies" downstream. Here a feed that cannot be fetched raises
:class:`FeedUnavailableError` after a capped, jittered exponential backoff on
errors worth retrying, and every attempt is logged and counted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import SurveillanceError
from ..observability import MetricsRegistry, metrics

__all__ = [
    "DEFAULT_BASE_DELAY",
    "DEFAULT_MAX_DELAY",
    "RETRYABLE_ERRORS",
    "FeedUnavailableError",
    "TransientFeedError",
    "fetch_trade_feed",
]

log = logging.getLogger(__name__)

#: First backoff cap in seconds; attempt k sleeps uniform(0, min(max, base * 2**(k-1))).
DEFAULT_BASE_DELAY = 0.5
#: No backoff sleep is longer than this (seconds).
DEFAULT_MAX_DELAY = 30.0


class TransientFeedError(SurveillanceError):
    """Raise from a feed client to say "this may work if tried again"."""


#: Errors worth another attempt: network and OS-level failures (ConnectionError,
#: TimeoutError and socket errors are all OSError) and an explicit
#: TransientFeedError. Anything else (TypeError, ValueError, KeyError, ...) is a
#: bug or a permanent condition; retrying it only delays the alarm.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (TransientFeedError, OSError)


class FeedUnavailableError(SurveillanceError, RuntimeError):
    """A desk's feed could not be fetched; the desk was NOT analysed.

    Never read this as "no anomalies": the desk's alerts are unknown.
    """

    def __init__(self, desk_id: Any, attempts: int, last_error: BaseException | None) -> None:
        self.desk_id = desk_id
        self.attempts = attempts
        self.last_error = last_error
        detail = f"{type(last_error).__name__}: {last_error}" if last_error is not None else "-"
        super().__init__(
            f"desk {desk_id!r}: feed unavailable after {attempts} attempt(s); last error {detail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.desk_id, self.attempts, self.last_error))


_RNG = random.Random()
_RNG_LOCK = threading.Lock()


def _jitter(rng: Any, cap: float) -> float:
    if rng is None:
        with _RNG_LOCK:  # random.Random is not documented as thread-safe
            return _RNG.random() * cap
    return float(rng.random()) * cap


def fetch_trade_feed(
    desk_id: Any,
    max_retries: int = 3,
    *,
    api_call: Callable[[Any], Any],
    sleep: Callable[[float], Any] | None = None,
    rng: Any = None,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float | None = None,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    registry: MetricsRegistry | None = None,
) -> Any:
    """Call ``api_call(desk_id)`` up to ``max_retries`` times; return its feed.

    ``max_retries`` is the number of attempts, as in the received function.
    After failed attempt k (not after the last) it sleeps a full-jitter
    backoff ``uniform(0, min(max_delay, base_delay * 2**(k-1)))``: the random
    spread stops six desks retrying in lockstep against a struggling feed
    service, the cap bounds one wait. Only ``retry_on`` errors are retried;
    anything else is logged and re-raised at once (a bug does not get three
    tries). ``timeout_s`` is an optional budget for all attempts and sleeps:
    a sleep that would cross it is not taken.

    Raises :class:`FeedUnavailableError` (chained to the last error) when the
    attempts or the budget are spent. ``sleep``, ``rng`` (anything with
    ``.random()``) and ``clock`` are injectable so tests never really sleep.
    """
    if max_retries < 1:
        raise ValueError(f"max_retries is the number of attempts and must be >= 1: {max_retries}")
    if base_delay < 0 or max_delay < 0:
        raise ValueError(f"backoff delays must be >= 0: base {base_delay}, max {max_delay}")
    reg = registry if registry is not None else metrics
    if sleep is None:  # looked up per call, so a test can replace time.sleep
        sleep = time.sleep
    desk = str(desk_id)
    start = clock()
    last_error: BaseException | None = None
    for attempt in range(1, max_retries + 1):
        ctx = {"desk": desk, "attempt": attempt, "max_attempts": max_retries}
        try:
            feed = api_call(desk_id)
        except retry_on as exc:
            last_error = exc
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="retryable").inc()
            if attempt == max_retries:
                break
            delay = _jitter(rng, min(max_delay, base_delay * 2.0 ** (attempt - 1)))
            if timeout_s is not None and (clock() - start) + delay > timeout_s:
                reg.counter("surv_feed_failures_total", desk=desk, reason="budget").inc()
                log.error(
                    "feed for desk %s unavailable: the %.3gs budget is spent after attempt %d",
                    desk,
                    timeout_s,
                    attempt,
                    extra={**ctx, "event": "fetch_failed", "reason": "budget", "error": repr(exc)},
                )
                raise FeedUnavailableError(desk_id, attempt, exc) from exc
            reg.counter("surv_feed_retries_total", desk=desk).inc()
            log.warning(
                "feed for desk %s failed on attempt %d/%d (%s); retrying in %.3fs",
                desk,
                attempt,
                max_retries,
                type(exc).__name__,
                delay,
                extra={**ctx, "event": "fetch_retry", "delay_s": delay, "error": repr(exc)},
            )
            sleep(delay)
        except Exception as exc:
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="fatal").inc()
            reg.counter("surv_feed_failures_total", desk=desk, reason="fatal").inc()
            log.error(
                "feed for desk %s failed on attempt %d with an error not worth retrying: %r",
                desk,
                attempt,
                exc,
                extra={**ctx, "event": "fetch_failed", "reason": "fatal", "error": repr(exc)},
            )
            raise
        else:
            elapsed = clock() - start
            reg.counter("surv_feed_attempts_total", desk=desk, outcome="ok").inc()
            reg.histogram("surv_feed_fetch_seconds", desk=desk).observe(max(elapsed, 0.0))
            size = len(feed) if isinstance(feed, (str, bytes, bytearray)) else None
            log.info(
                "feed for desk %s fetched in %.3fs (attempt %d)",
                desk,
                elapsed,
                attempt,
                extra={**ctx, "event": "fetch_ok", "seconds": elapsed, "size": size},
            )
            return feed
    reg.counter("surv_feed_failures_total", desk=desk, reason="exhausted").inc()
    log.error(
        "feed for desk %s unavailable after %d attempt(s): %r",
        desk,
        max_retries,
        last_error,
        extra={
            "desk": desk,
            "attempt": max_retries,
            "max_attempts": max_retries,
            "event": "fetch_failed",
            "reason": "exhausted",
            "error": repr(last_error),
        },
    )
    raise FeedUnavailableError(desk_id, max_retries, last_error) from last_error
