"""Numba kernels: jitted code only, one module per job.

Every function takes arrays and scalars (no ``None``, no objects, no
defaults) and writes into preallocated outputs; validation, dtype conversion
and allocation live in the wrappers that call them (:mod:`surv_kernel.windows`,
:mod:`surv_kernel.model`, :mod:`surv_kernel.ingest`). Their slow,
obviously-correct twins live in ``tests/naive.py``.

- :mod:`.windows`: counting sort by group, time sort inside groups, window sums;
- :mod:`.stats`: per-group median and MAD by selection;
- :mod:`.scoring`: the alert model's passes over window sums (floor test,
  thinning, the breach test);
- :mod:`.json_scan`: the feed parser (records straight into columns) and the
  element scanner; :mod:`.json_number`: exact decimal -> binary64;
  :mod:`.hashing`: span hashes, string tables, the duplicate trade-id set;
  :mod:`.values`: the value checks and seconds -> ns every reader shares;
  :mod:`.bits`: their uint64 constants.
"""
