"""Small hand-written TradeBatches for the model and stream tests."""

import numpy as np

from surv_kernel.batch import Dictionaries, TradeBatch


def make_batch(rows, dictionaries=None):
    """rows: (trade_id, trader, asset_class, desk, ts_ns, usd)"""
    d = dictionaries if dictionaries is not None else Dictionaries()
    ids, traders, acs, desks, ts, usd = zip(*rows, strict=True) if rows else ([],) * 6
    return TradeBatch(
        timestamp_ns=np.array(ts, np.int64),
        notional_usd=np.array(usd, np.float64),
        trader=d.trader.encode(traders),
        asset_class=d.asset_class.encode(acs),
        desk=d.desk.encode(desks),
        trade_id=np.array(ids, object),
        dictionaries=d,
    )
