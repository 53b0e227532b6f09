"""``python -m surv_kernel.observability health|metrics|json``."""

from .health import main

raise SystemExit(main())
