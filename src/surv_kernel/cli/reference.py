"""``surv-kernel reference check PATH``: validate a reference-data directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_BAD_DATA, EXIT_OK, subcommand


def add_parser(sub: Any, common: Any, model: Any, pool: Any) -> None:
    ref = subcommand(
        sub,
        "reference",
        [common],
        help="check a reference-data directory (FX rates by date, floors with effective dates)",
        description="Reference data: a directory with fx_rates.csv (date,currency,usd_per_unit"
        "[,source]: US dollars per unit of the currency on that date) and floors.csv "
        "(asset_class,floor_usd,effective_from[,effective_to][,source]). 'check' lists every "
        "problem (ISO 4217 codes, positive finite rates, no gaps on business days, no "
        "overlapping floor periods) and prints the tables' version.",
    )
    what = ref.add_subparsers(dest="action", metavar="ACTION")
    what.required = True
    check = what.add_parser("check", help="validate PATH; exit 5 if anything is wrong")
    check.add_argument("path", metavar="PATH", help="the reference directory")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from ..reference import check_reference, load_reference

    problems = check_reference(args.path)
    for line in problems:
        print(f"{args.path}: {line}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s): not usable as reference data", file=sys.stderr)
        return EXIT_BAD_DATA
    ref = load_reference(args.path, check=False)
    n_rates = sum(len(s.days) for s in ref.rates.values())
    print(
        f"ok: {len(ref.rates)} currencies ({n_rates:,} rates), {len(ref.floors)} asset classes "
        f"({sum(len(p) for p in ref.floors.values())} floor periods); version {ref.version}"
    )
    return EXIT_OK
