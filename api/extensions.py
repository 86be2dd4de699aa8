"""Flask extensions Vigil binds in the factory: the OpenAPI-generating Api and the JWT manager."""
import http

from flask import abort, send_from_directory
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_request_location
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.utils import prepare_response
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser

from api import errors
from api.bodies import MalformedBody, parse_json_body
from api.logs import note_user
from api.sessions import live_session_user, remember_token_user, token_user_known

DOCS_ASSETS = "/api/v1/docs/assets/"
_TOKEN_PROBLEM = "https://vigil.invalid/problems/invalid-token"


class ProblemApi(Api):
    """flask-smorest's Api, documenting and answering errors as RFC 9457 problem JSON."""

    ERROR_SCHEMA = errors.ProblemSchema

    def _register_error_handlers(self):
        errors.init_app(self._app)

    def _register_responses(self):
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, errors.PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, errors.PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


class StrictJsonParser(FlaskParser):
    """webargs' parser with Vigil's strict JSON bodies (api.bodies): every flaw is a 400;
    a dead session's 401 comes before any 422."""

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        """A view that checks its token's session in its own query (skip_revocation_check)
        has not checked it yet when its arguments fail: check it now, so a revoked token
        learns nothing from validation."""
        if get_jwt_request_location() is not None and not token_user_known() and (
                live_session_user(get_jwt()) is None):
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


def _unauthorized(detail):
    return errors.problem(401, "Unauthorized", detail, type_=_TOKEN_PROBLEM,
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def revoked_token_problem():
    """The 401 a token gets when its session is revoked or expired, or its user deactivated
    (for views that check the session in their own query: ``skip_revocation_check``)."""
    return _unauthorized("Token has been revoked.")


def init_jwt(app):
    """A JWT manager whose every failure is a 401 problem (never flask-jwt-extended's 422)."""
    jwt = JWTManager(app)

    @jwt.token_in_blocklist_loader
    def _revoked(header, payload):
        user = live_session_user(payload)
        if user is None:
            return True
        note_user(payload["sub"])
        remember_token_user(user)
        return False

    jwt.unauthorized_loader(lambda reason: _unauthorized("Missing bearer token."))
    jwt.invalid_token_loader(lambda reason: _unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda header, payload: _unauthorized("Token has expired."))
    jwt.revoked_token_loader(lambda header, payload: revoked_token_problem())
    jwt.needs_fresh_token_loader(lambda header, payload: _unauthorized("Fresh token required."))
    jwt.token_verification_failed_loader(lambda header, payload: _unauthorized("Invalid token."))
    jwt.user_lookup_error_loader(lambda header, payload: _unauthorized("Unknown user."))
    return jwt


def init_api(app):
    """The flask-smorest Api serving /api/v1/openapi.json and /api/v1/docs."""
    api = ProblemApi(app, spec_kwargs={
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
