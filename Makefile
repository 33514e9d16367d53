# StellarStack — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STELLAR_DATA_DIR ?= .stellar
CP_PORT    ?= 8000
AGENT_PORT ?= 8080
SFTP_PORT  ?= 2022
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test services lint format bench clean assets

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install the project with its dev extras

run: install ## run the control plane (SQLite) and a local agent; Ctrl-C stops both
	@if [ "$$(id -u)" = 0 ]; then deploy/dev/ensure-services.sh docker; fi
	$(BIN)/stellar-cp dev --data-dir $(STELLAR_DATA_DIR) --port $(CP_PORT) --agent-port $(AGENT_PORT) \
		--sftp-port $(SFTP_PORT)

services: ## install and start Docker, PostgreSQL and Redis if they are not running
	deploy/dev/ensure-services.sh docker postgres redis

test: install ## bring up the services and tools the tests need, then run the whole suite
	deploy/dev/ensure-services.sh docker postgres redis test-tools
	STELLAR_REQUIRE_SERVICES=1 PYTEST=$(BIN)/pytest tests/run $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install services ## run the benchmarks; they print figures, they do not assert
	@for name in command_channel security_layer api agent_lifecycle files egg_import config_apply automation fleet web; do \
		test -f bench/$$name.py || continue; \
		echo "== bench/$$name.py"; $(BIN)/python -m bench.$$name || exit 1; \
	done

assets: ## download the vendored browser code (pinned, from the npm registry) and its manifest
	$(PYTHON) deploy/assets.py

clean: ## remove the venv, caches and the local data directory
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(STELLAR_DATA_DIR)
