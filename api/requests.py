"""Checks every API request passes before a view runs (content type and size of bodies)."""
from flask import current_app, request

from api.errors import problem

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _is_json(mimetype):
    return mimetype == "application/json" or mimetype.endswith("+json")


def _canonical_bearer_scheme():
    """Authorization schemes are case-insensitive (RFC 9110 11.1); flask-jwt-extended
    compares "Bearer" exactly, so a "bearer" or "BEARER" credential is spelt its way."""
    value = request.environ.get("HTTP_AUTHORIZATION")
    if value and not value.startswith("Bearer "):
        scheme, space, credentials = value.partition(" ")
        if space and scheme.lower() == "bearer":
            request.environ["HTTP_AUTHORIZATION"] = f"Bearer {credentials}"


def register_request_checks(app):
    """Answer 415 to API bodies that are not JSON, 413 to bodies over VIGIL_MAX_BODY_BYTES;
    read the bearer scheme case-insensitively."""
    app.before_request(_canonical_bearer_scheme)

    @app.before_request
    def _require_json_body():
        if request.method not in _BODY_METHODS or not request.path.startswith("/api/v1/"):
            return None
        has_body = (request.content_length or 0) > 0 or "chunked" in (
            request.headers.get("Transfer-Encoding", "").lower())
        if has_body and not _is_json(request.mimetype):
            return problem(415, detail="Send the request body as application/json.")
        if has_body:
            # werkzeug refuses a Content-Length over MAX_CONTENT_LENGTH (the limit plus one
            # byte) but cuts a chunked body there without an error: the extra byte tells a
            # body at the limit from a longer one.
            limit = int(current_app.config["MAX_BODY_BYTES"])
            size = request.content_length
            if size is None:
                size = len(request.get_data(cache=True))
            if size > limit:
                return problem(413, detail=f"The request body is larger than {limit} bytes.")
        return None
