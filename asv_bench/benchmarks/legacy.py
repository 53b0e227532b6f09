"""The received pair rule (our slow restatement) vs the drop-in detect_anomalies.

Run side by side in one process so the ratio, not the seconds, is the result:
    PYTHONPATH=src:python python asv_bench/benchmarks/legacy.py
or through asv:  cd asv_bench && asv run --python=same --quick -b legacy
"""

import random

import trade_surveillance_pipeline as tsp
from surv_kernel.evaluation.received_rule import received_rule_naive


def legacy_trades(n, seed=0):
    """A day of dict trades as the legacy callers pass them (one currency per trader)."""
    rng = random.Random(seed)
    classes = ["equity", "fixed_income", "derivative"]
    traders = [
        (f"TR{i:03d}", rng.choice(classes), rng.choice(["USD", "EUR", "GBP"])) for i in range(40)
    ]
    start = 1_767_000_000.0
    trades = []
    for k in range(n):
        trader, asset_class, currency = rng.choice(traders)
        trades.append(
            {
                "trade_id": f"T{k:07d}",
                "asset_class": asset_class,
                "notional": round(rng.lognormvariate(13.5, 1.0), 2),
                "currency": currency,
                "trader_id": trader,
                "timestamp": start + rng.uniform(0, 6.5 * 3600),
                "surveillance_required": rng.random() < 0.1,
            }
        )
    return trades


class LegacyDetect:
    params = [2000]
    param_names = ["n_trades"]

    def setup(self, n):
        self.trades = legacy_trades(n)
        tsp.detect_anomalies(self.trades)  # compile/load every kernel path outside the timing

    def time_received_pair_rule(self, n):
        received_rule_naive(self.trades)

    def time_detect_anomalies(self, n):
        tsp.detect_anomalies(self.trades)


if __name__ == "__main__":
    import time

    bench = LegacyDetect()
    bench.setup(2000)
    timings = {}
    for name in ("time_received_pair_rule", "time_detect_anomalies"):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            getattr(bench, name)(2000)
            best = min(best, time.perf_counter() - t0)
        timings[name] = best
        print(f"{name:28s} {best * 1e3:10.1f} ms")
    ratio = timings["time_received_pair_rule"] / timings["time_detect_anomalies"]
    print(f"detect_anomalies is {ratio:.0f}x faster than the received pair rule at 2,000 trades")
