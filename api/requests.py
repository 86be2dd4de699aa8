"""Checks every API request passes before a view runs (content type of bodies)."""
from flask import request

from api.errors import problem

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _is_json(mimetype):
    return mimetype == "application/json" or mimetype.endswith("+json")


def register_request_checks(app):
    """Answer 415 to API requests that carry a body which is not JSON."""

    @app.before_request
    def _require_json_body():
        if request.method not in _BODY_METHODS or not request.path.startswith("/api/v1/"):
            return None
        has_body = (request.content_length or 0) > 0 or "chunked" in (
            request.headers.get("Transfer-Encoding", "").lower())
        if has_body and not _is_json(request.mimetype):
            return problem(415, detail="Send the request body as application/json.")
        return None
