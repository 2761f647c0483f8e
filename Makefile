# The two commands a new user needs are `make demo` and `make test`; everything else
# here is what they are built from. CI calls `make test` through .ci/run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
CHAOS_ARGS  ?= --long

.PHONY: install demo test lint format unit integration clean bench browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/omni demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/omni bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: lint browser
	$(BIN)/pytest $(PYTEST_ARGS)

# Debian's chromium, for the live dashboard's browser test
# (tests/integration/test_live_dashboard.py); installed once, if missing
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard's browser test"; \
	  $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }; }

# fault drills on real processes, one table of mismatches (docs/operations.md);
# CHAOS_ARGS="--short" is the version CI runs (tests/integration/test_chaos.py)
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	-$(BIN)/omni down 2>/dev/null
	rm -rf $(VENV) .omni .pytest_cache .ruff_cache test-output
