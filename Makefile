# The two commands of the quick start:
#   make run    set up .venv and run the default pipeline (offline demo)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and on its own: 2.13.0 is the CPU build where no CUDA wheel is wanted (see docs/INSTALL.md)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake report.html
