# Common loops. `make setup` then `make demo`; `make test` runs what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test test-slow test-all test-ui lint format bench validate compat test-deploy

setup:  ## install everything into .venv (tested pins in constraints.txt) and create DAGSTER_HOME
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/reckit init-home

# e.g. make demo DEMO_ARGS="--port 3300 --days 4"
DEMO_ARGS ?=
demo:  ## simulate the 10 days up to yesterday (if the landing zone is empty) and start the Dagster UI on :3000
	$(BIN)/reckit dev $(DEMO_ARGS)

test:  ## lint, then the default (fast) test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow:  ## the heavy end-to-end tests (closed loop, service processes): CI runs them once
	$(BIN)/python -m pytest -q -m slow

test-all:  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m ''

test-ui:  ## browser tests: real Chromium against `reckit dev` on a small simulation (a few minutes)
	$(BIN)/python -m pytest -q -m ui reckit_assets_tests/ui

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate:  ## Dagster's own checks of the code location
	$(BIN)/reckit init-home >/dev/null
	$(BIN)/dagster definitions validate -w workspace.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

compat:  ## exports read by other library versions (xgboost 2.1 in a venv under .compat/)
	$(BIN)/python -m pytest -q -m compat

bench:  ## benchmarks (figures recorded in docs/benchmarks.md); a few minutes
	command -v wrk >/dev/null || apt-get install -y wrk  # serving's load generator (Debian)
	$(BIN)/python bench/data_layer.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/sensor_listing.py

test-deploy:  ## deploy/: multi-process prod test (PostgreSQL, S3, webserver, daemon, code server) + offline K8s checks; needs .ci/run's tools
	$(BIN)/python -m pytest -q -m deploy reckit_assets_tests/deploy
