# Every target builds its own virtualenv from nothing: only python3 is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install npm demo test test-slow lint typecheck unit bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,inspector,postgres]'
	touch $(STAMP)

install: $(STAMP)

# The real JS clients the HTTP tests drive: each tests/<dir>/package-lock.json is installed
# with `npm ci` into tests/<dir>/node_modules (again whenever the lockfile changes).
NPM_INSTALLED := $(patsubst %/package-lock.json,%/node_modules/.package-lock.json,$(wildcard tests/*/package-lock.json))

tests/%/node_modules/.package-lock.json: tests/%/package-lock.json
	cd $(dir $<) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm: $(NPM_INSTALLED)

demo: $(STAMP)
	$(BIN)/python -m examples.order_demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	MYPY=$(BIN)/mypy tools/typecheck.sh

unit: $(STAMP) $(NPM_INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# The long budgets: random examples (not CI's fixed ones), 25x the properties, the full state
# machine on every world, a dozen kills. Run it before closing a change to the engine or a
# world. The seed is printed first; `make test-slow SEED=n` runs the same examples again.
test-slow: $(STAMP)
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "test-slow: SEED=$$seed (again: make test-slow SEED=$$seed)"; \
	WORLDFLOW_SEED=$$seed WORLDFLOW_SLOW=1 $(BIN)/pytest --slow -o timeout=3600 \
		--hypothesis-seed=$$seed $(PYTEST_ARGS) || \
		{ echo "test-slow failed: SEED=$$seed (again: make test-slow SEED=$$seed)"; exit 1; }

bench: $(STAMP)
	tools/with-bench-db.sh $(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	tools/with-bench-db.sh $(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .worldflow build *.egg-info .mypy_cache .pytest_cache .ruff_cache tests/*/node_modules
