"""``python -m surv_kernel``: the same command as the ``surv-kernel`` console script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
