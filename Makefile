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
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

.PHONY: demo test fuzz install deps cuda-check cuda-resources clean

demo: install
	$(BIN)/vid3d bench

test: install cuda-check
	$(BIN)/pytest

# The property-based tests with many more examples (minutes to hours); failures found are kept in
# .hypothesis/ and replayed first next time.
fuzz: install
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/test_fuzz.py tests/test_fuzz_nn.py

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

# Compile-checks every CUDA file without a GPU: each kernel file (.cu) with nvcc for sm_80 and
# sm_90, with the flags torch's build uses for half/bfloat16, and each torch glue file (.cpp) with
# the host compiler against torch's c10/cuda headers (syntax only: no CUDA torch to link here).
# One stamp per file under $(CUDA_CHECK_DIR): `make -j2 cuda-check` recompiles only what changed.
# ptxas's register and spill report of each kernel file is kept beside its stamp (cuda-resources).
CUDA_GLUE := $(wildcard csrc/cuda/*.cpp)
CUDA_HEADERS := $(wildcard csrc/cuda/*.h csrc/cuda/*.cuh)
CUDA_CHECK_DIR := build/cuda-check
NVCC_FLAGS := -std=c++17 -O3 -Icsrc -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
	-D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ -Xptxas -v
CUDA_STAMPS := $(CUDA_FILES:csrc/cuda/%=$(CUDA_CHECK_DIR)/%.ok) $(CUDA_GLUE:csrc/cuda/%=$(CUDA_CHECK_DIR)/%.ok)

cuda-check: deps
ifeq ($(CUDA_FILES),)
	@echo "cuda-check: no CUDA sources yet"
else ifeq ($(NVCC),)
	@echo "cuda-check: nvcc not found, skipped"
else
	@$(MAKE) --no-print-directory -s $(CUDA_STAMPS)
	@echo "cuda-check: $(words $(CUDA_FILES)) kernel files (sm_80, sm_90) and $(words $(CUDA_GLUE)) glue files compile"
endif

$(CUDA_CHECK_DIR)/%.cu.ok: csrc/cuda/%.cu $(CUDA_HEADERS)
	@mkdir -p $(CUDA_CHECK_DIR)
	@echo "nvcc $< (sm_80, sm_90)"
	@$(NVCC) $(NVCC_FLAGS) $(CUDA_ARCHS) -c $< -o /dev/null 2> $(CUDA_CHECK_DIR)/$*.cu.ptxas \
	  || { grep -v "^ptxas info\|bytes stack frame" $(CUDA_CHECK_DIR)/$*.cu.ptxas; exit 1; }
	@touch $@

$(CUDA_CHECK_DIR)/%.cpp.ok: csrc/cuda/%.cpp $(CUDA_HEADERS)
	@mkdir -p $(CUDA_CHECK_DIR)
	@echo "c++ $< (torch CUDA headers)"
	@includes="$$($(BIN)/python -c 'from torch.utils.cpp_extension import include_paths; print(" ".join("-I" + p for p in include_paths()))')"; \
	  $(CXX) -std=c++20 -fsyntax-only -Wall -Icsrc $$includes -I$(CUDA_HOME)/include \
	    -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE $<
	@touch $@

# Registers, spills and shared memory of every kernel, per architecture, from ptxas (not ncu).
cuda-resources: cuda-check
	@$(BIN)/python bench/ptxas_resources.py $(CUDA_CHECK_DIR)/*.ptxas

clean:
	rm -rf build dist *.egg-info
