# vid3d: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
# Set-up: a virtualenv in $(VENV), torch from $(TORCH_SPEC) (the CPU wheel on this machine;
# TORCH_SPEC= uses the torch already there), the tools, then vid3d built against that torch.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
MAX_JOBS ?= 2
export MAX_JOBS

BIN := $(VENV)/bin
DEPS := triton numpy ninja pytest pytest-benchmark hypothesis tqdm matplotlib "setuptools>=77" wheel
CUDA_FILES := $(wildcard csrc/cuda/*.cu)
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

.PHONY: demo test fuzz install deps cuda-check clean

demo: install
	$(BIN)/vid3d bench

test: install cuda-check
	$(BIN)/pytest

# The property-based tests with many more examples (minutes to hours); failures found are kept in
# .hypothesis/ and replayed first next time.
fuzz: install
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/test_fuzz.py

install: deps
	$(BIN)/pip install --no-build-isolation .
	cd /tmp && $(abspath $(BIN))/vid3d info

deps: $(VENV)/.deps

# With TORCH_SPEC empty the venv sees the system's packages (a machine with torch preinstalled).
$(VENV)/.deps: Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(if $(TORCH_SPEC),,--system-site-packages) $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install "$(TORCH_SPEC)")
	$(BIN)/pip install $(DEPS)
	touch $@

# Compile-checks every CUDA file for sm_80 and sm_90 without a GPU.
cuda-check: deps
ifeq ($(CUDA_FILES),)
	@echo "cuda-check: no CUDA sources yet"
else ifeq ($(NVCC),)
	@echo "cuda-check: nvcc not found, skipped"
else
	@set -e; includes="$$($(BIN)/python -c 'from torch.utils.cpp_extension import include_paths; print(" ".join("-I" + p for p in include_paths()))')"; \
	for f in $(CUDA_FILES); do \
	  echo "nvcc $$f (sm_80, sm_90)"; \
	  $(NVCC) -std=c++17 -O2 -c $$f -o /dev/null $(CUDA_ARCHS) -Icsrc $$includes -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE; \
	done
endif

clean:
	rm -rf build dist *.egg-info
