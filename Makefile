# The front door. Every target sets up what it needs in a local virtual environment (.venv),
# so `make demo` and `make test` work on a fresh clone of a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEV    := $(VENV)/.installed-dev
BENCH  := $(VENV)/.installed-bench

.PHONY: setup demo test check bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEV): pyproject.toml integrations/bandit_router_redis/pyproject.toml integrations/bandit_router_langsmith/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]" -e integrations/bandit_router_redis -e "integrations/bandit_router_langsmith[test]"
	touch $@

$(BENCH): pyproject.toml | $(DEV)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]" -e integrations/bandit_router_redis -e integrations/bandit_router_langsmith
	touch $@

setup: $(DEV)  ## create .venv and install the package with its dev dependencies

demo: $(DEV)  ## fake arms of known quality, then a replay of real LLM outcomes (RouterBench) with a plot
	$(BIN)/python examples/quickstart.py
	$(BIN)/bandit-router replay --lam 1 --plot replay.png

test: $(DEV)  ## the whole test suite (the long variants marked slow run in `make soak`)
	$(BIN)/python -m pytest -m "not slow"

check: $(DEV)  ## lint, format check and strict typing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BENCH)  ## speed and regret benchmarks (results go to docs/benchmarks.md by hand)
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/regret.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/stores.py

soak: $(DEV)  ## the long variants of the tests
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
