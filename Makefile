# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -c requirements/constraints.txt
DEMO_OUT ?= demo_output

.PHONY: demo test test-all lint docs bench clean

$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[test]"
	touch $@

$(BIN)/.installed-docs: $(BIN)/.installed
	$(PIP) -e ".[test,docs]"
	touch $@

$(BIN)/.installed-bench: $(BIN)/.installed
	$(PIP) -e ".[test,bench]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py --out $(DEMO_OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest -m "slow or not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

docs: $(BIN)/.installed-docs
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/run_all.py --jobs 2

clean:
	rm -rf $(VENV) docs/_build $(DEMO_OUT) .pytest_cache
