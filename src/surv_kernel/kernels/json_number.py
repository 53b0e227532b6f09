"""Exact decimal -> binary64 for the JSON scanner: jitted code only.

Numbers are rounded exactly as ``float(text)`` would (correct rounding, ties to
even): Clinger's fast path when the decimal mantissa fits in 53 bits and the
power of ten is exact, otherwise the Eisel-Lemire algorithm (as in fast_float:
a 128-bit truncated power of five, one or two 64x128-bit products, ties
resolved explicitly). Eisel-Lemire is exact whenever the decimal significand
has at most 19 digits; longer significands, subnormal results and overflow
make :func:`decimal_to_double` return ``ok = False`` (the scanner then bails
to msgspec).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .bits import M9, M32, NOT1, TWO52, TWO53, U0, U1, U3, U9, U32, U63

# ---------------------------------------------------------------------------
# Exact decimal -> binary64
# ---------------------------------------------------------------------------
_POW10 = np.array([10.0**i for i in range(23)], np.float64)  # exact doubles
_SMALLEST_POW10 = -342
_LARGEST_POW10 = 308


def _pow5_table() -> np.ndarray:
    """128-bit approximations of 5**q for q in [-342, 308] (fast_float's table).

    For q >= 0 the truncated top 128 bits of 5**q; for q < 0 the reciprocal
    2**b // 5**-q + 1 (rounded up), truncated to 128 bits. Exact integers, so
    the table is computed rather than pasted.
    """
    table = np.empty((_LARGEST_POW10 - _SMALLEST_POW10 + 1, 2), np.uint64)
    mask = (1 << 64) - 1
    for q in range(_SMALLEST_POW10, _LARGEST_POW10 + 1):
        if q < 0:
            p5 = 5**-q
            z = p5.bit_length()  # smallest z with 2**z >= p5 (p5 is never a power of two)
            if q >= -27:
                c = (1 << (z + 127)) // p5 + 1
            else:
                c = (1 << (2 * z + 128)) // p5 + 1
                while c >= 1 << 128:
                    c >>= 1
        else:
            c = 5**q
            while c < 1 << 127:
                c <<= 1
            while c >= 1 << 128:
                c >>= 1
        table[q - _SMALLEST_POW10, 0] = c >> 64
        table[q - _SMALLEST_POW10, 1] = c & mask
    return table


_POW5 = _pow5_table()


@njit(cache=True, nogil=True, _nrt=False)
def _clz64(x):
    n = 0
    if x <= np.uint64(0x00000000FFFFFFFF):
        n += 32
        x <<= np.uint64(32)
    if x <= np.uint64(0x0000FFFFFFFFFFFF):
        n += 16
        x <<= np.uint64(16)
    if x <= np.uint64(0x00FFFFFFFFFFFFFF):
        n += 8
        x <<= np.uint64(8)
    if x <= np.uint64(0x0FFFFFFFFFFFFFFF):
        n += 4
        x <<= np.uint64(4)
    if x <= np.uint64(0x3FFFFFFFFFFFFFFF):
        n += 2
        x <<= np.uint64(2)
    if x <= np.uint64(0x7FFFFFFFFFFFFFFF):
        n += 1
    return n


@njit(cache=True, nogil=True, _nrt=False)
def _mul128(a, b):
    """The full 128-bit product of two uint64, as (high, low), from 32-bit halves."""
    a_lo = a & M32
    a_hi = a >> U32
    b_lo = b & M32
    b_hi = b >> U32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> U32) + (p1 & M32) + (p2 & M32)  # < 2**34: no overflow
    lo = (p0 & M32) | (mid << U32)  # bits of mid above 32 belong to hi
    hi = p3 + (p1 >> U32) + (p2 >> U32) + (mid >> U32)
    return hi, lo


@njit(cache=True, nogil=True, _nrt=False)
def decimal_to_double(w, q, negative):
    """``(ok, value)`` for the decimal ``w * 10**q`` (``w`` a uint64 of <= 19
    digits), correctly rounded; ``ok`` is False for subnormal or overflowing
    results, which the caller leaves to msgspec."""
    if w == U0:
        return True, (-0.0 if negative else 0.0)
    # Clinger: both operands exact doubles, so one IEEE operation rounds once.
    if -22 <= q <= 22 and w <= TWO53:
        v = float(w)
        v = v / _POW10[-q] if q < 0 else v * _POW10[q]
        return True, (-v if negative else v)
    if q < _SMALLEST_POW10 or q > _LARGEST_POW10:
        return False, 0.0
    lz = _clz64(w)
    w = w << np.uint64(lz)
    idx = q - _SMALLEST_POW10
    hi, lo = _mul128(w, _POW5[idx, 0])
    if (hi & M9) == M9:
        # The truncated product might be one unit short in the bits that
        # decide rounding: add the contribution of the table's low word.
        hi2, _lo2 = _mul128(w, _POW5[idx, 1])
        lo = lo + hi2
        if hi2 > lo:
            hi += U1
    upper = hi >> U63
    shift = upper + U9
    mantissa = hi >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + np.int64(upper) - lz + 1023
    if power2 <= 0:
        return False, 0.0  # subnormal or zero: rare, let msgspec decide
    # An exact halfway case can only occur for 5**q that fit in 64 bits; there
    # round to even instead of up.
    if lo <= U1 and -4 <= q <= 23 and (mantissa & U3) == U1 and (mantissa << shift) == hi:
        mantissa &= NOT1
    mantissa += mantissa & U1
    mantissa >>= U1
    if mantissa >= TWO53:
        mantissa = TWO52
        power2 += 1
    if power2 >= 0x7FF:
        return False, 0.0  # overflow
    v = math.ldexp(float(mantissa), power2 - 1075)  # mantissa holds the hidden bit
    return True, (-v if negative else v)
