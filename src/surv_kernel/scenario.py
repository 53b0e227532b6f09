"""Moved to :mod:`surv_kernel.evaluation.scenario`; this name stays importable
(the same module object) and ``python -m surv_kernel.scenario`` still runs it."""

import sys

from .evaluation import scenario as _scenario

if __name__ == "__main__":
    _scenario.main()
else:
    sys.modules[__name__] = _scenario
