"""The OpenAPI document: served, generated from the validating schemas, and true (schemathesis)."""
from http import HTTPStatus

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.models import User
from api.schemas import ContentCreateSchema
from api.sessions import start_session

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance)
EXAMPLES_PER_OPERATION = 25


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


def test_every_operation_keeps_its_documented_promises(app, client, auth):
    """Property pass: no 5xx, and every status, header and body is what the document says."""
    account = auth.signup()
    client.post("/api/v1/content", headers=account.headers,
                json={"title": "seed", "is_published": True})
    with app.app_context():
        user = User.get(User.email == account.email)
    schema = schemathesis.from_dict(client.get("/api/v1/openapi.json").json, app=app,
                                    data_generation_methods=DataGenerationMethod.all())

    def fresh_headers():
        # Each case gets its own session, so a generated logout cannot starve the rest.
        with app.app_context():
            return {"Authorization": f"Bearer {start_session(user)['access_token']}"}

    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call_wsgi(headers=fresh_headers())
            case.validate_response(response, checks=CHECKS)

        check()
        tested += 1
    assert tested >= 10
