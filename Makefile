# The two commands of the README: `make run` and `make test`. Everything else they need is
# installed here, into .venv, from pyproject.toml's pinned ranges.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: run serve test lint typecheck pytest browser edges postgres bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $(VENV)/.installed-test $@

## make run: the gateway with a demo upstream on http://127.0.0.1:8000
run: $(VENV)/.installed
	$(BIN)/gateway --config $(CONFIG) demo

## make serve: the gateway alone, as configured
serve: $(VENV)/.installed
	$(BIN)/gateway --config $(CONFIG) serve

## make test: lint, type-check and the whole test suite
test: lint typecheck browser edges pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

browser:
	@scripts/ensure-chromium

edges:
	@scripts/ensure-edges

pytest: $(VENV)/.installed-test
	$(BIN)/pytest $(PYTEST_ARGS)

## make bench: the proxy against a bare uvicorn + aiohttp peer, the token endpoint,
## introspection, streaming and 1M revoked jtis, in one run, each against its target
## (docs/performance.md)
## (BENCH_ARGS="--quick" for a smoke run; "--only proxy", "--rounds 5", "--seconds 10", ...)
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
