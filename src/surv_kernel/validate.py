"""The one validation step for trade columns from any reader.

:func:`validate_columns` takes the seven schema fields as columns (NumPy
arrays, masked arrays, sequences of str, or :class:`Utf8Column` spans over an
Arrow-style UTF-8 buffer) and applies exactly the rules a JSON feed gets
(:mod:`surv_kernel.ingest`): the same value checks in the same order, the same
quarantine reasons and details, the same duplicate-id rule across the run's
:class:`~surv_kernel.batch.Dictionaries`, the same FX conversion and
interning. The Arrow, Parquet, CSV and DataFrame readers of
:mod:`surv_kernel.frames` only parse into columns and call it; NumPy is the
only dependency here, so ``import surv_kernel`` never pulls in pyarrow.

Kinds
-----
A column of a kind no rule accepts (a string timestamp, a numeric trade id,
an integer flag) is one :class:`ColumnError` naming the column, its kind and
the accepted kinds, raised before any row is looked at: never a batch whose
every row is quarantined as ``wrong_type``. Accepted:

=========================  ==================================================
``trade_id``, ``asset_class``,  strings (``Utf8Column``, object arrays of str,
``currency``, ``trader_id``     NumPy ``U``/``T`` arrays, lists of str)
``notional``               floats or integers (converted to float64, as a
                           JSON integer is)
``timestamp``              float or integer epoch seconds; integers in
                           ``timestamp_unit`` (``"s"`` default, ``"ms"``,
                           ``"us"``, ``"ns"``); ``datetime64`` of any unit.
                           Naive datetimes are taken as UTC (no offset is
                           applied); a timezone-aware column from Arrow or a
                           DataFrame is an instant and converts exactly
``surveillance_required``  booleans
=========================  ==================================================

Every column may hold nulls (masked values, ``None``, ``NaT``, Arrow nulls):
a null is what a JSON ``null`` is, a ``wrong_type`` record whose detail is
msgspec's ("Expected `float`, got `null` - at `$.notional`", the first null
field in schema order, as msgspec reports the first bad field of a record
written in schema order). A missing column is a :class:`ColumnError`
(a frame's schema is known before its rows, so one message says it all);
extra columns are ignored, as extra JSON fields are.

Timestamps
----------
Float seconds become nanoseconds exactly as the JSON path converts them
(``feedscan.seconds_to_ns``: the nearest nanosecond of the float). Integer
seconds are exact floats below 2**53, so they take the same path. Integers
in ms/us/ns and datetimes are already exact: they are range-checked as
integers (bounds from ``IngestLimits`` computed with ``Fraction``, so no
float rounding decides a boundary case) and scaled to ns without passing
through a float, which could not hold a nanosecond near 1.7e18.

Positions and raw text
----------------------
A quarantine record's ``position`` is the row's index in the input
(``first_position`` + row: a reader streaming row groups passes the rows
before the group), ``offset`` is None (a column has no byte offset) and
``raw`` is the row as a JSON object in schema order (bounded by
``IngestLimits.raw_bytes``): for the same trades written as JSON by msgspec,
the excerpt is the same text. ``record_too_large`` does not apply (a row has
no record text to bound; memory follows the caller's batch size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import msgspec
import numpy as np

from .batch import Dictionaries, TradeBatch
from .errors import DataError
from .ingest import WRONG_TYPE, FeedError, IngestLimits, Quarantine, ingest_columns
from .schema import FIELDS

__all__ = [
    "ACCEPTED_KINDS",
    "STRING_FIELDS",
    "TIMESTAMP_UNITS",
    "ColumnError",
    "Utf8Column",
    "kind_error",
    "validate_columns",
]

#: The string fields, in schema order.
STRING_FIELDS = ("trade_id", "asset_class", "currency", "trader_id")

#: What each field accepts, for messages (see the module doc).
ACCEPTED_KINDS: Mapping[str, str] = {
    "trade_id": "strings",
    "asset_class": "strings",
    "notional": "floats or integers",
    "currency": "strings",
    "trader_id": "strings",
    "timestamp": (
        "float or integer epoch seconds, integers in timestamp_unit (s, ms, us, ns), "
        "or datetimes (timezone-aware, or naive = UTC)"
    ),
    "surveillance_required": "booleans",
}

#: Integer timestamp units -> units per second.
TIMESTAMP_UNITS: Mapping[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

# the JSON type msgspec names for a null in each field
_JSON_KIND = {
    "trade_id": "str",
    "asset_class": "str",
    "notional": "float",
    "currency": "str",
    "trader_id": "str",
    "timestamp": "float",
    "surveillance_required": "bool",
}
_ENCODER = msgspec.json.Encoder()


class ColumnError(FeedError, DataError):
    """A column is missing, of a kind no rule accepts, or not as long as the
    others: the input as a whole is unusable (a feed error: the desk fails,
    loudly, instead of quarantining every row)."""


def kind_error(field: str, kind: str, hint: str = "") -> ColumnError:
    """The one error for a column of the wrong kind (readers use it too)."""
    return ColumnError(
        f"column {field!r} holds {kind}; accepted: {ACCEPTED_KINDS[field]}"
        + (hint and f" ({hint})")
    )


# ---------------------------------------------------------------------------
# String columns
# ---------------------------------------------------------------------------
class Utf8Column:
    """A string column in Arrow's layout: the UTF-8 bytes of every value back
    to back in ``data`` (uint8), value ``i`` at ``data[offsets[i]:offsets[i+1]]``
    (``offsets`` int64, one more than the rows), ``valid`` False for a null
    (None: no nulls). A reader wraps Arrow's buffers without copying them.
    ``decode``, if given, returns every value as an object array of str (None
    for nulls): a reader whose library makes the Python strings faster than
    :meth:`strings` can (pyarrow's ``to_numpy``) hands that over."""

    __slots__ = ("_decode", "_strings", "data", "offsets", "valid")

    def __init__(
        self,
        data: np.ndarray,
        offsets: np.ndarray,
        valid: np.ndarray | None = None,
        decode: Callable[[], np.ndarray] | None = None,
    ):
        self._decode = decode
        self.data = np.asarray(data, np.uint8)
        self.offsets = np.asarray(offsets, np.int64)
        if self.offsets.ndim != 1 or self.offsets.shape[0] < 1:
            raise ValueError("offsets must be 1-D with one entry more than the rows")
        self.valid = None if valid is None else np.asarray(valid, np.bool_)
        if self.valid is not None and self.valid.shape[0] != len(self):
            raise ValueError("valid must have one entry per row")
        self._strings: np.ndarray | None = None

    @classmethod
    def from_strings(cls, field: str, values: Sequence[Any]) -> Utf8Column:
        """From Python values: each a str or None (null); anything else is a
        :class:`ColumnError` naming ``field``."""
        encoded: list[bytes] = []
        valid = np.ones(len(values), np.bool_)
        for i, v in enumerate(values):
            if isinstance(v, str):
                encoded.append(v.encode("utf-8", "surrogatepass"))
            elif v is None:
                encoded.append(b"")
                valid[i] = False
            else:
                raise kind_error(field, f"a {type(v).__name__} at row {i} ({v!r})")
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), np.uint8)
        return cls(data, offsets, None if valid.all() else valid)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(buf, starts, lengths)`` as ingest's kernels take them."""
        return self.data, self.offsets[:-1], np.diff(self.offsets)

    def value(self, row: int) -> str | None:
        if self.valid is not None and not self.valid[row]:
            return None
        s, e = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.data[s:e].tobytes().decode("utf-8", "replace")

    def strings(self) -> np.ndarray:
        """Every value as an object array of str (None for nulls), decoded once.

        One decode and one split in C instead of a Python call per value: the
        bytes are copied once into a buffer with a newline after each value,
        which is decoded and split. If a value holds a newline itself the
        split miscounts, and the values are decoded one by one (rare)."""
        if self._strings is not None:
            return self._strings
        if self._decode is not None:
            self._strings = np.asarray(self._decode(), object)
            if self._strings.shape != (len(self),):
                raise ValueError("decode() must return one value per row")
            return self._strings
        n = len(self)
        out = np.empty(n, object)
        if n:
            off = self.offsets
            lengths = np.diff(off)
            sep = np.cumsum(lengths + 1) - 1  # where each value's newline goes
            joined = np.empty(int(sep[-1]) + 1, np.uint8)
            is_byte = np.ones(joined.shape[0], np.bool_)
            is_byte[sep] = False
            joined[is_byte] = self.data[off[0] : off[-1]]
            joined[sep] = 10
            parts = joined[:-1].tobytes().decode("utf-8", "replace").split("\n")
            if len(parts) == n:
                out[:] = parts
            else:
                out[:] = [self.value(i) or "" for i in range(n)]
            if self.valid is not None:
                out[~self.valid] = None
        self._strings = out
        return out


