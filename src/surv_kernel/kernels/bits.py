"""uint64 constants shared by the byte kernels (Numba folds module globals
into the compiled code, so naming them costs nothing)."""

from __future__ import annotations

import numpy as np

U0 = np.uint64(0)
U1 = np.uint64(1)
U3 = np.uint64(3)
U8 = np.uint64(8)
U9 = np.uint64(9)
U10 = np.uint64(10)
U16 = np.uint64(16)
U24 = np.uint64(24)
U29 = np.uint64(29)
U32 = np.uint64(32)
U33 = np.uint64(33)
U40 = np.uint64(40)
U48 = np.uint64(48)
U56 = np.uint64(56)
U63 = np.uint64(63)
M9 = np.uint64(0x1FF)
M32 = np.uint64(0xFFFFFFFF)
NOT1 = np.uint64(0xFFFFFFFFFFFFFFFE)
TWO52 = np.uint64(1 << 52)
TWO53 = np.uint64(1 << 53)
