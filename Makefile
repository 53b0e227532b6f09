# Every target sets itself up: it creates .venv with the registry's packages on
# first use, so a fresh clone needs only Python 3.10+ and network to the registry.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo lint bench-quick clean

$(VENV)/.deps: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet ".[test,report,postgres]"
	touch $@

# The package is installed (not put on sys.path), so the tests run against
# what `pip install` ships, including the drop-in trade_surveillance_pipeline.
install: $(VENV)/.deps
	$(PY) -m pip install --quiet --no-deps --force-reinstall --no-build-isolation .
	@# Compile (or load from the Numba cache) every kernel now, and say how long it took,
	@# so the first real batch does not pay for compilation and the cost stays visible.
	$(PY) -c "from surv_kernel.legacy.desks import warm_up; print(f'Numba warm-up: {warm_up():.1f} s')"

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

demo: install
	$(VENV)/bin/surv-kernel demo --out out

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench-quick: install
	$(PY) -m pip install --quiet ".[bench]"
	cd asv_bench && ../$(VENV)/bin/asv run --python=same --quick --show-stderr

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info out
