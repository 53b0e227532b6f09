"""setup.py exists for one reason: the drop-in legacy module.

Callers import ``trade_surveillance_pipeline`` as a top-level module. It lives in
``python/``, outside the ``src/`` package tree, and setuptools can only map a
top-level module through the root package directory. So the root ("") is
``python/`` and the package is mapped to ``src/surv_kernel`` explicitly.
All other metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    package_dir={"": "python", "surv_kernel": "src/surv_kernel"},
    packages=find_packages(where="src"),
    py_modules=["trade_surveillance_pipeline"],
    package_data={"surv_kernel": ["py.typed"]},
)
