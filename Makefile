# articlegen: `make demo` runs the main job end to end, `make test` runs every check.
# Both create .venv on first use. Prefect stays local and silent (no telemetry, loopback only).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here so no install pulls the multi-GB CUDA build by accident (see README).
CONSTRAINTS ?= constraints.txt

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_API_HOST := 127.0.0.1

.PHONY: help install test lint demo bench migration clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# The stamp is rebuilt when the dependencies change.
$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

install: $(BIN)/.installed  ## Create .venv and install articlegen with its dev tools.

lint: install  ## Linter, type checker and the import contracts (pyproject.toml).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## Lint, type-check and run the whole test suite.
	$(BIN)/pytest

demo: install  ## The main job end to end on the examples: import, generate, export to out/.
	$(BIN)/articlegen demo

bench: install  ## Throughput benchmark, ~40 min on 2 cores: make bench BENCH_ARGS="--repeats 5".
	$(BIN)/python -m bench $(BENCH_ARGS)

migration: install  ## Generate a migration from db/models/: make migration MESSAGE="add x".
	@test -n "$(MESSAGE)" || { echo 'usage: make migration MESSAGE="what changed"'; exit 2; }
	$(BIN)/python -c 'import sys; from articlegen.db.migrate import new_revision; new_revision(sys.argv[1])' "$(MESSAGE)"

clean:  ## Remove the virtualenv, caches, the demo database and the demo's model (and its setting).
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .prefect articlegen.db articlegen.db-* out \
		models/demo-english models/.corpora models/.locks/demo-english.lock
	@# The demo's model is gone: so is the line of articlegen.toml that chose it.
	test ! -f articlegen.toml || sed -i '/^model = "demo-english"$$/d' articlegen.toml
