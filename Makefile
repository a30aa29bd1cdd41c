# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PAVED_HOME ?= $(HOME)/.pavedpath

.PHONY: setup demo test test-fast lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/paved demo

# Lint first: style, types and the layers contract ([tool.importlinter] in
# pyproject.toml, docs/architecture.md "Layers") gate every test run.
lint_all = $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy . \
	&& $(VENV)/bin/lint-imports

test: setup
	$(lint_all)
	$(PY) -m pytest -p no:cacheprovider tests/unit tests/integration tests/e2e

test-fast: setup
	$(PY) -m pytest -m "not slow" tests/unit

lint: setup
	$(lint_all)

bench: setup
	$(PY) -m tests.bench.registry_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
