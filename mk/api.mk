# API verbs (issue 2). Included by the Makefile.
.PHONY: test-api db-upgrade db-status openapi

test-api: setup ## API tests only (SQLite + PostgreSQL + live gunicorn)
	$(PY) -m pytest tests/api $(PYTEST_ARGS)

db-upgrade: setup ## apply pending schema migrations to VIGIL_DATABASE_URL (idempotent)
	$(BIN)/flask --app api db upgrade

db-status: setup ## list migrations and whether each is applied
	$(BIN)/flask --app api db status

openapi: setup ## print the OpenAPI document (the one served at /api/v1/openapi.json)
	@$(BIN)/flask --app api openapi print
