"""The one place where column dtypes are chosen.

Everything crossing into a kernel is converted to these at the boundary
(ingest, ``columns_from_dicts``, the public wrappers), so kernels never see
object arrays, Python ints or mixed precisions.
"""

import numpy as np

#: Trade time: integer nanoseconds since the Unix epoch (UTC). Integers make
#: window boundaries exact: ``t - W <= s`` never suffers float rounding.
TIMESTAMP = np.dtype(np.int64)

#: Notional amounts in US dollars after FX conversion at ingest.
NOTIONAL = np.dtype(np.float64)

#: Dense dictionary codes for trader, asset class, currency and desk.
CODE = np.dtype(np.int32)

#: Per-window trade counts.
COUNT = np.dtype(np.int64)

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
