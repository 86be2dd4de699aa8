"""Flask extensions Vigil binds in the factory: the OpenAPI-generating Api and the JWT manager."""
import http

from apispec import BasePlugin
from flask import abort, send_from_directory
from flask_jwt_extended import JWTManager
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser

from api import errors
from api.bodies import MalformedBody, parse_json_body
from api.sessions import live_session_user, remember_token_user, token_user_known
from api.tokens import (
    authenticated,
    revoked_token_problem,
    token_checked,
    token_claims,
    unauthorized,
)

DOCS_ASSETS = "/api/v1/docs/assets/"


class ProblemContentPlugin(BasePlugin):
    """apispec plugin: responses documented with the problem schema are problem+json."""

    def response_helper(self, response, **kwargs):
        """Move a problem-schema response body from application/json to problem+json."""
        content = response.get("content") or {}
        body = content.get("application/json")
        if body is None or body.get("schema") != {"$ref": "#/components/schemas/Problem"}:
            return None
        rest = {k: v for k, v in content.items() if k != "application/json"}
        return {"content": {errors.PROBLEM_MIMETYPE: body, **rest}}


class ProblemApi(Api):
    """flask-smorest's Api, documenting and answering errors as RFC 9457 problem JSON."""

    ERROR_SCHEMA = errors.ProblemSchema

    def handle_http_exception(self, error):
        """Every HTTP error (abort, validation, routing) as problem JSON (api.errors)."""
        return errors.handle_http_exception(error)


class StrictJsonParser(FlaskParser):
    """webargs' parser with Vigil's strict JSON bodies (api.bodies): every flaw is a 400;
    a dead session's 401 comes before any 422."""

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        """A view that checks its token's session in its own query (``check_session=False``)
        has not checked it yet when its arguments fail: check it now, so a revoked token
        learns nothing from validation."""
        if token_checked() and not token_user_known() and (
                live_session_user(token_claims()) is None):
            abort(revoked_token_problem())
        super().handle_error(error, req, schema, error_status_code=error_status_code,
                             error_headers=error_headers)

    def load_json(self, req, schema):
        """The parsed body of an operation that takes one (an empty body is an error too)."""
        try:
            return parse_json_body(req.get_data(cache=True))
        except MalformedBody as e:
            abort(400, description=f"The request body is not valid JSON: {e}.")


class ApiBlueprint(SmorestBlueprint):
    """The blueprint every API resource uses: flask-smorest's, with the strict JSON parser."""

    ARGUMENTS_PARSER = StrictJsonParser()

    def common_errors(self, body=False):
        """Document the answers an operation can give whatever its view does: 503 (database
        down; for logins and password changes also hashing capacity, with Retry-After)
        always; 400, 413, 415 (malformed, too large, not JSON) for methods with a body."""
        statuses = [503] + ([400, 413, 415] if body else [])

        def decorate(view):
            for status in statuses:
                view = self.alt_response(status, response=http.HTTPStatus(status).name)(view)
            return view

        return decorate


def init_jwt(app):
    """flask-jwt-extended's manager: it issues every token and checks refresh tokens
    (access tokens are checked by api.tokens); its every failure is a 401 problem."""
    jwt = JWTManager(app)

    @jwt.token_in_blocklist_loader
    def _revoked(header, payload):
        user = live_session_user(payload)
        if user is None:
            return True
        authenticated(payload["sub"])
        remember_token_user(user)
        return False

    jwt.unauthorized_loader(lambda reason: unauthorized("Missing bearer token."))
    jwt.invalid_token_loader(lambda reason: unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda header, payload: unauthorized("Token has expired."))
    jwt.revoked_token_loader(lambda header, payload: revoked_token_problem())
    jwt.needs_fresh_token_loader(lambda header, payload: unauthorized("Fresh token required."))
    jwt.token_verification_failed_loader(lambda header, payload: unauthorized("Invalid token."))
    jwt.user_lookup_error_loader(lambda header, payload: unauthorized("Unknown user."))
    return jwt


def init_api(app):
    """The flask-smorest Api serving /api/v1/openapi.json and /api/v1/docs."""
    errors.init_app(app)
    api = ProblemApi(app, spec_kwargs={
        "extra_plugins": [ProblemContentPlugin()],
        "info": {"description": "Vigil: accounts, JWT tokens and content. Every error is "
                                "application/problem+json (RFC 9457)."},
    })
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    # Swagger UI's assets come from a pinned package, not a CDN: the docs page works on an
    # appliance with no way out. The "api-docs." endpoint prefix keeps them out of request metrics.
    app.add_url_rule(f"{DOCS_ASSETS}<path:filename>", endpoint="api-docs.assets",
                     view_func=lambda filename: send_from_directory(swagger_ui_path, filename))
    return api
