# The two commands in the README: `make all` and `make test`. Both set up the
# environment first (a no-op when envs/requirements.txt is unchanged).
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all setup test lint format dag clean-results

all: setup
	$(BIN)/snakemake --cores $(CORES) all

setup:
	@VAULT_DISTILL_VENV=$(VENV) bash envs/setup.sh

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

format: setup
	$(BIN)/snakefmt Snakefile workflow/rules
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dag: setup
	$(BIN)/snakemake --dag all | dot -Tsvg > results/dag.svg
