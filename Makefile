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

.PHONY: help setup setup-system constraints run test test-host test-py313 py313-prepare test-fast lint lint-python check bench clean
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# Every Python package at the exact version of constraints.txt (CI, make setup and the
# appliance's roles install from it). PIP_CONSTRAINT also reaches pip's isolated build
# environment, so the build backend is pinned too.
CONSTRAINTS := $(CURDIR)/constraints.txt
PIP_PINNED := PIP_CONSTRAINT=$(CONSTRAINTS) PIP_DISABLE_PIP_VERSION_CHECK=1

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null || { \
	  echo "make setup needs Python >= 3.11 with venv and ensurepip (Debian: apt-get install python3-venv)" >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP_PINNED) $(PY) -m pip install --quiet --upgrade pip setuptools
	$(PIP_PINNED) $(PY) -m pip install --quiet -e '.[dev,load]'
	touch $@

setup: $(VENV)/.installed ## create .venv with the API, test and load-test dependencies (pinned)

constraints: ## re-resolve every Python dependency into constraints.txt (then run make test)
	rm -rf build/constraints
	$(PYTHON) -m venv build/constraints
	build/constraints/bin/pip install --quiet --disable-pip-version-check --upgrade pip setuptools
	build/constraints/bin/pip install --quiet --disable-pip-version-check '.[dev,load]'
	{ sed -n '/^#/p' constraints.txt; \
	  build/constraints/bin/pip freeze --all --exclude vigil --disable-pip-version-check; \
	} > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf build/constraints

setup-system: ## install the Debian packages the tests use (root; what .ci/run does)
	apt-get update -q
	grep -vE '^\s*(#|$$)' .ci/apt-packages | xargs env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends

run: setup ## start the API under gunicorn on SQLite (http://127.0.0.1:8000)
	$(BIN)/flask --app api db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py api.wsgi:app

# TEST_PY313=no leaves out the second run on Python 3.13 (it needs root: systemd-nspawn).
TEST_PY313 ?= yes

# While the suite runs on the host's Python, the 3.13 tier's root filesystem and virtualenv
# are built beside it (minutes of downloads on a fresh machine; docs/adr/0019), so the
# 3.13 tier starts on a warm cache. If either fails, make waits for the other, then stops.
test: setup ## run every test tier (api, telemetry, monitoring, loadtest, appliance), then the appliance-side ones again on Python 3.13
	@$(MAKE) --no-print-directory -j2 test-host $(if $(filter yes,$(TEST_PY313)),py313-prepare)
	@if [ "$(TEST_PY313)" = yes ]; then $(MAKE) --no-print-directory test-py313; \
	  else echo "NOT RUN: the Python 3.13 tier (TEST_PY313=$(TEST_PY313))"; fi

test-host: setup ## every test tier on the host's Python (what make test runs first)
	$(PY) -m pytest $(PYTEST_ARGS)

test-py313: ## the api, telemetry, load-test tiers and the alert receiver on Python 3.13 (root; PY313_ARGS=...)
	python3 .ci/py313.py $(PY313_ARGS)

py313-prepare: ## build the 3.13 tier's root filesystem and virtualenv only (root; log in build/)
	@mkdir -p build
	@echo "building the Python 3.13 tier's root filesystem and virtualenv in the background (build/py313-prepare.log)"
	@python3 .ci/py313.py --prepare >build/py313-prepare.log 2>&1 || { cat build/py313-prepare.log; exit 1; }
	@cat build/py313-prepare.log

test-fast: setup ## the quick tier: no PostgreSQL, no stack, no appliance container
	$(PY) -m pytest -m 'not postgres and not stack and not appliance and not slow' $(PYTEST_ARGS)

lint: setup $(LINT_TARGETS) ## ruff, ansible-lint and friends

lint-python:
	$(BIN)/ruff check api loadtest tests bench .ci gunicorn.conf.py

check: setup $(CHECK_TARGETS) ## validate every config file (rules, routing, dashboards, playbooks)

bench: setup ## benchmarks that print figures (not part of make test): bench/bench_*.py
	@set -e; for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f; done

clean: ## remove build, cache and report files
	rm -rf build dist *.egg-info reports .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk

check: $(CHECK_TARGETS)
lint: $(LINT_TARGETS)
