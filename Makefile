# Vigil: the verbs people expect. Area-specific recipes live in mk/*.mk.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Collected from mk/*.mk: each area adds its validation and lint steps here.
CHECK_TARGETS :=
LINT_TARGETS := lint-python

.PHONY: help setup setup-system run test test-fast lint lint-python check bench clean
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null || { \
	  echo "make setup needs Python >= 3.11 with venv and ensurepip (Debian: apt-get install python3-venv)" >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,load]'
	touch $@

setup: $(VENV)/.installed ## create .venv with the API, test and load-test dependencies

setup-system: ## install the Debian packages the tests use (root; what .ci/run does)
	apt-get update -q
	grep -vE '^\s*(#|$$)' .ci/apt-packages | xargs env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends

run: setup ## start the API under gunicorn on SQLite (http://127.0.0.1:8000)
	$(BIN)/flask --app api db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py api.wsgi:app

test: setup ## run every test tier (api, telemetry, monitoring, loadtest, appliance)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## the quick tier: no PostgreSQL, no stack, no appliance container
	$(PY) -m pytest -m 'not postgres and not stack and not appliance and not slow' $(PYTEST_ARGS)

lint: setup $(LINT_TARGETS) ## ruff, ansible-lint and friends

lint-python:
	$(BIN)/ruff check api loadtest tests bench

check: setup $(CHECK_TARGETS) ## validate every config file (rules, routing, dashboards, playbooks)

bench: setup ## benchmarks that print figures (not part of make test): bench/bench_*.py
	@set -e; for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f; done

clean: ## remove build, cache and report files
	rm -rf build dist *.egg-info reports .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk

check: $(CHECK_TARGETS)
lint: $(LINT_TARGETS)
