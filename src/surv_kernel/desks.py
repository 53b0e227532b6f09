"""Moved to :mod:`surv_kernel.legacy.desks`; this name stays importable (the
same module object, so attributes set here are set there)."""

import sys

from .legacy import desks as _desks

sys.modules[__name__] = _desks
