"""Legacy trade dicts (what ``detect_anomalies`` receives) through the feed
rules: :func:`columns_from_dicts`."""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, overload

import msgspec
import numpy as np

from ..batch import Dictionaries, TradeBatch
from .columns import Run, Sink
from .feed import FeedState
from .quarantine import (
    BAD_NOTIONAL,
    BAD_TIMESTAMP,
    WRONG_TYPE,
    IngestLimits,
    Quarantine,
    log_quarantine,
)
from .tables import RUN_LOCK

log = logging.getLogger("surv_kernel.ingest")  # one logger for the package

# ---------------------------------------------------------------------------
# Legacy dicts
# ---------------------------------------------------------------------------
_DICT_BLOCK = 1 << 14
_DICT_REPR = reprlib.Repr()
_DICT_REPR.maxstring = 120
_DICT_REPR.maxother = 120
_DICT_REPR.maxdict = 12


@overload
def columns_from_dicts(
    trades: Iterable[dict[str, Any]],
    *,
    desk: str | None = ...,
    dictionaries: Dictionaries | None = ...,
    limits: IngestLimits | None = ...,
    return_quarantine: Literal[False] = ...,
) -> TradeBatch: ...
@overload
def columns_from_dicts(
    trades: Iterable[dict[str, Any]],
    *,
    desk: str | None = ...,
    dictionaries: Dictionaries | None = ...,
    limits: IngestLimits | None = ...,
    return_quarantine: Literal[True],
) -> tuple[TradeBatch, Quarantine]: ...
def columns_from_dicts(
    trades: Iterable[dict[str, Any]],
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    return_quarantine: bool = False,
) -> TradeBatch | tuple[TradeBatch, Quarantine]:
    """Columns from legacy trade dicts (what ``detect_anomalies`` receives).

    Same validation, quarantine reasons and duplicate rule as feeds, with the
    legacy path's tolerances, because the received ``detect_anomalies`` never
    read these fields and its callers may omit them:

    - a *missing* ``currency`` is USD (the received ``transform_trade``
      defaulted it so); an unknown one is quarantined;
    - a *missing* ``surveillance_required`` is False (the received
      ``SurveillanceProcessor`` defaulted it so).

    Both defaults are counted in ``Quarantine.defaulted`` and logged once per
    call. Numbers may be Python or NumPy ints/floats (bools are not numbers
    here); strings are never parsed as numbers (the received detector added
    notionals with ``+``, so a string notional never worked there either); a
    NaN or infinite notional/timestamp is ``bad_notional``/``bad_timestamp``;
    a dict holding something that is not JSON-like (an arbitrary object) is
    ``wrong_type``, as is a list entry that is not a dict. Quarantine records
    carry a bounded ``repr`` of the dict and no byte offset.

    How: each block of 16k dicts is encoded to JSON by msgspec (one C pass over
    the dicts, which sit scattered over the heap) and parsed by the feed parser
    while the bytes are in cache, so the rules are literally the feed rules;
    ``max_record_bytes`` applies to a dict's JSON. The parser releases the GIL,
    so block i is parsed on a worker thread while block i+1 is encoded.
    Measured on 1M shuffled dicts: ~1.1 s, against ~1.6 s for one plain list
    comprehension per column with no validation at all.
    Records that fail are quarantined (position = list index), never raised;
    pass ``return_quarantine=True`` to get ``(batch, quarantine)``.
    """
    run = Run(desk, dictionaries, limits)
    q = run.quarantine()
    rows = trades if isinstance(trades, list) else list(trades)
    sink = Sink(run.dictionaries, len(rows))
    unencodable: dict[int, str] = {}
    run.rewrite = _DictRewrite(rows, unencodable)
    # Each block of dicts is encoded to JSON in one C pass (msgspec) and parsed
    # by the feed parser while the bytes are in cache: the dicts are touched
    # once (scattered over the heap, they cost a cache miss per value), the
    # rules are exactly the feed rules, and memory stays a couple of blocks.
    # The parser releases the GIL, so block i is parsed on a worker thread
    # while block i+1 is encoded (in order: one worker, two blocks in flight).
    with RUN_LOCK:
        run.dictionaries.trade_ids.reserve(len(rows))

    def parse(data: bytes, b0: int) -> None:
        state = FeedState(run, legacy=True)
        state.position = b0
        state.process(data, 0, True, sink, q)

    starts = range(0, len(rows), _DICT_BLOCK)
    if len(starts) <= 1:
        for b0 in starts:
            parse(_encode_block(rows, b0, unencodable), b0)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="surv-ingest") as pool:
            previous: Future[None] | None = None
            for b0 in starts:
                future = pool.submit(parse, _encode_block(rows, b0, unencodable), b0)
                if previous is not None:
                    previous.result()
                previous = future
            if previous is not None:
                previous.result()
    q.seen = len(rows)
    log_quarantine(q, desk, "columns_from_dicts")
    batch = sink.batch()
    return (batch, q) if return_quarantine else batch


def _encode_block(rows: list[Any], b0: int, unencodable: dict[int, str]) -> bytes:
    """JSON of ``rows[b0:b0+_DICT_BLOCK]``; a row msgspec cannot encode becomes
    ``null`` (a wrong_type record) and its reason is kept in ``unencodable``."""
    block = rows[b0 : b0 + _DICT_BLOCK]
    try:
        return _DICT_ENCODER.encode(block)
    except Exception:  # any object msgspec cannot encode: find it
        pieces = []
        for i, d in enumerate(block):
            try:
                pieces.append(_DICT_ENCODER.encode(d))
            except Exception as exc:
                unencodable[b0 + i] = f"not a JSON-like trade dict: {type(exc).__name__}: {exc}"
                pieces.append(b"null")
        return b"[" + b",".join(pieces) + b"]"


def _numpy_scalar(value: Any) -> Any:
    """msgspec enc_hook: NumPy scalars are the Python numbers/bools they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


_DICT_ENCODER = msgspec.json.Encoder(enc_hook=_numpy_scalar)


class _DictRewrite:
    """Quarantine records of the dict path describe the dict, not its JSON."""

    __slots__ = ("rows", "unencodable")

    def __init__(self, rows: list[Any], unencodable: dict[int, str]) -> None:
        self.rows = rows
        self.unencodable = unencodable

    def __call__(
        self, position: int, reason: str, detail: str, raw: bytes | str, offset: int | None
    ) -> tuple[str, str, bytes | str, int | None]:
        d = self.rows[position]
        raw = _DICT_REPR.repr(d)
        if position in self.unencodable:
            return WRONG_TYPE, self.unencodable[position], raw, None
        if reason == WRONG_TYPE and "got `null`" in detail and isinstance(d, dict):
            # JSON has no NaN/inf: the encoder wrote null for them
            for field, why in (("notional", BAD_NOTIONAL), ("timestamp", BAD_TIMESTAMP)):
                value = d.get(field)
                if (
                    detail.endswith(f"`$.{field}`")
                    and isinstance(value, (float, np.floating))
                    and not np.isfinite(value)
                ):
                    return why, f"{field} {float(value)!r} is not a finite number", raw, None
        return reason, detail, raw, None
