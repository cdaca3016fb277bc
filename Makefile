# Every target builds its own virtualenv from nothing: only python3 is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck unit bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,inspector,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.order_demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	MYPY=$(BIN)/mypy tools/typecheck.sh

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	tools/with-bench-db.sh $(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	tools/with-bench-db.sh $(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .worldflow build *.egg-info .mypy_cache .pytest_cache .ruff_cache
