# vbsearch: `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= offline,dev,timestamped
STAMP := $(VENV)/.vbsearch-installed
DEMO_DIR ?= demo-archive
DEMO_DATA ?= vbsearch-data
# Machines with a local pip cap (/etc/xdg/pip) hold these torch wheels on disk; elsewhere pip picks.
TORCH_SPEC := $(shell grep -qs 'torch<=2.14.1' /etc/xdg/pip/constraints.txt && echo 'torch==2.14.1 torchvision==0.29.1' || echo 'torch torchvision')

.PHONY: help install system-deps test demo lint bench clean

help:
	@echo "make demo    install, build a sample archive, index it, open the UI"
	@echo "make test    install, run the whole test suite"
	@echo "make lint    ruff over the project"
	@echo "make bench   run the benchmarks (bench/)"

system-deps:
	@bash scripts/system-deps.sh

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Re-runs only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@touch $@

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/run_all.py

demo: install
	@bash scripts/demo.sh "$(PY)" "$(DEMO_DIR)" "$(DEMO_DATA)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
