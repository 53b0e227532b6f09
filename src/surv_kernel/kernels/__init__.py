"""Numba kernels: jitted code only, one module per job.

Every function takes arrays and scalars (no ``None``, no objects, no
defaults) and writes into preallocated outputs; validation, dtype conversion
and allocation live in the wrappers that call them (:mod:`surv_kernel.windows`,
:mod:`surv_kernel.model`, :mod:`surv_kernel.ingest`). Their slow,
obviously-correct twins live in ``tests/naive.py``.

- :mod:`.windows`: counting sort by group, time sort inside groups, window sums;
- :mod:`.stats`: per-group median and MAD by selection;
- :mod:`.scoring`: the alert model's passes over window sums (floor test,
  thinning, the breach test).
"""
