"""``surv-kernel evaluate``: the received rule vs the model on labelled days;
with ``--store URL``, the analysts' verdicts instead (``alerts feedback``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from .common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    config_from_args,
    fmt_num,
    fmt_ratio,
    fmt_s,
    positive_int,
    seed_list,
    subcommand,
)


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    ev = subcommand(
        sub,
        "evaluate",
        [model, common],
        help="received rule vs model on labelled synthetic days, as a table",
        description="Generate labelled days (one per seed) and score the received pair rule "
        "and the model against the injected abuse: precision, recall, alerts per detected "
        "episode.",
    )
    ev.add_argument(
        "--seeds",
        type=seed_list,
        default=[0, 1, 2, 3, 4],
        metavar="SEEDS",
        help="seeds like 0-4 or 1,5,9 (default 0-4)",
    )
    ev.add_argument(
        "--mix",
        default="default",
        metavar="NAME",
        help="trader mix: default, institutional-heavy, retail-heavy, sparse-heavy (default: default)",
    )
    ev.add_argument(
        "--traders",
        type=positive_int,
        default=None,
        metavar="N",
        help="traders per day (default: the scenario generator's)",
    )
    ev.add_argument(
        "--no-received",
        action="store_true",
        help="skip the received pair rule (it is O(pairs) and slow on big days)",
    )
    ev.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    ev.add_argument(
        "--store",
        metavar="URL",
        help="instead of synthetic days: precision from the analysts' dispositions in this "
        "alert store, and the suppressed episodes later alerted (the same report as "
        "'surv-kernel alerts feedback'; --json gives JSON lines)",
    )
    ev.add_argument(
        "--by",
        choices=("typology", "desk", "score_band"),
        default="typology",
        help="with --store: group the precision by this (default typology)",
    )
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.received_rule import received_rule
    from ..evaluation.scenario import MIXES, evaluate_alerts, generate_day
    from ..model import detect

    if args.store:
        from .alerts import cmd_feedback

        args.format = "jsonl" if args.json else "table"
        return cmd_feedback(args)
    if args.mix not in MIXES:
        raise CliError(EXIT_USAGE, f"unknown --mix {args.mix!r}; choose one of: {', '.join(MIXES)}")
    config = config_from_args(args)
    rows = []
    for seed in args.seeds:
        knobs: dict[str, Any] = {} if args.traders is None else {"n_traders": args.traders}
        sc = generate_day(
            seed,
            trader_mix=MIXES[args.mix],
            window_minutes=config.window_minutes,
            threshold_multiplier=config.threshold_multiplier,
            **knobs,
        )
        n_traders = len(sc.traders)
        t = time.perf_counter()
        model = evaluate_alerts(detect(sc.batch, config).alerts, sc)
        t_model = time.perf_counter() - t
        old, t_old = None, None
        if not args.no_received:
            t = time.perf_counter()
            old = evaluate_alerts(
                received_rule(sc.trades(), config.window_minutes, config.threshold_multiplier), sc
            )
            t_old = time.perf_counter() - t
        rows.append((seed, len(sc), len(sc.episodes), model, t_model, old, t_old))
        if not args.json:
            if len(rows) == 1:
                print(_eval_header(args, config, n_traders))
            print(_eval_row(str(seed), len(sc), len(sc.episodes), model, t_model, old, t_old))
            sys.stdout.flush()
    if args.json:
        import msgspec

        from ..pipeline.sinks import json_safe

        payload = [
            {
                "seed": seed,
                "trades": n,
                "episodes": eps,
                "model": msgspec.to_builtins(m),
                "model_seconds": tm,
                "received": None if o is None else msgspec.to_builtins(o),
                "received_seconds": to,
            }
            for seed, n, eps, m, tm, o, to in rows
        ]
        print(json.dumps(json_safe(payload), indent=1))
        return EXIT_OK
    print(_eval_mean_row(rows))
    print(
        "prec = alerts naming injected trades / alerts; recall = injected episodes found / "
        "injected; al/ep = true-positive alerts per found episode (1 is ideal; the received "
        "rule reports every pair twice)"
    )
    return EXIT_OK


def _eval_header(args: argparse.Namespace, config: Any, n_traders: int) -> str:
    return (
        f"mix {args.mix}, {n_traders} traders/day, window {config.window_minutes:g} min, "
        f"floor x {config.threshold_multiplier:g}, policy {config.policy}\n"
        f"{'seed':>5} {'trades':>7} {'eps':>4} | {'model':^38} | {'received rule':^38}\n"
        f"{'':>5} {'':>7} {'':>4} | {'prec':>6} {'recall':>6} {'al/ep':>6} {'alerts':>9} "
        f"{'time':>7} | {'prec':>6} {'recall':>6} {'al/ep':>6} {'alerts':>9} {'time':>7}"
    )


def _eval_cells(r: Any, t: float | None) -> str:
    if r is None:
        return f"{'-':>6} {'-':>6} {'-':>6} {'-':>9} {'-':>7}"
    return (
        f"{fmt_ratio(r.precision):>6} {fmt_ratio(r.recall):>6} "
        f"{fmt_num(r.alerts_per_detected_episode):>6} {r.n_alerts:>9,} {fmt_s(t):>7}"
    )


def _eval_row(label: str, n: int, eps: int, model: Any, tm: float, old: Any, to: Any) -> str:
    return f"{label:>5} {n:>7,} {eps:>4} | {_eval_cells(model, tm)} | {_eval_cells(old, to)}"


def _eval_mean_row(rows: list[Any]) -> str:
    """All seeds pooled: precision over every alert, recall over every
    injected episode, alerts per found episode over every found episode."""

    def cells(results: list[Any], times: list[Any]) -> str:
        if any(r is None for r in results):
            return _eval_cells(None, None)
        n_alerts = sum(r.n_alerts for r in results)
        tp = sum(r.true_positives for r in results)
        eps = sum(r.n_episodes for r in results)
        found = sum(r.detected for r in results)
        hits = sum(r.alerts_per_detected_episode * r.detected for r in results if r.detected)
        return (
            f"{fmt_ratio(tp / n_alerts if n_alerts else math.nan):>6} "
            f"{fmt_ratio(found / eps if eps else math.nan):>6} "
            f"{fmt_num(hits / found if found else math.nan):>6} "
            f"{n_alerts:>9,} {fmt_s(sum(times)):>7}"
        )

    n = sum(r[1] for r in rows)
    eps = sum(r[2] for r in rows)
    return (
        f"{'all':>5} {n:>7,} {eps:>4} | {cells([r[3] for r in rows], [r[4] for r in rows])} | "
        f"{cells([r[5] for r in rows], [r[6] for r in rows])}"
    )
