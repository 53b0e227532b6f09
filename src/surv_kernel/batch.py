"""The columnar trade batch: what ingest produces and the kernels consume.

Strings (trader, asset class, currency, desk) become dense integer codes
through :class:`Dictionary`. One :class:`Dictionaries` object lives for a whole
run, so codes from different chunks and desks agree and batches can be
concatenated without re-encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import dtypes


class Dictionary:
    """Interns strings to dense codes ``0..len-1`` in first-seen order."""

    __slots__ = ("_codes", "_values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._codes: dict[str, int] = {}
        self._values: list[str] = []
        for value in values:
            self.code(value)

    def code(self, value: str) -> int:
        """The code of ``value``, assigning the next free one if it is new."""
        code = self._codes.get(value)
        if code is None:
            code = len(self._values)
            self._codes[value] = code
            self._values.append(value)
        return code

    def get(self, value: str) -> int | None:
        """The code of ``value`` or None, without assigning one."""
        return self._codes.get(value)

    def encode(self, values: Iterable[str]) -> np.ndarray:
        """Codes of ``values`` as a ``dtypes.CODE`` array, assigning new codes as needed."""
        codes = self._codes
        code = self.code
        return np.fromiter(
            (c if (c := codes.get(v)) is not None else code(v) for v in values),
            dtype=dtypes.CODE,
        )

    def decode(self, codes: Iterable[int]) -> list[str]:
        values = self._values
        return [values[int(c)] for c in codes]

    def __getitem__(self, code: int) -> str:
        return self._values[int(code)]

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._codes

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self._values)

    def __repr__(self) -> str:
        return f"Dictionary({self._values!r})"


class Dictionaries:
    """The string dictionaries of one run (shared by every batch of the run).

    ``trade_ids`` is the run's set of accepted trade ids, kept by
    :mod:`surv_kernel.ingest` to quarantine duplicates across chunks and desks
    (None until ingest first needs it; see ``surv_kernel.ingest.TradeIdSet``).
    """

    __slots__ = ("asset_class", "currency", "desk", "trade_ids", "trader")

    def __init__(self) -> None:
        self.trader = Dictionary()
        self.asset_class = Dictionary()
        self.currency = Dictionary()
        self.desk = Dictionary()
        self.trade_ids: Any = None


#: The numeric columns of a TradeBatch and their dtypes, in order (the trade
#: ids are an object column beside them); every writer of columns uses it.
COLUMNS = {
    "timestamp_ns": dtypes.TIMESTAMP,
    "notional_usd": dtypes.NOTIONAL,
    "notional": dtypes.NOTIONAL,
    "trader": dtypes.CODE,
    "asset_class": dtypes.CODE,
    "currency": dtypes.CODE,
    "desk": dtypes.CODE,
    "surveillance_required": np.dtype(np.bool_),
}


class TradeBatch:
    """Trades as aligned NumPy columns.

    Columns (all the same length, row ``i`` is one trade):

    - ``timestamp_ns`` int64, nanoseconds since the epoch
    - ``notional_usd`` float64, converted with the FX table at ingest
    - ``notional`` float64, as it arrived, in ``currency``
    - ``trader``, ``asset_class``, ``currency``, ``desk`` int32 codes into
      ``dictionaries``
    - ``surveillance_required`` bool
    - ``trade_id`` the trade ids (a NumPy object array of str), the way back
      from a row to the trade for alerts
    """

    __slots__ = (*COLUMNS, "dictionaries", "trade_id")

    def __init__(
        self,
        *,
        timestamp_ns: np.ndarray,
        notional_usd: np.ndarray,
        trader: np.ndarray,
        asset_class: np.ndarray,
        trade_id: Sequence[str] | np.ndarray,
        dictionaries: Dictionaries,
        notional: np.ndarray | None = None,
        currency: np.ndarray | None = None,
        desk: np.ndarray | None = None,
        surveillance_required: np.ndarray | None = None,
    ) -> None:
        n = len(timestamp_ns)
        if notional is None:
            notional = notional_usd
        if currency is None:
            currency = np.full(n, dictionaries.currency.code("USD"), dtypes.CODE)
        if desk is None:
            desk = np.full(n, dictionaries.desk.code(""), dtypes.CODE)
        if surveillance_required is None:
            surveillance_required = np.zeros(n, np.bool_)
        given = {
            "timestamp_ns": timestamp_ns,
            "notional_usd": notional_usd,
            "notional": notional,
            "trader": trader,
            "asset_class": asset_class,
            "currency": currency,
            "desk": desk,
            "surveillance_required": surveillance_required,
        }
        for name, dtype in COLUMNS.items():
            column = np.ascontiguousarray(given[name], dtype=dtype)
            if column.ndim != 1 or len(column) != n:
                raise ValueError(
                    f"column {name!r} has shape {column.shape}; every column must be 1-D "
                    f"with the {n} rows of timestamp_ns"
                )
            setattr(self, name, column)
        ids = np.asarray(trade_id, dtype=object)
        if ids.shape != (n,):
            raise ValueError(f"trade_id has shape {ids.shape}; expected ({n},)")
        self.trade_id = ids
        self.dictionaries = dictionaries

    def __len__(self) -> int:
        return len(self.timestamp_ns)

    def __repr__(self) -> str:
        return f"<TradeBatch {len(self)} trades>"

    @classmethod
    def empty(cls, dictionaries: Dictionaries | None = None) -> TradeBatch:
        d = dictionaries if dictionaries is not None else Dictionaries()
        return cls(
            timestamp_ns=np.empty(0, dtypes.TIMESTAMP),
            notional_usd=np.empty(0, dtypes.NOTIONAL),
            trader=np.empty(0, dtypes.CODE),
            asset_class=np.empty(0, dtypes.CODE),
            currency=np.empty(0, dtypes.CODE),
            desk=np.empty(0, dtypes.CODE),
            trade_id=np.empty(0, object),
            dictionaries=d,
        )

    def take(self, rows: np.ndarray) -> TradeBatch:
        """The rows ``rows`` (an index array or boolean mask) as a new batch."""
        cols = {name: getattr(self, name)[rows] for name in COLUMNS}
        return TradeBatch(trade_id=self.trade_id[rows], dictionaries=self.dictionaries, **cols)

    @classmethod
    def concat(cls, batches: Sequence[TradeBatch]) -> TradeBatch:
        """Concatenate batches of one run (they must share their Dictionaries)."""
        if not batches:
            return cls.empty()
        d = batches[0].dictionaries
        if any(b.dictionaries is not d for b in batches):
            raise ValueError(
                "batches from different runs cannot be concatenated: their dictionary codes "
                "disagree; decode them with one shared Dictionaries object"
            )
        cols = {name: np.concatenate([getattr(b, name) for b in batches]) for name in COLUMNS}
        ids = np.concatenate([b.trade_id for b in batches])
        return cls(trade_id=ids, dictionaries=d, **cols)

    # Readable views for alerts and reports.
    def trader_ids(self, rows: np.ndarray | None = None) -> list[str]:
        codes = self.trader if rows is None else self.trader[rows]
        return self.dictionaries.trader.decode(codes)

    def asset_classes(self, rows: np.ndarray | None = None) -> list[str]:
        codes = self.asset_class if rows is None else self.asset_class[rows]
        return self.dictionaries.asset_class.decode(codes)
