# fp4sim developer entry points. Every target sets up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
APT_PACKAGES := iverilog verilator yosys

.PHONY: install sysdeps test test-fast lint bench demo sim synth clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# HDL tools for the RTL flow (Debian/Ubuntu; needs root). Skipped when present.
sysdeps:
	@if command -v iverilog >/dev/null && command -v verilator >/dev/null && command -v yosys >/dev/null; then \
		echo "sysdeps: $(APT_PACKAGES) already installed"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check fp4sim tests benchmarks
	$(VENV)/bin/ruff format --check fp4sim tests benchmarks

bench: install
	$(PY) benchmarks/bench_codec.py
	$(PY) benchmarks/bench_gemm.py

demo: install
	$(VENV)/bin/fp4sim formats E2M1 E1M2 E3M0 float8_e4m3fn

sim synth:
	@echo "make $@: not yet - the RTL and its cocotb testbenches land with issue #4" >&2; exit 2

clean:
	rm -rf $(VENV) build sim_build .pytest_cache .ruff_cache .hypothesis
