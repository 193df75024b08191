# The two README commands: `make demo` and `make test`. Both set up what they need and are
# safe to re-run: the venv, PostgreSQL with PostGIS, and (inside hub) the local broker.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: all venv postgres test demo lint format up down status bench clean openapi

all: test

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

postgres:
	@bash scripts/ensure-postgres.sh

test: venv postgres
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: venv postgres
	$(VENV)/bin/hub demo $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy hub schemas connectors geo tests
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

openapi: venv
	$(VENV)/bin/hub api openapi > openapi.yaml

up: venv postgres
	$(VENV)/bin/hub up

down: venv
	$(VENV)/bin/hub down

status: venv
	$(VENV)/bin/hub status

bench: venv postgres
	$(VENV)/bin/hub bench ingest $(ARGS)

clean:
	rm -rf $(VENV) .hub build *.egg-info .pytest_cache .mypy_cache .ruff_cache
