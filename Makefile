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

.PHONY: help setup setup-system constraints run test lane-host lane-appliance lane-cluster test-host test-appliance test-cluster test-py313 py313-prepare test-fast lint lint-python check bench clean
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

# `make test` runs three lanes side by side, each line prefixed with its lane's name, and
# fails if any lane failed (after all three end; docs/adr/0071):
#   host       every tier but the machines' on the host's Python (make test-host), then the
#              API-side tiers again on Python 3.13 (make test-py313; TEST_PY313=no leaves it out)
#   appliance  the single VM: `vagrant up --provider=lxc` of a fresh checkout (make test-appliance)
#   cluster    VIGIL_TOPOLOGY=cluster on another fresh checkout (make test-cluster)
# Both machine lanes need root; TEST_APPLIANCE=no leaves both out, TEST_CLUSTER=no the cluster.
TEST_PY313 ?= yes
TEST_APPLIANCE ?= yes
TEST_CLUSTER ?= $(TEST_APPLIANCE)
LANES := lane-host $(if $(filter yes,$(TEST_APPLIANCE)),lane-appliance) \
	$(if $(filter yes,$(TEST_APPLIANCE)),$(if $(filter yes,$(TEST_CLUSTER)),lane-cluster))

test: setup ## every tier, in three lanes side by side: host (then Python 3.13), single VM, cluster
	@$(MAKE) --no-print-directory -k -j3 $(LANES)

lane-host:
	@set -o pipefail; { $(MAKE) --no-print-directory test-host && \
	  if [ "$(TEST_PY313)" = yes ]; then $(MAKE) --no-print-directory test-py313; \
	  else echo "NOT RUN: the Python 3.13 tier (TEST_PY313=$(TEST_PY313))"; fi; } 2>&1 \
	  | sed -u 's/^/[host] /'

lane-appliance:
	@set -o pipefail; $(MAKE) --no-print-directory test-appliance 2>&1 | sed -u 's/^/[appliance] /'

lane-cluster:
	@set -o pipefail; $(MAKE) --no-print-directory test-cluster 2>&1 | sed -u 's/^/[cluster] /'

test-host: setup ## every tier but the machines' on the host's Python (PYTEST_ARGS=...)
	$(PY) -m pytest -m 'not appliance' $(PYTEST_ARGS)

test-appliance: setup ## the single VM's tier: vagrant up --provider=lxc, checks, destroy (root)
	$(PY) -m pytest -p no:cacheprovider -m 'appliance and not cluster' tests/appliance $(APPLIANCE_ARGS)

test-cluster: setup ## the cluster's tier: VIGIL_TOPOLOGY=cluster vagrant up --provider=lxc (root)
	$(PY) -m pytest -p no:cacheprovider -m cluster tests/appliance $(APPLIANCE_ARGS)

test-py313: ## the api, telemetry, load-test tiers and the alert receiver on Python 3.13 (root; PY313_ARGS=...)
	python3 .ci/py313.py $(PY313_ARGS)

py313-prepare: ## build the 3.13 tier's root filesystem and virtualenv only (root; log in build/)
	@mkdir -p build
	@echo "building the Python 3.13 tier's root filesystem and virtualenv (log: build/py313-prepare.log)"
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
