"""The feed scanner's kernels under their first module name.

The jitted code lives in :mod:`surv_kernel.kernels`: ``json_scan`` (the
record parser and element scanner), ``json_number`` (exact decimal ->
binary64), ``hashing`` (span hashes, string tables, the duplicate-id set)
and ``values`` (value checks, seconds -> ns). :mod:`surv_kernel.ingest` and
:mod:`surv_kernel.validate` are their validating wrappers.
"""

from __future__ import annotations

from .kernels.hashing import (
    first_unassigned,
    hash_bytes,
    hash_span,
    hash_spans,
    intern_one,
    intern_spans,
    mark_duplicates,
    rehash_codes,
    rehash_set,
)
from .kernels.json_number import decimal_to_double
from .kernels.json_scan import (
    ARRAY_END,
    BAIL,
    DEFAULTED_CURRENCY,
    DEFAULTED_FLAG,
    DONE,
    EXPECT_ELEMENT,
    EXPECT_FIRST,
    FIELD_NAMES,
    FULL,
    GROW,
    MIN_RECORD_BYTES,
    NEED_MORE,
    OK,
    STR_FIELDS,
    STR_TRADE_ID,
    STR_TRADER_ID,
    TOO_BIG,
    max_nesting,
    parse_records,
    scan_element,
)
from .kernels.values import check_values, seconds_to_ns

__all__ = [
    "ARRAY_END",
    "BAIL",
    "DEFAULTED_CURRENCY",
    "DEFAULTED_FLAG",
    "DONE",
    "EXPECT_ELEMENT",
    "EXPECT_FIRST",
    "FIELD_NAMES",
    "FULL",
    "GROW",
    "MIN_RECORD_BYTES",
    "NEED_MORE",
    "OK",
    "STR_FIELDS",
    "STR_TRADER_ID",
    "STR_TRADE_ID",
    "TOO_BIG",
    "check_values",
    "decimal_to_double",
    "first_unassigned",
    "hash_bytes",
    "hash_span",
    "hash_spans",
    "intern_one",
    "intern_spans",
    "mark_duplicates",
    "max_nesting",
    "parse_records",
    "rehash_codes",
    "rehash_set",
    "scan_element",
    "seconds_to_ns",
]
