# Two entry points for a newcomer (see README): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup bench

# Stamps: the runtime alone for the demo; the test extra (PyTorch, Transformers) only for tests.
$(VENV)/.runtime: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.runtime

# Set everything up, then run the main job on the default (bundled) model: speech to text.
demo: setup
	$(BIN)/xlagen transcribe examples/sample.wav --timing

# Lint, then the whole test suite (what CI runs).
test: $(VENV)/.test
	$(BIN)/ruff check xlagen tests scripts benchmarks
	$(BIN)/ruff format --check xlagen tests scripts benchmarks
	$(BIN)/python -m pytest -q

# The benchmark suite behind the README's table (peers in their own venvs; ~75 min on 2 cores).
bench: $(VENV)/.test
	$(BIN)/pip install --quiet -e ".[bench]"
	bash benchmarks/setup_peers.sh
	$(BIN)/python -m benchmarks.run --core --cache-check
