# The two commands in the README: `make all` and `make test`. Both set up the
# environment first (a no-op when envs/requirements.txt is unchanged). `make test-fast` is the
# tier to run after every edit: lint and every test that starts no build and loads no model.
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all setup test test-fast lint format docs dag clean-results

all: setup
	$(BIN)/snakemake --cores $(CORES) all

setup:
	@VAULT_DISTILL_VENV=$(VENV) bash envs/setup.sh

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite, with its slowest tests listed at the end (docs/testing.md).
test: lint
	$(BIN)/python -m pytest --durations=15

test-fast: lint
	$(BIN)/python -m pytest -m "not slow" -n 2 --durations=10

format: setup
	$(BIN)/snakefmt Snakefile workflow/rules
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The README's and docs/quality.md's figures, from benchmarks/results/ (a test fails when they drift).
docs: setup
	$(BIN)/python benchmarks/render_docs.py

dag: setup
	$(BIN)/snakemake --dag all | dot -Tsvg > results/dag.svg
