"""Flask extensions Vigil binds in the factory: the OpenAPI-generating Api and the JWT manager."""
from apispec import BasePlugin
from flask import current_app, send_from_directory
from flask_jwt_extended import JWTManager
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser, abort

from api import errors, events
from api.sessions import token_is_revoked

DOCS_ASSETS = "/api/v1/docs/assets/"
_TOKEN_PROBLEM = "https://vigil.invalid/problems/invalid-token"


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


class BoundedJsonParser(FlaskParser):
    """webargs' parser, answering 400 (not 500) to JSON nested deeper than Python recurses."""

    def load_json(self, req, schema):
        """webargs' JSON loader (its documented location hook), with the recursion limit."""
        try:
            return super().load_json(req, schema)
        except RecursionError:
            abort(400, messages={"json": ["JSON nested too deeply."]})


class ApiBlueprint(SmorestBlueprint):
    """The blueprint every API resource uses: flask-smorest's, with the bounded parser."""

    ARGUMENTS_PARSER = BoundedJsonParser()


def _unauthorized(detail):
    return errors.problem(401, "Unauthorized", detail, type_=_TOKEN_PROBLEM,
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def init_jwt(app):
    """A JWT manager whose every failure is a 401 problem (never flask-jwt-extended's 422)."""
    jwt = JWTManager(app)

    @jwt.token_in_blocklist_loader
    def _revoked(header, payload):
        revoked = token_is_revoked(payload)
        if not revoked:
            events.request_authenticated.send(current_app._get_current_object(),
                                              user_id=payload["sub"])
        return revoked

    jwt.unauthorized_loader(lambda reason: _unauthorized("Missing bearer token."))
    jwt.invalid_token_loader(lambda reason: _unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda header, payload: _unauthorized("Token has expired."))
    jwt.revoked_token_loader(lambda header, payload: _unauthorized("Token has been revoked."))
    jwt.needs_fresh_token_loader(lambda header, payload: _unauthorized("Fresh token required."))
    jwt.token_verification_failed_loader(lambda header, payload: _unauthorized("Invalid token."))
    jwt.user_lookup_error_loader(lambda header, payload: _unauthorized("Unknown user."))
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
