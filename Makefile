# Set-up and everyday commands. Every target creates .venv on first use, so
# `make run` and `make test` work from a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test bench package package-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP) $@

# Start the window; without a display, set QT_QPA_PLATFORM=offscreen.
run: $(STAMP)
	$(BIN)/gan-workbench

# One torch thread per process: the tests train small models, and several
# threads spin-waiting on each other stall badly on a busy 2-core machine.
test: $(DEV_STAMP)
	OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: $(DEV_STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks

package: $(DEV_STAMP)
	bash packaging/build.sh

# Builds the bundle, then starts it offscreen and waits for the main window.
package-test: package
	GAN_WORKBENCH_PACKAGE_TEST=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q tests/test_packaging.py

clean:
	rm -rf build dist .pytest_cache
