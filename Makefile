# Common loops. Every target sets up what it needs first (once: `make setup` alone does only
# that), so on a fresh clone `make demo` or `make test` is all there is to type.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

# The environment is set up once per content of pyproject.toml and constraints.txt: a stamp named
# after their hash, so a target that needs it installs nothing while it is there and reinstalls
# when either file's content changes (not its mtime: a checkout touching them costs nothing).
SETUP_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
SETUP := $(VENV)/.setup-$(SETUP_HASH)
SETUP_UI := $(VENV)/.setup-ui-$(SETUP_HASH)

.PHONY: setup demo test test-slow test-all test-ui lint format bench validate compat test-deploy

setup: $(SETUP)  ## install everything into .venv (tested pins in constraints.txt) and create DAGSTER_HOME
	$(BIN)/reckit init-home

$(SETUP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.setup-*
	touch $@

# the browser tests' extra (playwright), on top of the set-up environment
$(SETUP_UI): $(SETUP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[ui]'
	touch $@

# e.g. make demo DEMO_ARGS="--port 3300 --days 4"
DEMO_ARGS ?=
demo: $(SETUP)  ## simulate the 10 days up to yesterday (if the landing zone is empty) and start the Dagster UI on :3000
	$(BIN)/reckit dev $(DEMO_ARGS)

test: $(SETUP)  ## lint, then the default (fast) test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: $(SETUP)  ## the heavy end-to-end tests (closed loop, service processes): CI runs them once
	$(BIN)/python -m pytest -q -m slow

test-all: $(SETUP)  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m ''

test-ui: $(SETUP_UI)  ## browser tests: real Chromium against `reckit dev` on a small simulation (a few minutes)
	.ci/system-packages chromium
	$(BIN)/python -m pytest -q -m ui reckit_assets_tests/ui

lint: $(SETUP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(SETUP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: $(SETUP)  ## Dagster's own checks of the code location
	$(BIN)/reckit init-home >/dev/null
	$(BIN)/dagster definitions validate -w workspace.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

compat: $(SETUP)  ## exports read by other library versions (xgboost 2.1 in a venv under .compat/)
	$(BIN)/python -m pytest -q -m compat

bench: $(SETUP)  ## benchmarks (figures recorded in docs/benchmarks.md); a few minutes
	.ci/system-packages wrk  # serving's load generator
	$(BIN)/python bench/data_layer.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/sensor_listing.py

test-deploy: $(SETUP)  ## deploy/: multi-process prod test (PostgreSQL, S3, webserver, daemon, code server) + offline K8s checks
	.ci/system-packages postgresql docker-compose npm
	deploy/tools/get-helm.sh >/dev/null
	$(BIN)/python -m pytest -q -m deploy reckit_assets_tests/deploy
