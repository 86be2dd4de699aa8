"""The OpenAPI document: served, generated from the validating schemas, and true.

schemathesis 4 checks it against the app with its three generating phases: coverage
(every boundary and every schema-invalid variant the document implies), fuzzing
(hypothesis-generated requests, valid and invalid) and stateful (sequences following the
document's links: create, then read, update and delete what was created). Every check is
on: a schema-valid request refused, a schema-invalid one accepted, an undocumented status,
header or body, a 5xx, all fail.
"""
from http import HTTPStatus

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.models import User
from api.pagination import BadCursor, decode_cursor
from api.schemas import ContentCreateSchema
from api.sessions import start_session

EXAMPLES_PER_OPERATION = 10  # fuzzing's share; the coverage phase adds every boundary case
STATEFUL_STEPS = 10


@pytest.fixture
def api_account(client, auth):
    """A user with one published item, and fresh access tokens on demand."""
    account = auth.signup()
    client.post("/api/v1/content", headers=account.headers,
                json={"title": "seed", "is_published": True})
    return account


_SESSIONS = []  # the current test's token factory, for the auth provider below


@schemathesis.auth(refresh_interval=None)
class FreshSession:
    """A new session for every call, so a generated logout cannot starve the calls after
    it; through schemathesis' auth hook, so its invalid-auth checks still send their own."""

    def get(self, case, ctx):
        return _SESSIONS[-1]()

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def fresh_tokens(app, api_account):
    with app.app_context():
        user = User.get(User.email == api_account.email)

    def token():
        with app.app_context():
            return start_session(user)["access_token"]

    _SESSIONS.append(token)
    yield token
    _SESSIONS.remove(token)


#: A valid request may also meet a precondition that no longer holds (412: the stateful
#: phase sends generated If-Match values to items it created) or a locked-out account (429).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"checks": {
    "positive_data_acceptance": {"expected-statuses": [
        "2XX", "3XX", "401", "403", "404", "409", "412", "429", "5XX"]}}})


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# derandomize: the same cases every run, so CI never flakes on a newly drawn example;
# change the code and the cases change with it.
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_documented_promises(case, fresh_tokens):
    """Coverage, examples and fuzzing phases: every schemathesis check, on every operation."""
    case.call_and_validate(excluded_checks=_unstateable(case))


def _issued(app, cursor):
    with app.app_context():
        try:
            decode_cursor(cursor)
        except BadCursor:
            return False
    return True


def _unstateable(case):
    """Checks to skip where no schema can state the rule, so a schema-valid request may be
    refused: a wrong current password is a 422 by contract, and only a cursor the API
    signed is valid (the stateful test follows real ones through the document's links)."""
    if (case.method, case.path) == ("POST", "/api/v1/users/me/password") or (
            case.path == "/api/v1/content" and "cursor" in (case.query or {})):
        return [positive_data_acceptance]
    return []


def test_stateful_sequences_follow_the_documents_links(app, api_schema, fresh_tokens):
    """Stateful phase: create, read, update, delete chained through the documented links."""

    class Workflow(api_schema.as_state_machine()):
        def before_call(self, case):
            # Only cursors the API issued are valid (no schema can say so): keep those the
            # NextPage link carried over, drop the ones generated at random.
            cursor = (case.query or {}).get("cursor")
            if cursor is not None and not _issued(app, cursor):
                del case.query["cursor"]

    run_state_machine_as_test(Workflow, settings=settings(
        max_examples=STATEFUL_STEPS * 3, stateful_step_count=STATEFUL_STEPS, deadline=None,
        database=None, derandomize=True, suppress_health_check=list(HealthCheck)))


def test_openapi_document_is_served(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh",
            "/api/v1/auth/logout", "/api/v1/auth/logout-all", "/api/v1/users/me",
            "/api/v1/users/me/password", "/api/v1/content",
            "/api/v1/content/{id}"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_document_comes_from_the_validating_schemas(client):
    spec = client.get("/api/v1/openapi.json").json
    title = spec["components"]["schemas"]["ContentCreate"]["properties"]["title"]
    declared = ContentCreateSchema().fields["title"].validators[0]
    assert (title["minLength"], title["maxLength"]) == (declared.min, declared.max) == (1, 200)
    limit = next(p for p in spec["paths"]["/api/v1/content"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    # HTTPStatus names 422 differently across Python versions (ENTITY, then CONTENT)
    errors = spec["components"]["responses"][HTTPStatus(422).name]["content"]
    assert "application/problem+json" in errors


def test_docs_page_is_browsable(client):
    r = client.get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "openapi.json" in page
    assert "cdn." not in page and "https://" not in page, "the docs page must work offline"


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                                   "swagger-ui.css"])
def test_docs_assets_are_served_locally(client, asset):
    r = client.get(f"/api/v1/docs/assets/{asset}")
    assert r.status_code == 200 and len(r.data) > 1000
    r.close()