def _string_column(field: str, col: Any) -> Utf8Column:
    if isinstance(col, Utf8Column):
        return col
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "OUT":
            return Utf8Column.from_strings(field, col.tolist())
        raise kind_error(field, f"a NumPy {col.dtype} array")
    if isinstance(col, (list, tuple)):
        return Utf8Column.from_strings(field, col)
    raise kind_error(field, f"a {type(col).__name__}")


# ---------------------------------------------------------------------------
# Numeric, timestamp and flag columns: (values, valid or None)
# ---------------------------------------------------------------------------
def _as_array(field: str, col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The column's values and its validity (None: no nulls)."""
    if isinstance(col, Utf8Column):
        raise kind_error(field, "strings")
    if isinstance(col, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(col)
        # any fill will do (masked rows are skipped); a zero of the dtype
        # itself, because datetime64 has no unitless zero
        zero = np.zeros(1, col.dtype)[0]
        values = col.filled(zero) if col.dtype.kind in "fiubM" else col.data
        return np.asarray(values), (~mask if mask.any() else None)
    if isinstance(col, (list, tuple)):
        # value by value, never np.asarray: it would make [1, True] ints
        return _objects(field, list(col))
    if not isinstance(col, np.ndarray):
        raise kind_error(field, f"a {type(col).__name__}")
    values = col
    if values.dtype.kind == "O":
        return _objects(field, values.tolist())
    if values.ndim != 1:
        raise ColumnError(f"column {field!r} has shape {values.shape}; columns must be 1-D")
    return values, None


def _objects(field: str, items: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Python values with None for nulls (a list, an object array): all bools,
    all ints, or numbers become a typed array and its validity. A column that
    mixes kinds (a bool among numbers, a str) is one error: a per-value type
    rule would quarantine rows by how the caller happened to build the list."""
    valid = np.fromiter((v is not None for v in items), np.bool_, len(items))
    present = [v for v in items if v is not None]
    kinds = {type(v) for v in present}
    if not present:  # all null (an empty or all-missing DataFrame column often is)
        dtype: Any = np.bool_ if field == "surveillance_required" else np.float64
    elif kinds <= {bool, np.bool_}:
        dtype = np.bool_
    elif kinds <= {int, np.int64, np.int32}:
        dtype = np.int64
    elif kinds <= {int, float, np.int64, np.int32, np.float64, np.float32}:
        dtype = np.float64
    else:
        names = ", ".join(sorted(t.__name__ for t in kinds))
        raise kind_error(field, f"Python objects of mixed or other kinds ({names})")
    fill = dtype(0)
    try:
        values = np.array([fill if v is None else v for v in items], dtype)
    except OverflowError:  # an int beyond int64
        values = np.array([fill if v is None else v for v in items], np.float64)
    return values, (None if valid.all() else valid)


def _number_column(field: str, col: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(float64 values, valid, the values as given for raw excerpts)."""
    values, valid = _as_array(field, col)
    if values.dtype.kind not in "fiu":
        what = "booleans" if values.dtype.kind == "b" else f"{values.dtype} values"
        hint = "bools are not numbers here, as in JSON feeds" if values.dtype.kind == "b" else ""
        raise kind_error(field, what, hint)
    return values.astype(np.float64, copy=False), valid, values


def _bool_column(field: str, col: Any) -> tuple[np.ndarray, np.ndarray | None]:
    values, valid = _as_array(field, col)
    if values.dtype.kind != "b":
        raise kind_error(field, f"{values.dtype} values", "no coercion, as in JSON feeds")
    return values, valid


class _Times:
    """A timestamp column for ingest: float seconds for the range check and
    messages, exact ns when the input was integers or datetimes."""

    __slots__ = ("given", "ns", "seconds", "valid")

    def __init__(self, seconds, ns, valid, given):  # type: ignore[no-untyped-def]
        self.seconds = seconds
        self.ns = ns
        self.valid = valid
        self.given = given


def _timestamp_column(col: Any, unit: str, limits: IngestLimits) -> _Times:
    values, valid = _as_array("timestamp", col)
    kind = values.dtype.kind
    if kind == "f":
        return _Times(values.astype(np.float64, copy=False), None, valid, values)
    if kind in "iu" and unit == "s":
        # whole seconds: exact as floats (below 2**53), so the JSON path's
        # conversion and messages apply unchanged
        return _Times(values.astype(np.float64), None, valid, values)
    if kind in "iu":
        per_second = TIMESTAMP_UNITS[unit]
        ints = values
    elif kind == "M":
        dt_unit, count = np.datetime_data(values.dtype)
        if count != 1 or dt_unit not in TIMESTAMP_UNITS:
            raise kind_error("timestamp", f"datetime64[{count}{dt_unit}]", "use s, ms, us or ns")
        per_second = TIMESTAMP_UNITS[dt_unit]
        ints = values.view(np.int64)
        nat = ints == np.iinfo(np.int64).min  # NaT is a null
        if nat.any():
            valid = ~nat if valid is None else valid & ~nat
    else:
        what = "strings" if kind in "OUST" else f"{values.dtype} values"
        raise kind_error(
            "timestamp", what, "parse them first, e.g. polars str.to_datetime or pd.to_datetime"
        )
    if ints.dtype == np.uint64:  # beyond int64 is beyond any accepted time
        ints = np.minimum(ints, np.iinfo(np.int64).max)
    ints = ints.astype(np.int64, copy=False)
    # accepted: min_timestamp <= v / per_second < max_timestamp, decided on
    # integers (exact bounds) so that no float rounding judges a boundary row
    lo = _ceil(Fraction(limits.min_timestamp) * per_second)
    hi = _ceil(Fraction(limits.max_timestamp) * per_second)
    inside = (ints >= lo) & (ints < hi)
    seconds = ints / float(per_second)
    # the float seconds only serve check_values and messages: where their
    # rounding (within a microsecond of a bound) disagrees with the exact
    # test, pin them to a bound on the exact test's side
    float_inside = (seconds >= limits.min_timestamp) & (seconds < limits.max_timestamp)
    seconds[inside & ~float_inside] = limits.min_timestamp
    seconds[~inside & float_inside] = limits.max_timestamp
    # rows outside the bounds are quarantined, so only inside rows need ns
    # (and only they are sure not to overflow int64 nanoseconds)
    ns = np.where(inside, ints, 0) * (1_000_000_000 // per_second)
    return _Times(seconds, ns, valid, ints)


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


# ---------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------
def validate_columns(
    columns: Mapping[str, Any],
    *,
    desk: str | None = None,
    dictionaries: Dictionaries | None = None,
    limits: IngestLimits | None = None,
    timestamp_unit: str = "s",
    first_position: int = 0,
) -> tuple[TradeBatch, Quarantine]:
    """Validate trade columns into a :class:`TradeBatch` and its quarantine.

    ``columns`` maps each schema field (``surv_kernel.schema.FIELDS``) to a
    column (see the module doc for the accepted kinds; extra keys are
    ignored). ``dictionaries`` is the run's (pass the same one for every
    batch of a run: codes agree and a trade id accepted earlier makes a later
    copy a ``duplicate_trade_id``); ``first_position`` numbers the rows in
    quarantine records (the rows of the input before this batch).

    Raises :class:`ColumnError` for a missing column, a column of a kind no
    rule accepts or columns of different lengths.
    """
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise ValueError(
            f"timestamp_unit must be one of {', '.join(TIMESTAMP_UNITS)}, got {timestamp_unit!r}"
        )
    missing = [f for f in FIELDS if f not in columns]
    if missing:
        raise ColumnError(
            f"missing column(s) {', '.join(missing)}: a trade needs {', '.join(FIELDS)} "
            f"(given: {', '.join(map(str, columns)) or 'none'})"
        )
    lim = limits if limits is not None else IngestLimits()
    strings = {f: _string_column(f, columns[f]) for f in STRING_FIELDS}
    notional, notional_valid, notional_given = _number_column("notional", columns["notional"])
    times = _timestamp_column(columns["timestamp"], timestamp_unit, lim)
    flags, flags_valid = _bool_column("surveillance_required", columns["surveillance_required"])
    lengths = {f: len(strings[f]) for f in STRING_FIELDS}
    lengths.update(
        notional=len(notional), timestamp=len(times.seconds), surveillance_required=len(flags)
    )
    if len(set(lengths.values())) > 1:
        raise ColumnError(f"columns of different lengths: {lengths}")
    n = lengths["trade_id"]
    valid = {f: strings[f].valid for f in STRING_FIELDS}
    valid.update(notional=notional_valid, timestamp=times.valid, surveillance_required=flags_valid)
    d = dictionaries if dictionaries is not None else Dictionaries()
    if n == 0:
        return TradeBatch.empty(d), Quarantine(max_records=lim.max_quarantine_records)

    given = {
        "notional": notional_given,
        "timestamp": times.given,
        "surveillance_required": flags,
    }

    def raw_of(row: int) -> bytes:
        record: dict[str, Any] = {}
        for f in FIELDS:
            v = valid[f]
            if v is not None and not v[row]:
                record[f] = None
            elif f in strings:
                record[f] = strings[f].value(row)
            else:
                record[f] = given[f][row].item()
        return _ENCODER.encode(record)

    # a null is a JSON null: wrong_type for the first null field in schema order,
    # with the row's trade id when it has one (as the JSON path keeps a string id)
    ids = strings["trade_id"]
    skip = np.zeros(n, np.bool_)
    earlier: list[tuple[int, str, str, bytes | str, int | None, str | None]] = []
    for f in FIELDS:
        v = valid[f]
        if v is None:
            continue
        null = ~v & ~skip
        if null.any():
            for row in np.flatnonzero(null).tolist():
                detail = f"Expected `{_JSON_KIND[f]}`, got `null` - at `$.{f}`"
                earlier.append(
                    (first_position + row, WRONG_TYPE, detail, raw_of(row), None, ids.value(row))
                )
            skip |= null
    return ingest_columns(
        desk=desk,
        dictionaries=d,
        limits=lim,
        positions=np.arange(first_position, first_position + n, dtype=np.int64),
        strings={f: strings[f].spans() for f in STRING_FIELDS},
        trade_ids=lambda rows: ids.strings() if rows is None else ids.strings()[rows],
        notional=np.ascontiguousarray(notional),
        timestamp=np.ascontiguousarray(times.seconds, np.float64),
        timestamp_ns=times.ns,
        surveillance=np.ascontiguousarray(flags),
        skip=skip,
        earlier=earlier,
        raw_of=raw_of,
    )
