# tierwise: `make demo` and `make test` each work on a fresh machine with only Python.
# Both create .venv if missing and install what they need, torch==2.13.0 first
# (that pin picks the CPU build; an unpinned torch would pull a multi-GB CUDA build).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tierwise-installed

.PHONY: demo assets test test-slow test-all lint install clean

# The fitted codec and int8 variant split inference uses, if missing (about a minute
# the first time; see `tierwise assets --help`). Tests do not need them.
demo: $(STAMP)
	$(BIN)/tierwise assets
	$(BIN)/tierwise demo

assets: $(STAMP)
	$(BIN)/tierwise assets

test: $(STAMP)
	$(BIN)/ruff check tierwise tests
	$(BIN)/mypy
	$(BIN)/pytest

# The end-to-end federated runs (about 2.5 minutes more); CI runs them after `make test`.
test-slow: $(STAMP)
	$(BIN)/pytest -m "slow and not shared_data"

# Everything, also the tests that read ../shared/data (or $$TIERWISE_DATA).
test-all: $(STAMP)
	$(BIN)/pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check tierwise tests
	$(BIN)/mypy

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llama.cpp is compiled for AVX2 rather than for the build machine (-march=native): a
# native build on a Xeon with AMX crashed in llama_decode for any prompt over one token
# inside a sandbox that does not grant the AMX register state (gVisor), and AVX2 runs on
# any x86-64 CPU since 2013. Override with `make LLAMA_CMAKE_ARGS=... install`.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

# Reinstalls when pyproject.toml changes. llama-cpp-python compiles from source the
# first time (about 9 minutes on 2 cores); pip's wheel cache makes later installs quick
# (it keys the wheel by version, not by LLAMA_CMAKE_ARGS: `pip cache remove llama_cpp_python`
# before building with other flags).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install 'llama-cpp-python>=0.3.7'
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
